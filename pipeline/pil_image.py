"""The paper's stored image (§2) computed with PIL: the one definition that the PIL baseline, compute-pca's
PIL backend, prepare's resize and the pictures share. No torch import, so worker processes start fast.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.constants import RESIZE_SHORTER, STORED_SIZE
from pipeline.errors import InputError


def crop_anchor(size: int, crop: int, position: float = 0.5) -> int:
    """Top-left pixel of a crop at normalised position, rounded half away from zero (as DALI does)."""
    return int(math.floor(position * (size - crop) + 0.5))


def resized_size(width: int, height: int, shorter: int = RESIZE_SHORTER) -> tuple[int, int]:
    """(width, height) with the shorter side equal to `shorter`, the aspect kept, the longer side rounded."""
    scale = shorter / min(width, height)
    if width <= height:
        return shorter, max(1, round(height * scale))
    return max(1, round(width * scale)), shorter


def centre_crop(stored: np.ndarray, crop: int) -> np.ndarray:
    """Validation's view (§4.1): the centre crop x crop of a stored 256x256 image, at DALI's crop_pos 0.5."""
    start = crop_anchor(STORED_SIZE, crop, 0.5)
    return stored[start : start + crop, start : start + crop]


def stored_pixels(image: Image.Image) -> np.ndarray:
    """Shorter side -> 256 (PIL's bilinear, which widens its filter when shrinking: antialiased), centre 256x256.

    Args:
        image: any PIL image (grayscale, CMYK, palette ... are converted to RGB first).

    Returns:
        uint8 (256, 256, 3) RGB.
    """
    rgb = image.convert("RGB")
    width, height = resized_size(*rgb.size)
    pixels = np.asarray(rgb.resize((width, height), Image.BILINEAR))
    y0, x0 = crop_anchor(height, STORED_SIZE), crop_anchor(width, STORED_SIZE)
    return pixels[y0 : y0 + STORED_SIZE, x0 : x0 + STORED_SIZE]


def stored_image(path: Path) -> np.ndarray:
    """`stored_pixels` of an image file; an unreadable file is one InputError line naming it."""
    try:
        with Image.open(path) as image:
            return stored_pixels(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(
            f"{path}: PIL could not read or decode this image ({error}); "
            "find and drop bad files with `imagenet-tools prepare ROOT --out DIR --check decode`"
        ) from None
