"""The conv1 kernels as in the paper's Figure 3: 96 kernels of 11x11x3, tower 1 above tower 2.

The picture is drawn pixel by pixel (no plotting library resampling it), so each kernel appears exactly as
its min-max scaled values: pixel = round(255 * (w - min(w)) / (max(w) - min(w))) over the kernel's
3x11x11 values, enlarged `zoom` times by repetition. Layout (docs/demo.md): 16 kernels per row, 3 rows per
tower, GAP pixels between kernels and TOWER_GAP between the towers, on a white background.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model.checkpoint import load_checkpoint
from pipeline.atomic import replacing
from pipeline.errors import InputError

COLUMNS = 16
ZOOM = 4
GAP = 2
TOWER_GAP = 10
BACKGROUND = 255


def scale_kernel(kernel: np.ndarray) -> np.ndarray:
    """(3, k, k) weights -> (k, k, 3) uint8, min-max scaled over the whole kernel (a flat kernel is grey)."""
    kernel = kernel.astype(np.float64)
    low, high = float(kernel.min()), float(kernel.max())
    scaled = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
    return np.rint(255 * scaled).astype(np.uint8).transpose(1, 2, 0)


def kernel_origin(index: int, kernels: int, size: int, zoom: int = ZOOM) -> tuple[int, int]:
    """(top, left) pixel of kernel `index` in the mosaic; kernels [0, n/2) are tower 1, the rest tower 2."""
    per_tower = kernels // 2
    rows_per_tower = -(-per_tower // COLUMNS)
    tower, within = divmod(index, per_tower)
    row, column = divmod(within, COLUMNS)
    cell = size * zoom + GAP
    top = GAP + tower * (rows_per_tower * cell + TOWER_GAP) + row * cell
    return top, GAP + column * cell


def kernel_mosaic(weight: np.ndarray, zoom: int = ZOOM) -> np.ndarray:
    """Figure 3 as an image.

    Args:
        weight: conv1 weights (n, 3, k, k), n even (two towers of n/2).
        zoom: pixels per weight.

    Returns:
        (H, W, 3) uint8 mosaic.
    """
    kernels, channels, size, _ = weight.shape
    if channels != 3 or kernels % 2:
        raise InputError(f"conv1 weights of shape {tuple(weight.shape)}: expected (even n, 3, k, k)")
    rows_per_tower = -(-(kernels // 2) // COLUMNS)
    cell = size * zoom + GAP
    height = GAP + 2 * rows_per_tower * cell + TOWER_GAP
    width = GAP + min(COLUMNS, kernels // 2) * cell
    mosaic = np.full((height, width, 3), BACKGROUND, np.uint8)
    for index in range(kernels):
        top, left = kernel_origin(index, kernels, size, zoom)
        block = scale_kernel(weight[index]).repeat(zoom, axis=0).repeat(zoom, axis=1)
        mosaic[top:top + size * zoom, left:left + size * zoom] = block
    return mosaic


def conv1_weight(checkpoint: Path) -> np.ndarray:
    """conv1 weights of a model.train checkpoint (the paper's `alexnet` or torchvision's layout)."""
    path = Path(checkpoint)
    weights = load_checkpoint(path)["state_dict"]
    for key in ("conv1.weight", "features.0.weight"):
        if key in weights:
            return weights[key].float().numpy()
    raise InputError(f"{path}: no conv1 weights (state_dict has neither conv1.weight nor features.0.weight)")


def draw_kernels(checkpoint: Path, out_png: Path, zoom: int = ZOOM) -> Path:
    """Write the Figure 3 mosaic of `checkpoint` to `out_png` (PNG, exact pixels). Returns out_png."""
    mosaic = kernel_mosaic(conv1_weight(checkpoint), zoom)
    with replacing(out_png) as temp:  # a reader never sees half a PNG
        Image.fromarray(mosaic, "RGB").save(temp, "PNG")
    return Path(out_png)
