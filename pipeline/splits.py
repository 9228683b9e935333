"""The three splits: which file list each reads, how a list is cut into shards, how long an epoch is.

Both loaders (pipeline/dali_loader.py, pipeline/pil_loader.py) and the DALI graphs take these from here,
so the baseline and DALI agree on every shard and every epoch length by construction.
"""
from __future__ import annotations

import math
from typing import Literal

from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.filelist import read_file_list

Split = Literal["train", "val", "ten_crop"]
SPLITS = ("train", "val", "ten_crop")


def split_entries(cfg: DataConfig, split: Split) -> list[tuple[str, int]]:
    """The (relative path, label) pairs of a split's file list (train_list for train, val_list otherwise)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    list_path = cfg.train_list if split == "train" else cfg.val_list
    if list_path is None:
        which = "train_list" if split == "train" else "val_list"
        raise InputError(f"no {which} given for the {split} split; write the lists with `imagenet-tools prepare`")
    return read_file_list(list_path, cfg.num_classes)


def shard_bounds(num_images: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """[start, end) of a shard in the file list, as DALI's readers split it."""
    return num_images * shard_id // num_shards, num_images * (shard_id + 1) // num_shards


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
