"""DaliLoader: one shard of one split of the DALI graphs (pipeline/graphs.py) as (images, labels) torch tensors.

A DALI failure mid-epoch (a corrupt file) becomes one InputError line that names the file when it can.
`pipeline.loader.make_loader` builds this for cfg.backend == "dali".
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Sequence

import torch

from pipeline.config import DataConfig
from pipeline.errors import InputError, ReaderStateRefused
from pipeline.graphs import READER_NAME, build_pipeline, tracks_state
from pipeline.shard_reader import list_folders, locate
from pipeline.shards import Member, is_shard_list, read_member, shard_entry, split_entry, split_name
from pipeline.signatures import HEAD_BYTES, image_format
from pipeline.splits import batches_per_epoch, images_per_epoch, shard_bounds, split_entries

# DALI names the failing file in some of its errors: relative to file_root ("Failed to decode sample #3 :
# train/n01/x.JPEG"), or already joined to file_root ("File mapping failed: ROOT/train/n01/x.JPEG", so
# relative to the working folder when ROOT is); for others ("nvImageCodec failure") the loader looks for
# a file whose first bytes are not an image's. A shard sample is named "TAR:OFFSET:MEMBER" ("sample #0 :
# ROOT/x.tar:7680:n01_2.jpg"), which the loader turns into the list's form, ROOT/x.tar:n01_2.
_NAMED_IN_ROOT = re.compile(r"sample #\d+ : (.+?)\s*$", re.MULTILINE)
_NAMED_JOINED = re.compile(r"failed: (.+?)\s*$", re.MULTILINE)
_TAR_MEMBER = re.compile(r"^(?P<tar>.+?\.tar):\d+:(?P<member>.+)$")


def looks_like_image(path: Path) -> bool:
    """Whether a file starts like an image DALI can decode (JPEG, PNG, GIF, BMP, TIFF, WebP, JPEG 2000, PNM)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return image_format(head) != ""


def sample_looks_like_image(root: Path, path: str, members: dict[str, dict[str, Member]]) -> bool:
    """Whether a shard sample's .jpg starts like an image (looks_like_image for a sample: one seek)."""
    shard, _ = split_entry(path)  # type: ignore[misc]
    member = members[path]["jpg"]
    head = read_member(root, shard, Member(member.ext, member.offset, min(member.size, HEAD_BYTES), member.name))
    return image_format(head) != ""


def find_failed_file(message: str, root: Path, entries: Sequence[tuple[str, int]],
                     folders: Sequence[Path] | None = None) -> Path | None:
    """The file or shard sample a DALI error is about: named in the message, else the first entry that is
    not an image (for a shard list, only when `folders`, where its index files are, is given)."""
    match = _NAMED_IN_ROOT.search(message)
    if match:
        named = _TAR_MEMBER.match(match.group(1))
        if named:  # a shard sample: the list's form, TAR:KEY
            return Path(root) / shard_entry(named["tar"], split_name(Path(named["member"]).name)[0])
        return Path(root) / match.group(1)  # an absolute path stays absolute
    match = _NAMED_JOINED.search(message)
    if match:
        return Path(match.group(1))
    if entries and is_shard_list(entries):
        if folders is None:
            return None
        members = locate(entries, folders)
        return next((Path(root) / path for path, _ in entries
                     if not sample_looks_like_image(root, path, members)), None)
    return next((Path(root) / path for path, _ in entries if not looks_like_image(Path(root) / path)), None)


def corrupt_image_error(error: Exception, root: Path, entries: Sequence[tuple[str, int]],
                        folders: Sequence[Path] | None = None) -> InputError:
    """Turn a DALI failure mid-epoch into the one-line message a user can act on (`folders`: see
    find_failed_file)."""
    text = str(error)
    path = find_failed_file(text, root, entries, folders)
    where = str(path) if path else f"an image under {root} (DALI did not name it)"
    reason = next((line.strip() for line in text.splitlines() if "failure" in line or "ailed" in line), "")
    reason = f" ({reason[:120]})" if reason else ""
    return InputError(
        f"{where}: DALI could not read or decode this image{reason}; "
        f"find and drop bad files with `imagenet-tools prepare {root} --out DIR --check decode`"
    )


class DaliLoader:
    """One shard of one split as an iterable of (images, labels) torch tensors, epoch after epoch.

    A training loader built with `checkpoint` (a string from `checkpoint()` of an earlier one of the same
    configuration and shard) starts where that one was: the reader's position, the shuffle buffer and every
    random operator restored, so it yields exactly the batches the earlier loader would have yielded next.
    """

    def __init__(self, cfg: DataConfig, split: str, shard_id: int, num_shards: int,
                 checkpoint: str | None = None) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.split = split
        self.layout = cfg.layout
        entries = split_entries(cfg, split)  # type: ignore[arg-type]
        start, end = shard_bounds(len(entries), shard_id, num_shards)
        self.root = cfg.root
        # Where to look for an unnamed bad file: this shard's part for val; any part for train (shuffled).
        self._suspects = entries[start:end] if split != "train" else entries
        self._folders = list_folders(cfg.train_list, cfg.val_list)  # a shard list's index files
        self.shard_images, self.batch_size, self.last_batch = end - start, cfg.batch_size, cfg.train_last_batch
        if split == "train" and cfg.train_last_batch == "drop":
            # DALI's iterator ends every rank's epoch after N // num_shards samples (LastBatchPolicy.DROP rounds
            # the shard size down), so a rank whose part is one longer yields the same number of batches.
            self.shard_images = len(entries) // num_shards
        # "fill": DALI tops up the last batch with the next epoch's first images, and that epoch then
        # starts after them, so epochs alternate between ceil(n/b) and fewer batches; track the carry.
        self._carried = 0
        if split == "train":
            policy = LastBatchPolicy.DROP if cfg.train_last_batch == "drop" else LastBatchPolicy.FILL
        else:
            policy = LastBatchPolicy.PARTIAL
        try:
            pipe, names = build_pipeline(cfg, split, shard_id=shard_id, num_shards=num_shards, entries=entries,  # type: ignore[arg-type]
                                         checkpoint=checkpoint)
            pipe.build()
            # prepare_first_batch=False: nothing is decoded before the first iteration, so a corrupt
            # file surfaces inside __iter__, where it is turned into an InputError.
            self._iterator = DALIGenericIterator(
                pipe, list(names), reader_name=READER_NAME, last_batch_policy=policy,
                auto_reset=True, prepare_first_batch=False,
            )
        except (RuntimeError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if checkpoint is not None:
                raise ReaderStateRefused(first) from None
            if isinstance(error, ValueError):  # a bug, not the user's data
                raise
            raise InputError(f"{cfg.root}: could not build the DALI {split} pipeline: {first}") from None

    def checkpoint(self) -> str | None:
        """This loader's state after the batches it has yielded (DALI's iterator accounts for the batches it
        has prefetched), for a later DaliLoader(checkpoint=...); None for validation loaders."""
        return self._iterator.checkpoints()[0] if tracks_state(self.split) else None

    def batches_left(self) -> int | None:
        """Training batches this loader will still yield in its epoch, as DALI's iterator counts them (a
        restored one counts from its checkpoint); None where that cannot be told (not "drop", another DALI)."""
        it = self._iterator
        if not tracks_state(self.split) or self.last_batch != "drop":
            return None
        try:
            room = it._shard_sizes_per_gpu - it._counter_per_gpu - it._counter  # DALI 2.4 plugin/base_iterator.py
            return max(0, int(room.min()) // self.batch_size)
        except (AttributeError, TypeError, ValueError):
            return None

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
                raise corrupt_image_error(error, self.root, self._suspects, self._folders) from None
            if batch["labels"].shape[0] == 0:
                continue  # DALI's PARTIAL policy can end a shard with an empty batch
            yield self._logical(batch["images"]), batch["labels"].reshape(-1).long()

    def _logical(self, images: torch.Tensor) -> torch.Tensor:
        """NHWC from DALI -> the logical NCHW shape with channels_last strides (no copy)."""
        if self.layout != "NHWC":
            return images
        return images.permute(0, 3, 1, 2) if images.dim() == 4 else images.permute(0, 1, 4, 2, 3)
