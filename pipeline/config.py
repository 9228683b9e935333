"""What the data side of a run needs, as one frozen dataclass passed explicitly (never a global)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.constants import CROP_SIZE, PCA_ALPHA_STD
from pipeline.decoder_memory import DALI_DEVICE_PADDING, DALI_HOST_PADDING


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how to turn them into batches.

    Attributes:
        root: folder the paths in the file lists are relative to (prepare's ROOT, or its --resized-root).
        train_list, val_list: DALI file lists written by `imagenet-tools prepare`.
        pca: pca.json from `imagenet-tools compute-pca`; None uses the published ImageNet constants.
        batch_size: images per batch per process.
        device: "gpu" decodes with nvJPEG ("mixed") and runs GPU ops; "cpu" runs the same graph on CPU ops.
        device_id: CUDA device of the graph (None: a CPU-only DALI pipeline, no CUDA needed).
        backend: "dali" (pipeline.graphs) or "pil" (PyTorch DataLoader + PIL, the baseline).
        num_threads: DALI CPU threads, or DataLoader workers for backend "pil".
        normalize: "image" subtracts pca.json's mean image (the authors' code; model.train picks it when the
            PCA file has one), "mean" the per-channel mean, "meanstd" also divides by the std.
        layout: "NCHW", or "NHWC" to feed a channels_last model without a copy.
        dtype: "float32" or "float16" output.
        pca_alpha_std: std of the lighting coefficients alpha (paper: 0.1; 0 turns lighting off).
        train_last_batch: "drop" the incomplete last training batch, or "fill" it from the next epoch.
        seed: seeds the reader's shuffle and the augmentations.
        prefetch: DALI prefetch queue depth.
        hw_decoder_load: share of JPEG decoding sent to the A100/H100 hardware decoder (mixed decoder).
        device_memory_padding, host_memory_padding: nvJPEG's preallocated buffers per decoder thread, in bytes
            (device: one, pinned host: two); DALI's defaults, or sized from the data by
            pipeline.decoder_memory.padding_from_lists (model.train does).
        preallocate_width_hint, preallocate_height_hint: expected image size for nvJPEG's buffers.
        num_classes: when given, every label of the lists must lie in [0, num_classes).
        lighting_scale: "stdev" (alpha times sqrt(eigval) on 0-255: the authors' code) or "eigval"
            (fb.resnet.torch), pipeline/lighting.py.
        mean_window: normalize "image": "centre" (cuda-convnet2: the centre window of the mean image for every
            crop) or "crop" (Caffe: the crop's own window, flipped with it), pipeline.constants.MEAN_WINDOWS.
        lighting_rescale: also divide training images by (1 + pca_alpha_std), as cuda-convnet2 does
            (convdata.py:183); not in the paper, off by default.
    """

    root: Path
    train_list: Path | None = None
    val_list: Path | None = None
    pca: Path | None = None
    batch_size: int = 128
    device: Literal["cpu", "gpu"] = "cpu"
    device_id: int | None = None
    backend: Literal["dali", "pil"] = "dali"
    num_threads: int = 2
    normalize: Literal["image", "mean", "meanstd"] = "mean"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16"] = "float32"
    crop: int = CROP_SIZE
    pca_alpha_std: float = PCA_ALPHA_STD
    train_last_batch: Literal["drop", "fill"] = "drop"
    seed: int = 0
    prefetch: int = 2
    hw_decoder_load: float = 0.65
    device_memory_padding: int = DALI_DEVICE_PADDING
    host_memory_padding: int = DALI_HOST_PADDING
    preallocate_width_hint: int = 0
    preallocate_height_hint: int = 0
    num_classes: int | None = None
    lighting_scale: Literal["stdev", "eigval"] = "stdev"
    mean_window: Literal["centre", "crop"] = "centre"
    lighting_rescale: bool = False
