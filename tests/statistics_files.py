"""Hand-written pca.json files (with a mean image beside them) for the tests of what runs record of their inputs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from pipeline.constants import IMAGENET_MEAN_255, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, IMAGENET_STD_255
from pipeline.pca import write_mean_image


def write_pca_json(path: Path, shift: float = 0.0) -> Path:
    """A valid pca.json at `path`: the published eigen-pairs and std, the published per-channel mean plus `shift`,
    and a flat mean image of that mean beside it (its own .npy). Returns `path`."""
    mean = [value / 255 + shift for value in IMAGENET_MEAN_255]
    document = {"eigval": list(IMAGENET_PCA_EIGVAL), "eigvec": [list(row) for row in IMAGENET_PCA_EIGVEC],
                "mean": mean, "std": [value / 255 for value in IMAGENET_STD_255]}
    document["mean_image"] = write_mean_image(np.broadcast_to(np.array(mean), (256, 256, 3)), path)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def mean_image_of(path: Path) -> Path:
    """The mean image file that the pca.json at `path` names."""
    return path.parent / json.loads(path.read_text(encoding="utf-8"))["mean_image"]["file"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def described(path: Path) -> str:
    """How an error names a pca.json and its mean image (absolute paths, the first 12 hex digits of each sha256)."""
    side = mean_image_of(path)
    return (f"{os.path.abspath(path)} (sha256 {sha256(path)[:12]}, mean image {os.path.abspath(side)} "
            f"sha256 {sha256(side)[:12]})")
