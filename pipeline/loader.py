"""The loader factory: the one function the training loop gets its batches from.

    loader = make_loader(cfg, "train", shard_id=rank, num_shards=world_size)
    for epoch in range(epochs):
        for images, labels in loader:     # one epoch; iterating again runs the next (reshuffled) one
            ...

images: (N, 3, 224, 224) float (ten_crop: (N, 10, 3, 224, 224)); with cfg.layout == "NHWC" the same
logical shape with channels_last strides. labels: int64 (N,). CUDA tensors on cuda:cfg.device_id from a
GPU graph, CPU tensors from a CPU graph. cfg.backend picks the loader: "dali" (pipeline.dali_loader) or the
PyTorch DataLoader baseline with the same semantics, "pil" (pipeline.pil_loader).
"""
from __future__ import annotations

from typing import Literal

import torch

from pipeline.config import DataConfig
from pipeline.constants import LIGHTING_SCALES, MEAN_WINDOWS, NORMALIZATIONS, STORED_SIZE
from pipeline.dali_loader import DaliLoader
from pipeline.errors import InputError
from pipeline.pil_loader import PilLoader
from pipeline.splits import SPLITS

# Batches an epoch must have for a fair throughput measurement: at least MIN_EPOCH_BATCHES, and WORKER_BATCHES per
# worker. At an epoch's end the DataLoader's queue drains (each worker makes whole batches: with 3 batches an
# epoch, 3 of 16 workers work) and DALI's iterator decodes the partial last batch and drops it on reset (DALI
# 2.4, plugin/base_iterator.py), so both loaders' figures come out low on short epochs (issue 21).
MIN_EPOCH_BATCHES, WORKER_BATCHES = 20, 4


def epoch_batches_needed(workers: int) -> int:
    """Batches an epoch needs at `workers` DataLoader workers (or DALI threads) for a fair measurement."""
    return max(MIN_EPOCH_BATCHES, WORKER_BATCHES * workers)


def check_config(cfg: DataConfig) -> None:
    """Reject values the graphs cannot run with, in one line each (the CLI may not have range-checked them)."""
    choices = {"device": ("cpu", "gpu"), "normalize": NORMALIZATIONS, "layout": ("NCHW", "NHWC"),
               "dtype": ("float32", "float16"), "train_last_batch": ("drop", "fill"),
               "lighting_scale": LIGHTING_SCALES, "mean_window": MEAN_WINDOWS}
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


def make_loader(
    cfg: DataConfig,
    split: Literal["train", "val", "ten_crop"],
    *,
    shard_id: int = 0,
    num_shards: int = 1,
    checkpoint: str | None = None,
):
    """Build the loader of one split for one shard.

    Args:
        cfg: data configuration; cfg.backend picks DALI ("dali") or the PyTorch DataLoader baseline ("pil").
        split: "train" (shuffled, augmented), "val" (centre crop) or "ten_crop" (§6's ten views).
        shard_id, num_shards: this process's share (rank, world size). Validation covers every image
            exactly once across all shards.
        checkpoint: a DALI training loader's `checkpoint()`: start where it was (pipeline.dali_loader).
            The PIL baseline has none (its `checkpoint()` is None): its random draws come from each
            DataLoader worker's stream, which only reading the batches again replays.

    Returns:
        A loader with `__iter__` (one epoch of (images, labels)), `__len__` (batches per epoch),
        `num_images` (images per epoch for this shard) and `checkpoint()` (its state, or None).

    Raises:
        InputError: missing or bad file list, bad shard arguments, or (while iterating) a corrupt image.
        ReaderStateRefused: DALI could not restore `checkpoint`.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0 <= shard_id < num_shards:
        raise InputError(f"shard_id {shard_id} is outside [0, {num_shards}); check RANK and WORLD_SIZE")
    if cfg.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {cfg.batch_size}")
    check_config(cfg)
    if cfg.backend == "pil":
        if checkpoint is not None:
            raise ValueError("the PIL baseline cannot start from a DALI reader state")
        return PilLoader(cfg, split, shard_id=shard_id, num_shards=num_shards)
    if cfg.backend != "dali":
        raise InputError(f"unknown backend {cfg.backend!r}; expected 'dali' or 'pil'")
    return DaliLoader(cfg, split, shard_id, num_shards, checkpoint)
