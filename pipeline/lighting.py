"""The paper's PCA colour augmentation (§4.1) and normalisation, as DALI nodes and as plain numbers.

DALI has no lighting operator. The lighting offset is the same for every pixel of an image, so it
commutes with cropping and flipping, and adding it before normalisation equals subtracting it from
the mean:  (x + offset - mean) / std = (x - (mean - offset)) / std.  The graphs therefore pass a
per-image mean (a CPU node: named arguments of GPU operators must come from the CPU) to
crop_mirror_normalize, and the whole augmentation stays one fused GPU kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.constants import PIXEL_SCALE
from pipeline.pca import load_pca


@dataclass(frozen=True)
class ColourStats:
    """What normalisation and lighting need, on the pipeline's 0-255 scale.

    Attributes:
        mean: (3,) RGB mean subtracted from every pixel.
        std: (3,) RGB divisor (ones for normalize="mean", the paper's choice).
        lighting: (3, 3) matrix L with offset = L @ alpha, i.e. PIXEL_SCALE * eigvec * eigval (columns scaled).
    """

    mean: np.ndarray
    std: np.ndarray
    lighting: np.ndarray


def colour_stats(pca_path: Path | None, normalize: str) -> ColourStats:
    """Mean, std and lighting matrix from pca.json (or the published ImageNet values).

    Args:
        pca_path: pca.json from `imagenet-tools compute-pca`, or None for pipeline.constants' values.
        normalize: "mean" (subtract the mean only, as the paper) or "meanstd".

    Returns:
        The statistics scaled to 0-255 pixels, float32.
    """
    pca = load_pca(pca_path)
    mean = pca.mean * PIXEL_SCALE
    std = pca.std * PIXEL_SCALE if normalize == "meanstd" else np.ones(3)
    # eigvec @ (alpha * eigval) == (eigvec * eigval[None, :]) @ alpha.
    lighting = PIXEL_SCALE * pca.eigvec * pca.eigval[None, :]
    return ColourStats(mean.astype(np.float32), std.astype(np.float32), lighting.astype(np.float32))


def lighting_offset(stats: ColourStats, alpha: np.ndarray) -> np.ndarray:
    """The RGB offset added to every pixel for coefficients `alpha` (shape (..., 3)), 0-255 scale."""
    return np.asarray(alpha, dtype=np.float32) @ stats.lighting.T


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
