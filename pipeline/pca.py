"""pca.json: the RGB eigen-decomposition behind the paper's colour augmentation (§4.1).

Written by `imagenet-tools compute-pca` (tools/compute_pca.py); read here, with the checks that keep a
bad file from silently distorting every training image.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.constants import IMAGENET_MEAN_255, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, IMAGENET_STD_255
from pipeline.errors import InputError

ORTHONORMAL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PCA:
    """Statistics of RGB pixels in [0, 1].

    Attributes:
        eigval: (3,) eigenvalues of the covariance, descending, all positive.
        eigvec: (3, 3) orthonormal; column i is the component of eigval[i]; rows are R, G, B.
        mean: (3,) per-channel mean.
        std: (3,) per-channel standard deviation.
    """

    eigval: np.ndarray
    eigvec: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def default_pca() -> PCA:
    """The published ImageNet statistics (fb.resnet.torch eigen-pairs, torchvision mean/std)."""
    return PCA(
        eigval=np.array(IMAGENET_PCA_EIGVAL, dtype=np.float64),
        eigvec=np.array(IMAGENET_PCA_EIGVEC, dtype=np.float64),
        mean=np.array(IMAGENET_MEAN_255, dtype=np.float64) / 255.0,
        std=np.array(IMAGENET_STD_255, dtype=np.float64) / 255.0,
    )


def _array(data: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if key not in data:
        raise InputError(f"{path}: no '{key}' field; regenerate it with `imagenet-tools compute-pca`")
    try:
        value = np.array(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: '{key}' is not numeric") from None
    if value.shape != shape:
        raise InputError(f"{path}: '{key}' has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{path}: '{key}' holds NaN or infinite values")
    return value


def load_pca(path: Path | None) -> PCA:
    """Read and check pca.json; None gives `default_pca()`.

    Raises:
        InputError: missing or unparsable file, wrong shapes, non-finite values, eigenvalues not
            positive, or eigenvector columns not orthonormal (to 1e-4).
    """
    if path is None:
        return default_pca()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such PCA file; make one with `imagenet-tools compute-pca`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with eigval, eigvec, mean, std")
    if data.get("scale", "unit") != "unit":
        raise InputError(f"{path}: scale {data.get('scale')!r} is not supported; expected 'unit' ([0, 1] pixels)")
    eigval = _array(data, "eigval", (3,), path)
    eigvec = _array(data, "eigvec", (3, 3), path)
    mean = _array(data, "mean", (3,), path)
    std = _array(data, "std", (3,), path)
    if not np.all(eigval > 0):
        raise InputError(f"{path}: eigenvalues must be positive, got {eigval.tolist()}")
    error = float(np.abs(eigvec.T @ eigvec - np.eye(3)).max())
    if not math.isfinite(error) or error > ORTHONORMAL_TOLERANCE:
        raise InputError(f"{path}: eigvec columns are not orthonormal (max |VᵀV - I| = {error:.2e})")
    if not np.all(std > 0):
        raise InputError(f"{path}: std must be positive, got {std.tolist()}")
    return PCA(eigval=eigval, eigvec=eigvec, mean=mean, std=std)
