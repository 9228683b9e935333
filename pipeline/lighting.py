"""The paper's PCA colour augmentation (§4.1) and normalisation (§2), as DALI nodes and as plain numbers.

One definition for the DALI graphs (CPU and GPU) and the PIL baseline: `colour_stats` gives the numbers,
`subtracted_mean` what each crop has subtracted, `lighting_offset` / `dali_offset` the lighting.

DALI has no lighting operator. The lighting offset is the same for every pixel of an image, so it
commutes with cropping and flipping, and adding it before normalisation equals subtracting it from
the mean:  (x + offset - mean) / std = (x - (mean - offset)) / std.  The graphs therefore pass a
per-image mean (a CPU node: named arguments of GPU operators must come from the CPU) to
crop_mirror_normalize, and the whole augmentation stays one fused GPU kernel.

Lighting size. The paper adds [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T with a_i ~ N(0, 0.1). The authors' code
multiplies a_i by the standard deviation of component i on the 0-255 scale (cuda-convnet2 convdata.py:74
`randn * pca_stdevs`, color_pca[0] in make-data/input_meta: 19.7, 37.1, 121.8 grey levels), i.e.
offset = sum_i a_i * 255 sqrt(l_i) p_i with l_i the eigenvalues of [0, 1] pixels: lighting_scale "stdev",
the default. fb.resnet.torch multiplies by the eigenvalue itself, offset = 255 sum_i a_i l_i p_i:
lighting_scale "eigval", 2x weaker in brightness and 8-17x weaker in colour on ImageNet.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.constants import LIGHTING_SCALES, MEAN_WINDOWS, NORMALIZATIONS, PIXEL_SCALE, STORED_SIZE
from pipeline.errors import InputError
from pipeline.pca import load_pca
from pipeline.pil_image import crop_anchor


@dataclass(frozen=True)
class ColourStats:
    """What normalisation and lighting need, on the pipeline's 0-255 scale.

    Attributes:
        mean: (3,) RGB mean subtracted from every pixel (zeros for normalize="image": the image replaces it).
        std: (3,) RGB divisor (ones for "mean" and "image", the paper's choice).
        lighting: (3, 3) matrix L with offset = L @ alpha: PIXEL_SCALE * eigvec * sqrt(eigval) ("stdev") or
            PIXEL_SCALE * eigvec * eigval ("eigval"), columns scaled.
        mean_image: (256, 256, 3) float32 HWC mean image subtracted per pixel (normalize="image"), else None.
        mean_window: which window of mean_image a crop subtracts (MEAN_WINDOWS).
    """

    mean: np.ndarray
    std: np.ndarray
    lighting: np.ndarray
    mean_image: np.ndarray | None = None
    mean_window: str = "centre"


def lighting_matrix(eigval: np.ndarray, eigvec: np.ndarray, scale: str) -> np.ndarray:
    """L with offset = L @ alpha on the 0-255 scale, for [0, 1]-pixel eigen-pairs (see the module docstring)."""
    if scale not in LIGHTING_SCALES:
        raise InputError(f"unknown lighting scale {scale!r}; expected one of {', '.join(LIGHTING_SCALES)}")
    size = np.sqrt(eigval) if scale == "stdev" else eigval
    # eigvec @ (alpha * size) == (eigvec * size[None, :]) @ alpha.
    return PIXEL_SCALE * eigvec * size[None, :]


def colour_stats(pca_path: Path | None, normalize: str, lighting_scale: str = "stdev",
                 mean_window: str = "centre") -> ColourStats:
    """Mean (or mean image), std and lighting matrix from pca.json (or the published ImageNet values).

    Args:
        pca_path: pca.json from `imagenet-tools compute-pca`, or None for pipeline.constants' values.
        normalize: "image" (subtract the mean image: the authors' code), "mean" (the per-channel mean) or
            "meanstd" (the per-channel mean, then divide by the std).
        lighting_scale: "stdev" (the authors' code) or "eigval" (fb.resnet.torch), see the module docstring.
        mean_window: "centre" (cuda-convnet2) or "crop" (Caffe); used with normalize="image".

    Returns:
        The statistics scaled to 0-255 pixels, float32.

    Raises:
        InputError: an unknown choice, or normalize="image" with a PCA file that holds no mean image.
    """
    if normalize not in NORMALIZATIONS or mean_window not in MEAN_WINDOWS:
        raise InputError(f"unknown normalize {normalize!r} or mean window {mean_window!r}; expected one of "
                         f"{', '.join(NORMALIZATIONS)} and {', '.join(MEAN_WINDOWS)}")
    pca = load_pca(pca_path)
    lighting = lighting_matrix(pca.eigval, pca.eigvec, lighting_scale).astype(np.float32)
    std = pca.std * PIXEL_SCALE if normalize == "meanstd" else np.ones(3)
    if normalize != "image":
        return ColourStats((pca.mean * PIXEL_SCALE).astype(np.float32), std.astype(np.float32), lighting)
    if pca.mean_image is None:
        where = pca_path if pca_path is not None else "the published ImageNet statistics (no --pca)"
        raise InputError(f"{where}: normalize 'image' needs a pca.json with a mean image; write one with "
                         "`imagenet-tools compute-pca`, or use --normalize mean")
    mean_image = (pca.mean_image * PIXEL_SCALE).astype(np.float32)
    return ColourStats(np.zeros(3, np.float32), std.astype(np.float32), lighting, mean_image, mean_window)


def subtracted_mean(stats: ColourStats, crop: int, x: int, y: int, flip: bool) -> np.ndarray:
    """What normalisation subtracts from the crop whose top-left corner is (x, y) in the 256x256 image.

    Returns:
        stats.mean (3,) without a mean image; else a (crop, crop, 3) window of it: the centre window for
        every crop ("centre", cuda-convnet2 convdata.py:104,192), or the crop's own window, mirrored with
        the crop ("crop", Caffe data_transformer.cpp:101,115).
    """
    if stats.mean_image is None:
        return stats.mean
    if stats.mean_window == "centre":
        # The validation crop's window (DALI's rounding); cuda-convnet2's border_size = (256 - crop) // 2
        # is the same for every even border, 224 included.
        x = y = crop_anchor(STORED_SIZE, crop)
        flip = False
    window = stats.mean_image[y : y + crop, x : x + crop]
    return window[:, ::-1] if flip else window


def lighting_offset(stats: ColourStats, alpha: np.ndarray) -> np.ndarray:
    """The RGB offset added to every pixel for coefficients `alpha` (shape (..., 3)), 0-255 scale."""
    return np.asarray(alpha, dtype=np.float32) @ stats.lighting.T


def train_divisor(alpha_std: float, rescale: bool) -> float:
    """cuda-convnet2 also scales each training image by 1 / (1 + alpha_std) after adding the colour noise
    (convdata.py:181-183, "so that the overall scale of the training data doesn't become too different from
    the test data"); the paper does not. Opt-in (DataConfig.lighting_rescale): the divisor, else 1."""
    return 1.0 + float(alpha_std) if rescale else 1.0


def dali_alpha(alpha_std: float):
    """A CPU node: alpha ~ N(0, alpha_std), shape (3,), drawn per image per use (zeros when alpha_std is 0)."""
    from nvidia.dali import fn, types

    if alpha_std > 0:
        return fn.random.normal(shape=[3], stddev=float(alpha_std), dtype=types.FLOAT)
    return fn.random.normal(shape=[3], stddev=1.0, dtype=types.FLOAT) * 0.0


def dali_offset(stats: ColourStats, alpha):
    """A CPU node: the lighting offset L @ alpha, shape (3,), computed by fn.coord_transform."""
    from nvidia.dali import fn

    # coord_transform maps each row of an (n, 3) tensor to M @ row; one row per image here.
    point = fn.reshape(alpha, shape=[1, 3])
    moved = fn.coord_transform(point, M=stats.lighting.flatten().tolist(), T=[0.0, 0.0, 0.0])
    return fn.reshape(moved, shape=[3])


def dali_mean_minus(stats: ColourStats, offset):
    """A CPU node: the per-image mean (mean - offset) that folds lighting into normalisation."""
    from nvidia.dali import types

    return types.Constant(stats.mean, dtype=types.FLOAT) - offset
