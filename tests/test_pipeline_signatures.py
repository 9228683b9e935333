"""pipeline/signatures.py: the one table of image signatures, against files PIL writes."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from pipeline.signatures import HEAD_BYTES, image_format


@pytest.mark.parametrize("pil_format, expected", [
    ("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tiff"), ("WEBP", "webp"),
    ("PPM", "pnm"),
])
def test_files_pil_writes(pil_format: str, expected: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buffer, pil_format)
    assert image_format(buffer.getvalue()[:HEAD_BYTES]) == expected


def test_not_an_image() -> None:
    assert image_format(b"<html><body>") == "" and image_format(b"") == ""
    assert image_format(b"RIFF\x00\x00\x00\x00WAVE") == ""  # a RIFF file that is not WebP
