"""What kind of image a file is, from its first bytes: the one table of image signatures.

`prepare`'s header check (tools/prepare/header.py) and the loader's search for the file DALI could not decode
(pipeline/dali_loader.py) both read it.
"""
from __future__ import annotations

# (first bytes, format) of the image files DALI or PIL decode; WebP ("RIFF" ... "WEBP") is checked apart.
SIGNATURES = (
    (b"\xff\xd8", "jpeg"),  # SOI; a file cut after it is a truncated JPEG
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"), (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
    (b"\x00\x00\x00\x0cjP", "jpeg2000"),
    (b"P1", "pnm"), (b"P2", "pnm"), (b"P3", "pnm"), (b"P4", "pnm"), (b"P5", "pnm"), (b"P6", "pnm"),
)
# Bytes image_format needs: the longest signature (WebP's RIFF....WEBP).
HEAD_BYTES = 12


def image_format(head: bytes) -> str:
    """The format whose signature the file's first bytes `head` start with ("jpeg", "png", ...), or ""."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((name for signature, name in SIGNATURES if head.startswith(signature)), "")
