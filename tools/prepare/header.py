"""What an image file is, read from its first bytes: format, size, colour components, truncation.

`prepare --check header` runs this on every file of an ImageNet tree, so it reads as little as it
can: the JPEG markers up to the start of the scan (usually the first few KB) and the last 1 KB,
where a complete JPEG has its end-of-image marker. It never decodes pixels.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

from pipeline.signatures import image_format

# Read this much at once: enough for the markers before the scan of nearly every camera JPEG.
HEAD_BYTES = 16384
# A complete JPEG ends with FF D9; look for it in this many final bytes first (some writers pad).
TAIL_BYTES = 1024

# Start-of-frame markers by what they mean for a decoder.
SOF_HUFFMAN = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
SOF_UNSUPPORTED = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "lossless",
                   0xCB: "lossless", 0xCD: "hierarchical", 0xCE: "hierarchical", 0xCF: "lossless"}
EOI, SOS, COM = 0xD9, 0xDA, 0xFE
# Formats besides JPEG and PNG that prepare accepts (re-encoded as JPEG); their size comes from PIL
# (tools/prepare/check.py). Others with a signature (JPEG 2000, PNM) count as not an image, as before.
OTHER_FORMATS = ("gif", "bmp", "tiff", "webp")


@dataclass(frozen=True)
class Header:
    """What the first bytes of a file say.

    Attributes:
        format: "jpeg", "png", "gif", "bmp", "webp", "tiff", or "" when no image signature matched.
        width, height: pixels (0 when unknown).
        components: colour components of a JPEG (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK); PNG: 1 grey, 3 colour.
        coding: "baseline", "extended", "progressive", "arithmetic" for JPEG; "" otherwise.
        problem: why the file cannot be used at all (empty, truncated, not an image...); "" if none.
        comment: the payload of a JPEG's first comment segment (COM) before the scan; b"" if none.
    """

    format: str
    width: int = 0
    height: int = 0
    components: int = 0
    coding: str = ""
    problem: str = ""
    comment: bytes = b""


class _Reader:
    """Bytes of an open file, read lazily from the start."""

    def __init__(self, handle, size: int) -> None:
        self.handle, self.size = handle, size
        self.data = handle.read(HEAD_BYTES)

    def has(self, end: int) -> bool:
        """Make sure bytes [0, end) are loaded; False if the file is shorter."""
        if end > self.size:
            return False
        if end > len(self.data):
            self.handle.seek(len(self.data))
            self.data += self.handle.read(max(end - len(self.data), HEAD_BYTES))
        return len(self.data) >= end


def read_header(path: str | os.PathLike | io.BytesIO) -> Header:
    """Describe an image file from its signature and (for JPEG) its markers.

    Args:
        path: the file, or its bytes.

    Returns:
        A Header; `problem` is set for an empty file, a file that is not an image, a JPEG that is
        truncated (ends inside a marker segment, has no scan, or has no end-of-image marker), or a
        JPEG coding most decoders reject (lossless, hierarchical, 12-bit).

    Raises:
        OSError: the file cannot be opened or read (the caller records it as unreadable).
    """
    if isinstance(path, io.BytesIO):  # a member of a shard, read into memory (tools/prepare/shards.py)
        path.seek(0)
        return _read(path, path.getbuffer().nbytes)
    with open(path, "rb") as handle:
        return _read(handle, os.fstat(handle.fileno()).st_size)


def _read(handle, size: int) -> Header:
    if size == 0:
        return Header("", problem="empty file")
    reader = _Reader(handle, size)
    kind = image_format(reader.data)
    if kind == "jpeg":
        return _read_jpeg(reader)
    if kind == "png":
        return _read_png(reader.data)
    if kind in OTHER_FORMATS:
        return Header(kind)
    return Header("", problem="not an image (no JPEG/PNG/GIF/BMP/TIFF/WebP signature)")


def _read_png(head: bytes) -> Header:
    """Width, height and colour from the IHDR chunk, which the PNG standard puts first."""
    if len(head) < 26 or head[12:16] != b"IHDR":
        return Header("png", problem="truncated PNG (no IHDR chunk)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    colour_type = head[25]
    # Colour types 0 (grey) and 4 (grey + alpha) have one colour component; 2, 3, 6 have three.
    return Header("png", width, height, 1 if colour_type in (0, 4) else 3)


def _read_jpeg(reader: _Reader) -> Header:
    """Walk the marker segments from SOI to SOS, then look for EOI at the end of the file."""
    data = reader.data
    pos, frame, comment = 2, None, b""
    while True:
        # Bytes already read are checked with len(); reader.has() reads more only when needed.
        if pos + 4 > len(data):
            if not reader.has(pos + 2):
                return Header("jpeg", problem="truncated JPEG (file ends inside the header)")
            reader.has(pos + 4)
            data = reader.data
        if data[pos] != 0xFF:
            return Header("jpeg", problem=f"corrupt JPEG header (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if marker == EOI:
            return Header("jpeg", problem="corrupt JPEG (end-of-image before any scan)")
        if pos + 4 > len(data):
            return Header("jpeg", problem="truncated JPEG (file ends inside a segment)")
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or (end > len(data) and not reader.has(end)):
            return Header("jpeg", problem="truncated JPEG (file ends inside a segment)")
        data = reader.data
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame (C4, C8, CC are not)
            if marker in SOF_UNSUPPORTED:
                return Header("jpeg", problem=f"{SOF_UNSUPPORTED[marker]} JPEG: most decoders cannot read it")
            if length < 8:
                return Header("jpeg", problem="corrupt JPEG frame header")
            precision = data[pos + 4]
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            frame = (width, height, data[pos + 9], SOF_HUFFMAN.get(marker, "arithmetic"))
            if precision != 8:
                return Header("jpeg", *frame, problem=f"{precision}-bit JPEG: most decoders read only 8-bit")
        elif marker == SOS:
            if frame is None:
                return Header("jpeg", problem="corrupt JPEG (scan before any frame header)")
            if frame[0] == 0 or frame[1] == 0:
                return Header("jpeg", *frame, problem="JPEG with a zero size")
            problem = "" if _ends_with_eoi(reader, end) else "truncated JPEG (no end-of-image marker)"
            return Header("jpeg", *frame, problem=problem, comment=comment)
        elif marker == COM and not comment:
            comment = bytes(data[pos + 4:end])
        pos = end


def _ends_with_eoi(reader: _Reader, scan_start: int) -> bool:
    """True if an FF D9 marker follows the scan data (inside entropy-coded data FF is never followed by D9)."""
    if reader.size - scan_start < 2:
        return False
    if len(reader.data) == reader.size:  # a small file is already in memory
        return b"\xff\xd9" in reader.data[max(scan_start, reader.size - TAIL_BYTES):] or \
            b"\xff\xd9" in reader.data[scan_start:]
    start = max(scan_start, reader.size - TAIL_BYTES)
    reader.handle.seek(start)
    if b"\xff\xd9" in reader.handle.read():
        return True
    if start == scan_start:
        return False
    # Rare: more than TAIL_BYTES of padding after EOI. Look at the whole scan.
    reader.handle.seek(scan_start)
    return b"\xff\xd9" in reader.handle.read()
