"""The paper's stored image (§2) computed with PIL: the one definition that the PIL baseline, compute-pca's
PIL backend, prepare's resize and repair, predict and the pictures share. No torch import, so worker processes
start fast.

Every PIL path sees an image as DALI's decoder does (`fn.decoders.image`, output_type RGB): upright (the EXIF
orientation applied, DALI's adjust_orientation=True) and as 8-bit RGB (`rgb8`: 16-bit samples scaled, not
clipped; alpha dropped, the colour under it kept, as DALI does).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.constants import RESIZE_SHORTER, STORED_SIZE
from pipeline.errors import InputError


EXIF_ORIENTATION = 0x0112
# Orientations 5-8 turn the picture a quarter: the stored width is the shown height.
QUARTER_TURNS = (5, 6, 7, 8)
# 16-bit samples (PNG, TIFF, PGM): v / 257 maps 0..65535 onto 0..255, as DALI's decoder does.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) that a viewer applies to the stored pixels; 1 when there is none."""
    value = image.getexif().get(EXIF_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB pixels of an image in any mode PIL opens, as DALI decodes the same file.

    16-bit greyscale (I;16*, and I, which PIL uses for 16-bit samples) is scaled by 255/65535 (PIL's own
    convert would clip everything above 255 to white); float (F) is taken as 0..1 (DALI's reading of a float
    TIFF); 1, L, P, LA, RGBA, CMYK, YCbCr ... go through PIL's convert, which drops alpha and keeps the colour
    under it, as DALI does (a transparent palette entry shows its palette colour).
    """
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(image).astype(np.float64) / 257.0
    elif image.mode == "F":
        grey = np.asarray(image).astype(np.float64) * 255.0
    else:
        return image.convert("RGB")
    return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")


def upright_rgb(image: Image.Image) -> Image.Image:
    """The picture a viewer (and DALI) shows: EXIF orientation applied, 8-bit RGB, no orientation left to apply."""
    return rgb8(ImageOps.exif_transpose(image) if orientation(image) != 1 else image)


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
        image: any PIL image (turned upright and converted to 8-bit RGB first: `upright_rgb`).

    Returns:
        uint8 (256, 256, 3) RGB.
    """
    rgb = upright_rgb(image)
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
