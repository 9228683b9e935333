"""The loader factory: the one function the training loop gets its batches from.

    loader = make_loader(cfg, "train", shard_id=rank, num_shards=world_size)
    for epoch in range(epochs):
        for images, labels in loader:     # one epoch; iterating again runs the next (reshuffled) one
            ...

images: (N, 3, 224, 224) float (ten_crop: (N, 10, 3, 224, 224)); with cfg.layout == "NHWC" the same
logical shape with channels_last strides. labels: int64 (N,). CUDA tensors on cuda:cfg.device_id from a
GPU graph, CPU tensors from a CPU graph. cfg.backend == "pil" gives the PyTorch DataLoader baseline
(pipeline.pil_loader) with the same semantics.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator, Literal, Sequence

import torch

from pipeline.config import DataConfig
from pipeline.constants import NORMALIZATIONS, STORED_SIZE
from pipeline.errors import InputError
from pipeline.graphs import READER_NAME, SPLITS, build_pipeline, shard_bounds, split_entries

# DALI names the failing file in some of its errors: relative to file_root ("Failed to decode sample #3 :
# train/n01/x.JPEG"), or already joined to file_root ("File mapping failed: ROOT/train/n01/x.JPEG", so
# relative to the working folder when ROOT is); for others ("nvImageCodec failure") the loader looks for
# a file whose first bytes are not an image's.
_NAMED_IN_ROOT = re.compile(r"sample #\d+ : (.+?)\s*$", re.MULTILINE)
_NAMED_JOINED = re.compile(r"failed: (.+?)\s*$", re.MULTILINE)
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP", b"P1", b"P2",
                b"P3", b"P4", b"P5", b"P6")


def batches_per_epoch(num_images: int, batch_size: int, split: str, train_last_batch: str) -> int:
    """Batches one shard yields per epoch: training drops or fills the last batch; val keeps it partial."""
    if split == "train" and train_last_batch == "drop":
        return num_images // batch_size
    return math.ceil(num_images / batch_size)


def images_per_epoch(num_images: int, batch_size: int, split: str, train_last_batch: str) -> int:
    """Images one shard yields per epoch (val/ten_crop: exactly its share of the list, no padding)."""
    if split == "train":
        return batches_per_epoch(num_images, batch_size, split, train_last_batch) * batch_size
    return num_images


def looks_like_image(path: Path) -> bool:
    """Whether a file starts like an image DALI can decode (JPEG, PNG, GIF, BMP, TIFF, WebP, JPEG 2000, PNM)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def find_failed_file(message: str, root: Path, entries: Sequence[tuple[str, int]]) -> Path | None:
    """The file a DALI error is about: named in the message, else the first entry that is not an image."""
    match = _NAMED_IN_ROOT.search(message)
    if match:
        return Path(root) / match.group(1)  # an absolute path stays absolute
    match = _NAMED_JOINED.search(message)
    if match:
        return Path(match.group(1))
    return next((Path(root) / path for path, _ in entries if not looks_like_image(Path(root) / path)), None)


def corrupt_image_error(error: Exception, root: Path, entries: Sequence[tuple[str, int]]) -> InputError:
    """Turn a DALI failure mid-epoch into the one-line message a user can act on."""
    text = str(error)
    path = find_failed_file(text, root, entries)
    where = str(path) if path else f"an image under {root} (DALI did not name it)"
    reason = next((line.strip() for line in text.splitlines() if "failure" in line or "ailed" in line), "")
    reason = f" ({reason[:120]})" if reason else ""
    return InputError(
        f"{where}: DALI could not read or decode this image{reason}; "
        f"find and drop bad files with `imagenet-tools prepare {root} --out DIR --check decode`"
    )


def check_config(cfg: DataConfig) -> None:
    """Reject values the graphs cannot run with, in one line each (the CLI may not have range-checked them)."""
    choices = {"device": ("cpu", "gpu"), "normalize": NORMALIZATIONS, "layout": ("NCHW", "NHWC"),
               "dtype": ("float32", "float16"), "train_last_batch": ("drop", "fill")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise InputError(f"unknown {name} {getattr(cfg, name)!r}; expected one of {', '.join(allowed)}")
    if not 1 <= cfg.crop <= STORED_SIZE:
        raise InputError(f"crop {cfg.crop} must lie in [1, {STORED_SIZE}] (crops are cut from the 256x256 image)")
    if cfg.pca_alpha_std < 0 or cfg.num_threads < 0 or cfg.prefetch < 1:
        raise InputError("pca_alpha_std and num_threads must be >= 0 and prefetch >= 1, "
                         f"got {cfg.pca_alpha_std}, {cfg.num_threads}, {cfg.prefetch}")
    if cfg.device == "gpu" and not torch.cuda.is_available():
        raise InputError("device 'gpu' needs a CUDA device and a CUDA build of torch; this machine has none (use 'cpu')")
    if cfg.device == "gpu" and not 0.0 <= cfg.hw_decoder_load <= 1.0:
        raise InputError(f"hw_decoder_load {cfg.hw_decoder_load} must lie in [0, 1]")


class DaliLoader:
    """One shard of one split as an iterable of (images, labels) torch tensors, epoch after epoch."""

    def __init__(self, cfg: DataConfig, split: str, shard_id: int, num_shards: int) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.split = split
        self.layout = cfg.layout
        entries = split_entries(cfg, split)  # type: ignore[arg-type]
        start, end = shard_bounds(len(entries), shard_id, num_shards)
        self.root = cfg.root
        # Where to look for an unnamed bad file: this shard's part for val; any part for train (shuffled).
        self._suspects = entries[start:end] if split != "train" else entries
        self.shard_images, self.batch_size, self.last_batch = end - start, cfg.batch_size, cfg.train_last_batch
        # "fill": DALI tops up the last batch with the next epoch's first images, and that epoch then
        # starts after them, so epochs alternate between ceil(n/b) and fewer batches; track the carry.
        self._carried = 0
        if split == "train":
            policy = LastBatchPolicy.DROP if cfg.train_last_batch == "drop" else LastBatchPolicy.FILL
        else:
            policy = LastBatchPolicy.PARTIAL
        try:
            pipe, names = build_pipeline(cfg, split, shard_id=shard_id, num_shards=num_shards, entries=entries)  # type: ignore[arg-type]
            pipe.build()
            # prepare_first_batch=False: nothing is decoded before the first iteration, so a corrupt
            # file surfaces inside __iter__, where it is turned into an InputError.
            self._iterator = DALIGenericIterator(
                pipe, list(names), reader_name=READER_NAME, last_batch_policy=policy,
                auto_reset=True, prepare_first_batch=False,
            )
        except RuntimeError as error:
            raise InputError(f"{cfg.root}: could not build the DALI {split} pipeline: {str(error).splitlines()[0]}") from None

    def __len__(self) -> int:
        """Batches in the coming epoch (with "fill", it can be one less than ceil(n / b), see above)."""
        return batches_per_epoch(self.shard_images - self._carried, self.batch_size, self.split, self.last_batch)

    @property
    def num_images(self) -> int:
        """Images this shard yields in the coming epoch (val/ten_crop: exactly its share, no padding)."""
        return images_per_epoch(self.shard_images - self._carried, self.batch_size, self.split, self.last_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch. An epoch left early (break) goes on where it stopped at the next iteration:
        DALI cannot reset a reader mid-epoch."""
        iterator = iter(self._iterator)
        expected = self.num_images
        while True:
            try:
                batch = next(iterator)[0]
            except StopIteration:
                if self.split == "train" and self.last_batch == "fill":
                    self._carried = expected - (self.shard_images - self._carried)
                return
            except RuntimeError as error:
                raise corrupt_image_error(error, self.root, self._suspects) from None
            if batch["labels"].shape[0] == 0:
                continue  # DALI's PARTIAL policy can end a shard with an empty batch
            yield self._logical(batch["images"]), batch["labels"].reshape(-1).long()

    def _logical(self, images: torch.Tensor) -> torch.Tensor:
        """NHWC from DALI -> the logical NCHW shape with channels_last strides (no copy)."""
        if self.layout != "NHWC":
            return images
        return images.permute(0, 3, 1, 2) if images.dim() == 4 else images.permute(0, 1, 4, 2, 3)


def make_loader(
    cfg: DataConfig,
    split: Literal["train", "val", "ten_crop"],
    *,
    shard_id: int = 0,
    num_shards: int = 1,
):
    """Build the loader of one split for one shard.

    Args:
        cfg: data configuration; cfg.backend picks DALI ("dali") or the PyTorch DataLoader baseline ("pil").
        split: "train" (shuffled, augmented), "val" (centre crop) or "ten_crop" (§6's ten views).
        shard_id, num_shards: this process's share (rank, world size). Validation covers every image
            exactly once across all shards.

    Returns:
        A loader with `__iter__` (one epoch of (images, labels)), `__len__` (batches per epoch) and
        `num_images` (images per epoch for this shard).

    Raises:
        InputError: missing or bad file list, bad shard arguments, or (while iterating) a corrupt image.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0 <= shard_id < num_shards:
        raise InputError(f"shard_id {shard_id} is outside [0, {num_shards}); check RANK and WORLD_SIZE")
    if cfg.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {cfg.batch_size}")
    check_config(cfg)
    if cfg.backend == "pil":
        from pipeline.pil_loader import PilLoader

        return PilLoader(cfg, split, shard_id=shard_id, num_shards=num_shards)
    if cfg.backend != "dali":
        raise InputError(f"unknown backend {cfg.backend!r}; expected 'dali' or 'pil'")
    return DaliLoader(cfg, split, shard_id, num_shards)
