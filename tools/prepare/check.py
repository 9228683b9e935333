"""Per-file work of `prepare`: check one image, re-encode one image (repair, resize).

Worker functions take and return plain tuples so a process pool (tools.shared.jobs) can ship them cheaply.
"""
from __future__ import annotations

import errno
import os
import shutil

from PIL import Image, ImageOps

from pipeline.pil_image import resized_size
from tools.prepare.header import read_header

# A verdict is ("ok" | "fix" | "reject", reason, width, height).
Verdict = tuple[str, str, int, int]
# An image smaller than this on a side is a thumbnail or a broken crop, not a training image.
DEFAULT_MIN_SIDE = 10
# PIL refuses (DecompressionBombError) above twice its MAX_IMAGE_PIXELS; the largest ImageNet
# photos are far below. Above this a decoder's buffers alone take > 0.5 GB per image.
DEFAULT_MAX_PIXELS = 178_956_970
PART_SUFFIX = ".part"
EXIF_ORIENTATION = 0x0112
# The size limit is ours (--max-pixels, checked from the header); without this PIL would refuse or warn
# about large images in Image.open with an error that reads like a broken file.
Image.MAX_IMAGE_PIXELS = None


def check_file(path: str, check: str, min_side: int, max_pixels: int) -> Verdict:
    """Decide whether an image can go in a file list as is, after re-encoding, or not at all.

    Args:
        path: the image file.
        check: "header" (signature and JPEG markers only) or "decode" (also a full PIL decode).
        min_side, max_pixels: size limits; outside them the file is rejected.

    Returns:
        ("ok", "", w, h): an 8-bit 3-component JPEG; ("fix", why, w, h): readable but grayscale, CMYK,
        arithmetic-coded or not a JPEG, usable once re-encoded as an RGB JPEG; ("reject", why, w, h).
    """
    try:
        header = read_header(path)
    except OSError as error:
        return "reject", f"unreadable: {error.strerror or error}", 0, 0
    width, height = header.width, header.height
    if header.problem:
        return "reject", header.problem, width, height
    status, reason = "ok", ""
    if header.format != "jpeg":
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception:  # PIL raises many types for data it cannot parse
            return "reject", f"not an image (PIL cannot open its {header.format.upper()} data)", 0, 0
        status, reason = "fix", f"{header.format.upper()} data, not JPEG"
    elif header.components == 1:
        status, reason = "fix", "grayscale JPEG"
    elif header.components == 4:
        status, reason = "fix", "CMYK JPEG"
    elif header.components != 3:
        return "reject", f"JPEG with {header.components} colour components", width, height
    elif header.coding == "arithmetic":
        status, reason = "fix", "arithmetic-coded JPEG"
    if min(width, height) < min_side:
        return "reject", f"too small ({width}x{height}; --min-side {min_side})", width, height
    if width * height > max_pixels:
        return "reject", f"too large ({width}x{height}; --max-pixels {max_pixels})", width, height
    if check == "decode":
        problem = _decode_problem(path)
        if problem:
            return "reject", problem, width, height
    return status, reason, width, height


def _decode_problem(path: str) -> str:
    """"" if PIL decodes every pixel of the file, else why not."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # truncated data, bad Huffman tables, ...: anything that stops a decode
        return f"does not decode: {error}"
    return ""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels of any PIL image; transparent pixels are put on white (as a browser shows them)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def write_jpeg(job: tuple[str, str, bool], quality: int, shorter: int | None) -> tuple[str, str]:
    """Write `src` as an RGB JPEG at `dst`, resized so its shorter side is `shorter` (None: same size).

    The JPEG is written to `dst + ".part"` and renamed, so a file at `dst` is always complete; an
    existing `dst` is kept (this is what makes an interrupted run resumable). The EXIF orientation is
    applied to the pixels, as DALI's decoders do by default (adjust_orientation=True), so the copy
    looks the same to every reader.

    Args:
        job: (source path, destination path, copy_ok): copy_ok means the source is a good RGB JPEG,
            so when no pixel would change it is copied byte for byte instead of re-encoded.
        quality: JPEG quality of the written file.
        shorter: target length of the shorter side, or None.

    Returns:
        ("done" | "kept" | "failed" | "nospace", message).
    """
    src, dst, copy_ok = job
    if os.path.exists(dst):
        return "kept", ""
    part = dst + PART_SUFFIX
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with Image.open(src) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            turned = orientation in (5, 6, 7, 8)  # these swap width and height
            upright = image.size[::-1] if turned else image.size
            size = resized_size(*upright, shorter) if shorter else upright
            if copy_ok and orientation == 1 and size == image.size:
                shutil.copyfile(src, part)
            else:
                if image.format == "JPEG":  # decode at 1/2, 1/4, 1/8 scale when that is still >= size
                    image.draft("RGB", size[::-1] if turned else size)
                rgb = to_rgb(ImageOps.exif_transpose(image) if orientation != 1 else image)
                if rgb.size != size:
                    rgb = rgb.resize(size, Image.Resampling.LANCZOS)  # antialiased downsampling
                rgb.save(part, "JPEG", quality=quality)
        os.replace(part, dst)
    except OSError as error:
        _remove(part)
        if error.errno == errno.ENOSPC:
            return "nospace", f"disk full while writing {dst}"
        return "failed", f"does not decode: {error}"
    except Exception as error:  # a decoder error of any type means this image cannot be used
        _remove(part)
        return "failed", f"does not decode: {error}"
    return "done", ""


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
