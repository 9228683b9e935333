"""Re-encoding of `prepare`: one image written as an RGB JPEG (repaired, or resized for --resize).

Worker functions take and return plain tuples so a process pool (tools.shared.jobs) can ship them cheaply.
"""
from __future__ import annotations

import errno
import os
import shutil

from PIL import Image, ImageOps

from pipeline.pil_image import resized_size
from tools.prepare.check import our_size_limit

PART_SUFFIX = ".part"
EXIF_ORIENTATION = 0x0112


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
        with our_size_limit(), Image.open(src) as image:
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
