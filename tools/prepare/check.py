"""Per-file check of `prepare`: can an image go in a file list as is, after re-encoding, or not at all?

Worker functions take and return plain tuples so a process pool (tools.shared.jobs) can ship them cheaply.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

from PIL import Image

from tools.prepare.header import read_header

# A verdict is ("ok" | "fix" | "reject", reason, width, height).
Verdict = tuple[str, str, int, int]
# An image smaller than this on a side is a thumbnail or a broken crop, not a training image.
DEFAULT_MIN_SIDE = 10
# PIL refuses (DecompressionBombError) above twice its MAX_IMAGE_PIXELS; the largest ImageNet
# photos are far below. Above this a decoder's buffers alone take > 0.5 GB per image.
DEFAULT_MAX_PIXELS = 178_956_970
# Long side / short side above this is a strip, not a photo: a 30000x20 image resized to a shorter side of 256
# is 384000x256 (~300 MB decoded). ImageNet's most elongated photos are about 1:10.
DEFAULT_MAX_ASPECT = 20.0


@contextmanager
def our_size_limit() -> Iterator[None]:
    """PIL without its own pixel limit, for the duration: the limit is ours (--max-pixels, checked from the
    header); PIL's would refuse or warn about large images in Image.open with an error that reads like a
    broken file. Set while a file is opened, not at import, so that importing prepare changes nothing else."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def check_file(path: str | io.BytesIO, check: str, min_side: int, max_pixels: int,
               max_aspect: float = DEFAULT_MAX_ASPECT) -> Verdict:
    """Decide whether an image can go in a file list as is, after re-encoding, or not at all.

    Args:
        path: the image file, or its bytes (a shard's member).
        check: "header" (signature and JPEG markers only) or "decode" (also a full PIL decode).
        min_side, max_pixels, max_aspect: size limits (max_aspect: long side / short side); outside them the
            file is rejected.

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
            with our_size_limit(), Image.open(_rewound(path)) as image:
                width, height = image.size
        except Exception:  # PIL raises many types for data it cannot parse
            return "reject", f"not an image (PIL cannot open its {header.format.upper()} data)", 0, 0
        status, reason = "fix", f"{header.format.upper()} data, not JPEG"
    elif header.components not in (1, 3, 4):
        return "reject", f"JPEG with {header.components} colour components", width, height
    elif header.coding == "arithmetic":  # before the colour: what a decoder must support first
        status, reason = "fix", "arithmetic-coded JPEG"
    elif header.components == 1:
        status, reason = "fix", "grayscale JPEG"
    elif header.components == 4:
        status, reason = "fix", "CMYK JPEG"
    if min(width, height) < min_side:
        return "reject", f"too small ({width}x{height}; --min-side {min_side})", width, height
    if width * height > max_pixels:
        return "reject", f"too large ({width}x{height}; --max-pixels {max_pixels})", width, height
    if max(width, height) > max_aspect * min(width, height):
        ratio = max(width, height) / min(width, height)
        return ("reject", f"too elongated ({width}x{height}, {ratio:.1f}:1; --max-aspect {max_aspect:g})", width,
                height)
    if check == "decode":
        problem = _decode_problem(path)
        if problem:
            return "reject", problem, width, height
    return status, reason, width, height


def _rewound(path: str | io.BytesIO) -> str | io.BytesIO:
    """Bytes in memory are read again from the start."""
    if isinstance(path, io.BytesIO):
        path.seek(0)
    return path


def _decode_problem(path: str | io.BytesIO) -> str:
    """"" if PIL decodes every pixel of the file, else why not."""
    try:
        with our_size_limit(), Image.open(_rewound(path)) as image:
            image.load()
    except Exception as error:  # truncated data, bad Huffman tables, ...: anything that stops a decode
        return f"does not decode: {error}"
    return ""
