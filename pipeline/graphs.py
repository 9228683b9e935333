"""DALI graphs for the paper's preprocessing (§2), training augmentation (§4.1) and 10-crop testing (§6).

One graph per split, and the same graph on both devices: `cfg.device == "gpu"` decodes with nvJPEG
("mixed") and runs GPU operators; "cpu" runs the CPU operators of the same graph (with
`device_id=None` no CUDA is needed at all).

    train:    decode -> shorter side 256 -> centre 256x256 -> random 224 crop, flip p=0.5,
              PCA lighting, normalise (one crop_mirror_normalize)
    val:      decode -> shorter side 256 -> centre 256x256 -> centre 224 crop, normalise
    ten_crop: ... centre 256x256 -> 4 corners + centre, and their flips -> (10, C, 224, 224)

normalize="image" subtracts the mean image: its centre window after crop_mirror_normalize (mean_window
"centre", cuda-convnet2), or the whole image before it (mean_window "crop", Caffe); see _normalise.

`build_pipeline(..., expose=True)` adds the intermediate images and the random parameters drawn per
image as extra outputs (EXPOSED_OUTPUTS), for `imagenet-tools preview --npz` and the tests.
"""
from __future__ import annotations

import shutil
import weakref
from typing import Sequence

import numpy as np

from pipeline.config import DataConfig
from pipeline.constants import FLIP_PROBABILITY, RESIZE_SHORTER, STORED_SIZE, TEN_CROP_POSITIONS
from pipeline.shard_reader import dali_source, list_folders, read_shards
from pipeline.shards import is_shard_list
from pipeline.lighting import (ColourStats, colour_stats, dali_alpha, dali_mean_minus, dali_offset, subtracted_mean,
                               train_divisor)
from pipeline.splits import Split, split_entries

READER_NAME = "Reader"
OUTPUTS = ("images", "labels")
# Extra outputs with expose=True. stored: the 256x256 uint8 HWC image; raw: the crop(s) as float32
# HWC on 0-255 after flip and lighting, before normalisation; crop_x/crop_y: the crop's top-left
# corner in the 256 image (pixels); flip: 1 if mirrored; alpha: the (3,) lighting coefficients.
EXPOSED_OUTPUTS = {
    "train": ("stored", "raw", "crop_x", "crop_y", "flip", "alpha"),
    "val": ("stored", "raw"),
    "ten_crop": ("stored", "raw"),
}
def pipeline_seed(seed: int, shard_id: int) -> int:
    """The augmentation seed of one shard: distinct per shard, so GPUs do not draw identical crops."""
    return (seed * 1_000_003 + shard_id) % (2**31 - 1)


def read_files(cfg: DataConfig, entries: Sequence[tuple[str, int]], shuffle: bool, shard_id: int, num_shards: int):
    """File reader. Training reshuffles the whole list every epoch (a global permutation shared by all
    shards, seeded by cfg.seed); DALI's random_shuffle only shuffles inside a small buffer, which on a
    class-sorted ImageNet list would give batches of one or two classes."""
    from nvidia.dali import fn

    files = [path for path, _ in entries]
    labels = [label for _, label in entries]
    options = dict(shuffle_after_epoch=True, shuffle_after_epoch_seed=int(cfg.seed)) if shuffle else {}
    return fn.readers.file(
        file_root=str(cfg.root), files=files, labels=labels, shard_id=shard_id, num_shards=num_shards,
        pad_last_batch=not shuffle, stick_to_shard=not shuffle, name=READER_NAME, **options,
    )


def decode_stored(cfg: DataConfig, jpegs):
    """Decode to RGB, resize the shorter side to 256 (antialiased), crop the centre 256x256 (§2).

    Uses a per-sample `if`: call it inside a pipeline built with `enable_conditionals=True`
    (`conditional_pipeline`).
    """
    from nvidia.dali import fn, types

    if cfg.device == "gpu":
        images = fn.decoders.image(
            jpegs, device="mixed", output_type=types.RGB, hw_decoder_load=cfg.hw_decoder_load,
            device_memory_padding=cfg.device_memory_padding, host_memory_padding=cfg.host_memory_padding,
            preallocate_width_hint=cfg.preallocate_width_hint,
            preallocate_height_hint=cfg.preallocate_height_hint,
        )
    else:
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
    # Files from `prepare --resize 256` already have a shorter side of 256. DALI's resize at scale 1 returns
    # the same pixels (tests/test_pipeline_graphs.py checks it) but costs more CPU than the decode itself
    # (docs/BENCHMARKS.md), so such samples skip it; the others are resized as the paper says.
    if shorter_side(jpegs) != RESIZE_SHORTER:
        images = fn.resize(images, resize_shorter=RESIZE_SHORTER, antialias=True, interp_type=types.INTERP_LINEAR)
    # crop_pos 0.5 with DALI's rounding (half away from zero): x0 = round((W - 256) / 2).
    return fn.crop(images, crop=(STORED_SIZE, STORED_SIZE))


def shorter_side(jpegs):
    """The shorter side in pixels of each encoded image, read from its header (a CPU scalar per sample)."""
    from nvidia.dali import fn, types

    shape = fn.peek_image_shape(jpegs, dtype=types.INT32)  # (H, W, C)
    return fn.reductions.min(shape[0:2])


def conditional_pipeline(define, **pipeline_args):
    """A Pipeline whose graph is `define()` traced with DALI conditionals on (per-sample `if` on DataNodes).

    Args:
        define: a function of no arguments that builds the graph and returns its outputs.
        pipeline_args: Pipeline arguments (batch_size, num_threads, device_id, seed, ...).
    """
    from nvidia.dali import pipeline_def

    return pipeline_def(define, enable_conditionals=True, **pipeline_args)()


def _cmn(cfg: DataConfig, images, mean, std, *, x=0.5, y=0.5, mirror=0, raw: bool = False, dtype=None):
    """crop_mirror_normalize to cfg.crop; raw=True gives float32 HWC (for expose), else cfg's layout/dtype."""
    from nvidia.dali import fn, types

    if dtype is None:
        dtype = types.FLOAT16 if cfg.dtype == "float16" and not raw else types.FLOAT
    layout = "HWC" if raw or cfg.layout == "NHWC" else "CHW"
    return fn.crop_mirror_normalize(
        images, crop=(cfg.crop, cfg.crop), crop_pos_x=x, crop_pos_y=y, mirror=mirror,
        mean=mean, std=std, dtype=dtype, output_layout=layout,
    )


def _constant(cfg: DataConfig, array: np.ndarray):
    """A float32 tensor constant on the graph's device (the same for every sample)."""
    from nvidia.dali import types

    return types.Constant(np.ascontiguousarray(array, dtype=np.float32), dtype=types.FLOAT,
                          device="gpu" if cfg.device == "gpu" else "cpu")


def _minus_mean_image(cfg: DataConfig, stored, stats: ColourStats):
    """The stored 256x256 images with the mean image subtracted pixel by pixel, for the "crop" window (Caffe:
    each pixel loses the mean at its own source position). A per-pixel subtraction commutes with crop and
    flip, so subtracting in the 256 frame before crop_mirror_normalize is exact, for every crop and view.
    Otherwise the stored images unchanged."""
    if stats.mean_image is None or stats.mean_window != "crop":
        return stored
    return stored - _constant(cfg, stats.mean_image)  # uint8 - float32 -> float32, on the graph's device


def _normalise(cfg: DataConfig, source, stats: ColourStats, mean, std, *, x=0.5, y=0.5, mirror=0):
    """One crop, mirror and normalisation of `source` (from _minus_mean_image) in cfg's layout and dtype.

    With the "centre" mean window (cuda-convnet2 convdata.py:104,192: the centre window of the mean image,
    subtracted from every crop after cropping and flipping), the window divided by std is a constant
    subtracted from crop_mirror_normalize's float32 output, then cast to cfg.dtype: two more elementwise
    operators on the graph's device, on the 224x224 crops.
    """
    from nvidia.dali import fn, types

    if stats.mean_image is None or stats.mean_window != "centre":
        return _cmn(cfg, source, mean, std, x=x, y=y, mirror=mirror)
    images = _cmn(cfg, source, mean, std, x=x, y=y, mirror=mirror, dtype=types.FLOAT)
    window = subtracted_mean(stats, cfg.crop, 0, 0, False) / np.asarray(std, dtype=np.float32)
    images = images - _constant(cfg, window if cfg.layout == "NHWC" else window.transpose(2, 0, 1))
    return fn.cast(images, dtype=types.FLOAT16) if cfg.dtype == "float16" else images


def _train(cfg: DataConfig, stored, source, stats: ColourStats, expose: bool) -> dict:
    """Random crop position (integer, uniform over all 33 positions), flip, lighting, normalisation."""
    from nvidia.dali import fn, types

    span = STORED_SIZE - cfg.crop
    # Integer positions drawn explicitly, so the recorded value is exactly the pixel DALI crops at:
    # (x / span) * span rounds back to x.
    crop_x = fn.random.uniform(values=list(range(span + 1)), dtype=types.INT32)
    crop_y = fn.random.uniform(values=list(range(span + 1)), dtype=types.INT32)
    pos_x = fn.cast(crop_x, dtype=types.FLOAT) / float(max(span, 1))
    pos_y = fn.cast(crop_y, dtype=types.FLOAT) / float(max(span, 1))
    flip = fn.random.coin_flip(probability=FLIP_PROBABILITY, dtype=types.INT32)
    alpha = dali_alpha(cfg.pca_alpha_std)
    offset = dali_offset(stats, alpha)
    std = (stats.std * train_divisor(cfg.pca_alpha_std, cfg.lighting_rescale)).tolist()
    images = _normalise(cfg, source, stats, dali_mean_minus(stats, offset), std, x=pos_x, y=pos_y, mirror=flip)
    nodes = dict(images=images, crop_x=crop_x, crop_y=crop_y, flip=flip, alpha=alpha)
    if expose:  # raw = x + offset = (x - (-offset)) / 1, built only when asked for
        nodes["raw"] = _cmn(cfg, stored, 0.0 - offset, 1.0, x=pos_x, y=pos_y, mirror=flip, raw=True)
    return nodes


def _ten_crop(cfg: DataConfig, source, stats: ColourStats, raw: bool) -> object:
    """The ten views of §6 stacked on a new leading axis: (10, C, H, W) or (10, H, W, C) per image."""
    from nvidia.dali import fn

    if raw:
        views = [_cmn(cfg, source, 0.0, 1.0, x=x, y=y, mirror=m, raw=True) for x, y, m in TEN_CROP_POSITIONS]
    else:
        mean, std = stats.mean.tolist(), stats.std.tolist()
        views = [_normalise(cfg, source, stats, mean, std, x=x, y=y, mirror=m) for x, y, m in TEN_CROP_POSITIONS]
    return fn.stack(*views, axis=0)


def tracks_state(split: Split) -> bool:
    """Whether a split's pipeline tracks its state for checkpoints (DALI's enable_checkpointing): training
    only, the one split a run stops and resumes in the middle of."""
    return split == "train"


def build_pipeline(
    cfg: DataConfig,
    split: Split,
    *,
    shard_id: int = 0,
    num_shards: int = 1,
    entries: Sequence[tuple[str, int]] | None = None,
    shuffle: bool | None = None,
    expose: bool = False,
    checkpoint: str | None = None,
):
    """Build (not yet run) the DALI pipeline of one split for one shard.

    Args:
        cfg: data configuration (root, lists, batch size, device, normalisation, GPU options).
        split: "train", "val" or "ten_crop".
        shard_id, num_shards: this process's shard of the file list.
        entries: (relative path, label) pairs to read instead of the split's file list (preview).
        shuffle: override the split's default (train shuffles, val/ten_crop do not).
        expose: add EXPOSED_OUTPUTS[split] after OUTPUTS.
        checkpoint: a training pipeline's state (DALIGenericIterator.checkpoints()) to start from: the reader's
            position and every random operator's state, so the next batches are those the saved pipeline
            would have given next (docs/pipeline.md, "Resuming mid-epoch").

    Returns:
        (pipeline, output names). Images come out in cfg.layout ("CHW"/"HWC" per sample) and cfg.dtype;
        labels are int32 of shape (1,) per sample, on the GPU for a GPU graph.
    """
    entries = list(entries) if entries is not None else split_entries(cfg, split)
    shuffle = (split == "train") if shuffle is None else shuffle
    stats = colour_stats(cfg.pca, cfg.normalize, cfg.lighting_scale, cfg.mean_window)
    gpu = cfg.device == "gpu"
    names = OUTPUTS + (EXPOSED_OUTPUTS[split] if expose else ())
    # A shard list (pipeline/shards.py) is read by fn.readers.webdataset through index files of its samples.
    tars = dali_source(entries, list_folders(cfg.train_list, cfg.val_list)) if is_shard_list(entries) else None

    def define():
        if tars is None:
            jpegs, labels = read_files(cfg, entries, shuffle, shard_id, num_shards)
        else:
            jpegs, labels = read_shards(cfg.root, tars[0], tars[1], shuffle, cfg.seed, shard_id, num_shards,
                                        READER_NAME)
        stored = decode_stored(cfg, jpegs)
        source = _minus_mean_image(cfg, stored, stats)
        if split == "train":
            nodes = _train(cfg, stored, source, stats, expose)
        elif split == "val":
            nodes = dict(images=_normalise(cfg, source, stats, stats.mean.tolist(), stats.std.tolist()))
            if expose:
                nodes["raw"] = _cmn(cfg, stored, 0.0, 1.0, raw=True)
        else:
            nodes = dict(images=_ten_crop(cfg, source, stats, raw=False))
            if expose:
                nodes["raw"] = _ten_crop(cfg, stored, stats, raw=True)
        nodes.update(stored=stored, labels=labels.gpu() if gpu else labels)
        return tuple(nodes[name] for name in names)

    # Training pipelines track their state (DALI: no cost in speed; the same batches with and without, tested) so
    # that a checkpoint can store it and a resumed run need not decode the epoch's trained batches again.
    restore = dict(checkpoint=checkpoint) if checkpoint is not None else {}
    pipe = conditional_pipeline(
        define, batch_size=cfg.batch_size, num_threads=max(1, cfg.num_threads),  # 0: "no workers" for PIL
        device_id=(cfg.device_id or 0) if gpu else None,
        seed=pipeline_seed(cfg.seed, shard_id), prefetch_queue_depth=cfg.prefetch,
        enable_checkpointing=tracks_state(split), **restore,
    )
    if tars is not None:  # DALI opens the index files when the pipeline is built; they go with the pipeline
        weakref.finalize(pipe, shutil.rmtree, tars[2], True)
    return pipe, names


def as_numpy(output) -> np.ndarray:
    """A DALI TensorList (CPU or GPU) as one NumPy array (samples must share a shape)."""
    if hasattr(output, "as_cpu"):
        output = output.as_cpu()
    return np.stack([np.array(output[i]) for i in range(len(output))])
