"""pca.json: the RGB eigen-decomposition behind the paper's colour augmentation (§4.1).

Written by `imagenet-tools compute-pca` (tools/compute_pca.py); read here, with the checks that keep a
bad file from silently distorting every training image.

The mean image (§2's "mean activity over the training set" per pixel, normalize="image") has 196,608
values, too many for a file people read: it lives beside pca.json in `<stem>.mean-<sha256[:16]>.npy`
(float64, HWC, [0, 1] pixels), which pca.json names with its sha256 under "mean_image". The name changes
with the content, so writing a new pair never breaks the old one before the new pca.json replaces it.
Files without "mean_image" (written before it existed) load as before, with mean_image None.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import write_atomic
from pipeline.constants import (IMAGENET_MEAN_255, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, IMAGENET_STD_255,
                                STORED_SIZE)
from pipeline.errors import InputError

ORTHONORMAL_TOLERANCE = 1e-4
MEAN_IMAGE_SHAPE = (STORED_SIZE, STORED_SIZE, 3)
# The mean image averaged over its pixels is the per-channel mean (every image has 256 x 256 pixels); a
# side file from another run fails this even if someone rewrote its recorded hash.
MEAN_IMAGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PCA:
    """Statistics of RGB pixels in [0, 1].

    Attributes:
        eigval: (3,) eigenvalues of the covariance, descending, all positive.
        eigvec: (3, 3) orthonormal; column i is the component of eigval[i]; rows are R, G, B.
        mean: (3,) per-channel mean.
        std: (3,) per-channel standard deviation.
        mean_image: (256, 256, 3) per-pixel mean of the stored images (HWC, RGB), or None.
    """

    eigval: np.ndarray
    eigvec: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_image: np.ndarray | None = None


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
            positive, eigenvector columns not orthonormal (to 1e-4), or a mean image that is named but
            missing, altered, of the wrong shape, or not the per-channel mean's.
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
    mean_image = read_mean_image(path, data["mean_image"], mean) if "mean_image" in data else None
    return PCA(eigval=eigval, eigvec=eigvec, mean=mean, std=std, mean_image=mean_image)


def read_mean_image(path: Path, entry: object, mean: np.ndarray) -> np.ndarray:
    """The side file that pca.json's "mean_image" entry names, checked (see the module docstring)."""
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(f"{path}: 'mean_image' must name a .npy file in the same folder, with its sha256; "
                         "regenerate it with `imagenet-tools compute-pca`")
    file = path.parent / name
    if not file.is_file():
        raise InputError(f"{path}: its mean image {file} is missing; keep the .npy that compute-pca wrote "
                         "beside it, or rerun `imagenet-tools compute-pca`")
    raw = file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry.get("sha256"):
        raise InputError(f"{file}: does not match the sha256 recorded in {path} (changed since compute-pca "
                         "wrote it); rerun `imagenet-tools compute-pca`")
    try:
        value = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{file}: not a NumPy .npy file ({error})") from None
    if value.shape != MEAN_IMAGE_SHAPE or value.dtype.kind != "f" or not np.all(np.isfinite(value)):
        raise InputError(f"{file}: expected a finite float {MEAN_IMAGE_SHAPE} mean image, "
                         f"got {value.dtype} {value.shape}")
    if value.min() < 0.0 or value.max() > 1.0:
        raise InputError(f"{file}: mean image values must lie in [0, 1] (pixels / 255)")
    gap = float(np.abs(value.mean(axis=(0, 1)) - mean).max())
    if gap > MEAN_IMAGE_TOLERANCE:
        raise InputError(f"{file}: its average over pixels differs from {path}'s mean by {gap:.2e}; "
                         "the two files do not belong together: rerun `imagenet-tools compute-pca`")
    return value.astype(np.float64)


def mean_image_file(pca_path: Path) -> Path | None:
    """The side file an existing pca.json names (None: no file, not JSON, or no mean image)."""
    try:
        entry = json.loads(Path(pca_path).read_text(encoding="utf-8")).get("mean_image")
        return Path(pca_path).parent / Path(entry["file"]).name
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return None


def write_mean_image(mean_image: np.ndarray, pca_path: Path) -> dict:
    """Write the mean image beside `pca_path` (atomically: temp file + rename) and return pca.json's entry.

    Args:
        mean_image: (256, 256, 3) per-pixel mean of [0, 1] pixels, HWC, RGB.
        pca_path: the pca.json it belongs to (written afterwards, with the returned entry).

    Returns:
        {"file", "sha256", "shape", "layout", "scale"}: what `read_mean_image` checks.
    """
    data = np.ascontiguousarray(mean_image, dtype=np.float64)
    if data.shape != MEAN_IMAGE_SHAPE:
        raise ValueError(f"mean image must have shape {MEAN_IMAGE_SHAPE}, got {data.shape}")
    buffer = io.BytesIO()
    np.save(buffer, data, allow_pickle=False)
    raw = buffer.getvalue()
    digest = hashlib.sha256(raw).hexdigest()
    target = Path(pca_path).parent / f"{Path(pca_path).stem}.mean-{digest[:16]}.npy"
    write_atomic(target, raw)
    return {"file": target.name, "sha256": digest, "shape": list(MEAN_IMAGE_SHAPE),
            "layout": "HWC: rows top to bottom, columns left to right, R G B", "scale": "unit"}


def default_normalization(path: Path | None) -> str:
    """"image" when the PCA file has a mean image (the authors' per-pixel mean subtraction), else "mean"."""
    return "image" if path is not None and load_pca(path).mean_image is not None else "mean"
