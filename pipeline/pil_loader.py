"""The baseline: the same preprocessing and augmentation with PIL and NumPy in a PyTorch DataLoader.

`make_loader(cfg, split)` returns this when cfg.backend == "pil" (`model.train --no-dali`, and the
benchmark's reference point). Semantics match pipeline.graphs: shorter side 256 (PIL's antialiased
bilinear), centre 256x256 with the same rounding as DALI, then a random 224 crop at an integer position,
a flip with p = 0.5, PCA lighting, normalisation (train); the centre 224 (val); §6's ten views (ten_crop).
Lighting and normalisation are pipeline/lighting.py's, the one definition the DALI graphs use too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from pipeline.config import DataConfig
from pipeline.constants import FLIP_PROBABILITY, STORED_SIZE, TEN_CROP_POSITIONS
from pipeline.errors import InputError
from pipeline.lighting import ColourStats, colour_stats, lighting_offset, subtracted_mean, train_divisor
from pipeline.pil_image import crop_anchor, stored_image
from pipeline.processes import worker_start_method
from pipeline.shard_reader import ShardSampleReader, list_folders, locate, ordered
from pipeline.shards import is_shard_list
from pipeline.splits import batches_per_epoch, images_per_epoch, shard_bounds, split_entries


def augment(stored: np.ndarray, crop: int, x: int, y: int, flip: bool, offset: np.ndarray) -> np.ndarray:
    """Crop at (x, y), mirror if flip, add the lighting offset: float32 HWC on the 0-255 scale."""
    view = stored[y : y + crop, x : x + crop].astype(np.float32)
    if flip:
        view = view[:, ::-1]
    return view + offset.astype(np.float32)


def normalised(raw: np.ndarray, stats: ColourStats, crop: int, windows: Sequence[tuple[int, int, bool]],
               divisor: float = 1.0) -> torch.Tensor:
    """Views on 0-255, (..., H, W, 3) -> (raw - mean) / (std * divisor) as a float32 (..., 3, H, W) tensor: what
    the network takes. The mean of each view is pipeline.lighting.subtracted_mean of its window (x, y, flip).
    """
    if stats.mean_image is None:
        means = stats.mean  # the same (3,) for every view
    else:
        means = np.stack([subtracted_mean(stats, crop, *window) for window in windows]).reshape(raw.shape)
    scaled = ((raw - means) / (stats.std * divisor)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled, -1, -3)))


class ImageListDataset(torch.utils.data.Dataset):
    """(relative path, label) entries -> (CHW float tensor, label), augmented like the DALI graph of a split.

    `rescale`: divide training images by (1 + alpha_std) too (DataConfig.lighting_rescale, cuda-convnet2's).
    `shard_reader`: for a shard list, gives a path's (stored image, label from its .cls) (pipeline/shard_reader.py).
    """

    def __init__(self, root: Path, entries: Sequence[tuple[str, int]], split: str, stats: ColourStats,
                 crop: int, alpha_std: float, rescale: bool = False, shard_reader=None) -> None:
        self.root, self.entries, self.split = Path(root), list(entries), split
        self.shard_reader = shard_reader
        self.stats, self.crop, self.alpha_std = stats, crop, alpha_std
        self.divisor = train_divisor(alpha_std, rescale) if split == "train" else 1.0

    def __len__(self) -> int:
        return len(self.entries)

    def draw(self) -> tuple[int, int, bool, np.ndarray]:
        """Random crop corner, flip and alpha from torch's RNG (seeded per worker by the DataLoader)."""
        span = STORED_SIZE - self.crop
        x, y = (int(v) for v in torch.randint(0, span + 1, (2,)))
        flip = bool(torch.rand(()) < FLIP_PROBABILITY)
        alpha = (torch.randn(3, dtype=torch.float64) * self.alpha_std).numpy()
        return x, y, flip, alpha

    def views(self, stored: np.ndarray) -> tuple[np.ndarray, dict]:
        """The split's crop(s) of a stored image on 0-255 (before normalisation), and the parameters drawn
        (train: crop_x, crop_y, flip, alpha; every split: windows, the (x, y, flip) of each view)."""
        zero = np.zeros(3, np.float32)
        if self.split == "train":
            x, y, flip, alpha = self.draw()
            params = dict(crop_x=x, crop_y=y, flip=int(flip), alpha=alpha, windows=[(x, y, flip)])
            return augment(stored, self.crop, x, y, flip, lighting_offset(self.stats, alpha)), params
        corners = [(crop_anchor(STORED_SIZE, self.crop, px), crop_anchor(STORED_SIZE, self.crop, py), bool(m))
                   for px, py, m in (TEN_CROP_POSITIONS if self.split == "ten_crop" else [(0.5, 0.5, 0)])]
        crops = np.stack([augment(stored, self.crop, x, y, m, zero) for x, y, m in corners])
        return (crops if self.split == "ten_crop" else crops[0]), dict(windows=corners)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.entries[index]
        if self.shard_reader is None:
            stored = stored_image(self.root / path)
        else:
            stored, label = self.shard_reader(path)
        raw, params = self.views(stored)
        return normalised(raw, self.stats, self.crop, params["windows"], self.divisor), label


class ShardSampler(torch.utils.data.Sampler):
    """Indices of one shard per epoch, as DALI's reader gives them.

    Training: a global permutation per epoch (seed + epoch), this shard's contiguous slice of it, the
    last batch dropped or filled from the next epoch's slice. Validation: the shard's slice in order.
    """

    def __init__(self, size: int, batch_size: int, split: str, last_batch: str, seed: int,
                 shard_id: int, num_shards: int) -> None:
        self.size, self.batch_size, self.split, self.last_batch = size, batch_size, split, last_batch
        self.seed, self.bounds, self.epoch = seed, shard_bounds(size, shard_id, num_shards), 0

    def _slice(self, epoch: int) -> list[int]:
        if self.split != "train":
            return list(range(*self.bounds))
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return order[self.bounds[0] : self.bounds[1]].tolist()

    def __len__(self) -> int:
        shard = self.bounds[1] - self.bounds[0]
        return images_per_epoch(shard, self.batch_size, self.split, self.last_batch)

    def __iter__(self) -> Iterator[int]:
        indices = self._slice(self.epoch)
        while len(indices) < len(self):  # "fill": top up from the next epoch's order
            indices += self._slice(self.epoch + 1)
        self.epoch += 1
        return iter(indices[: len(self)])


class PilLoader:
    """The loader contract of pipeline.loader, served by a torch DataLoader with cfg.num_threads workers."""

    def __init__(self, cfg: DataConfig, split: str, *, shard_id: int = 0, num_shards: int = 1) -> None:
        entries = split_entries(cfg, split)  # type: ignore[arg-type]
        stats = colour_stats(cfg.pca, cfg.normalize, cfg.lighting_scale, cfg.mean_window)
        reader = None
        if is_shard_list(entries):  # DALI's order of the samples, read through the index files
            entries = ordered(entries)
            reader = ShardSampleReader(cfg.root, locate(entries, list_folders(cfg.train_list, cfg.val_list)))
        self.dataset = ImageListDataset(cfg.root, entries, split, stats, cfg.crop, cfg.pca_alpha_std,
                                        cfg.lighting_rescale, reader)
        self.sampler = ShardSampler(len(entries), cfg.batch_size, split, cfg.train_last_batch, cfg.seed,
                                    shard_id, num_shards)
        self.num_images = len(self.sampler)
        start, end = self.sampler.bounds
        self._len = batches_per_epoch(end - start, cfg.batch_size, split, cfg.train_last_batch)
        self.device = torch.device(f"cuda:{cfg.device_id or 0}") if cfg.device == "gpu" else torch.device("cpu")
        self.layout, self.dtype = cfg.layout, getattr(torch, cfg.dtype)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_threads,
            pin_memory=cfg.device == "gpu", generator=torch.Generator().manual_seed(cfg.seed),
            multiprocessing_context=worker_start_method() if cfg.num_threads > 0 else None,
            persistent_workers=cfg.num_threads > 0,  # pay the workers' start once, not every epoch
        )

    def __len__(self) -> int:
        return self._len

    def checkpoint(self) -> None:
        """No reader state: the crops, flips and alphas come from each worker's torch stream (seeded at the
        epoch's start), so a resumed epoch replays them only by drawing the trained batches again."""
        return None

    def batches_left(self) -> None:
        return None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            yield from self._batches()
        except InputError as error:
            # A worker's exception comes back wrapped in its traceback; keep the one line it raised.
            raise InputError(str(error).strip().splitlines()[-1].removeprefix("pipeline.errors.InputError: ")) from None

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            # Copy, then convert on the device: converting first would make an unpinned host temporary
            # and the copy synchronous.
            images = images.to(self.device, non_blocking=True).to(self.dtype)
            if self.layout == "NHWC" and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, torch.int64, non_blocking=True)
