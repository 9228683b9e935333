"""nvJPEG's preallocated buffers (DataConfig.device_memory_padding, host_memory_padding), sized from the data.

DALI 2.4's `fn.decoders.image` docstring: with a padding > 0 the "mixed" decoder "preallocates one device
buffer of the requested size per thread" (device_memory_padding, default 16 MiB) and "two (because of
double-buffering) host-pinned buffers of the requested size per thread" (host_memory_padding, default 8 MiB);
a larger image makes nvJPEG reallocate (a cost, not an error). DALI's ResNet-50 examples pass 211025920 and
140544512 bytes, sized for ImageNet's largest photos: with the training, validation and 10-crop pipelines
alive at 16 threads that is 3 x 16 x 201 MiB = 9.4 GiB of GPU memory and 3 x 16 x 2 x 134 MiB = 12.6 GiB
of pinned host memory. Files written by `prepare --resize 256` (at most 256 x ~455 pixels) need a small part
of DALI's own defaults, so those are the floor, and a larger size is taken only where prepare's
summary.json says the listed images need it.

    padding = padding_from_lists(Path("lists"))        # summary.json of `prepare`, or DALI's defaults
    estimate = memory_estimate(padding, threads=16, pipelines=3)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
# DALI 2.4's defaults (fn.decoders.image: device_memory_padding=16777216, host_memory_padding=8388608).
DALI_DEVICE_PADDING = 16 * MIB
DALI_HOST_PADDING = 8 * MIB
# DALI's ResNet-50 ImageNet examples: "to be able to handle all images from full-sized ImageNet without
# additional reallocations". The toolkit used them until the selftest's review (issue 13).
FULL_SIZE_DEVICE_PADDING = 211025920
FULL_SIZE_HOST_PADDING = 140544512
# An upper bound of what nvJPEG holds per image while decoding: the DCT coefficients of a 4:4:4 JPEG,
# 3 components x 2 bytes (int16) per pixel (4:2:0 files, the usual photo, need half of it).
BYTES_PER_PIXEL = 6
# Training, validation and 10-crop pipelines are alive together in a run with --ten-crop.
RUN_PIPELINES = 3


@dataclass(frozen=True)
class DecoderPadding:
    """nvJPEG's per-thread buffers: `device` bytes of GPU memory, two `host` bytes buffers of pinned memory."""

    device: int = DALI_DEVICE_PADDING
    host: int = DALI_HOST_PADDING
    source: str = "DALI's defaults"


def padding_for(largest_pixels: int, source: str = "") -> DecoderPadding:
    """Buffers for images of up to `largest_pixels` pixels: BYTES_PER_PIXEL each, rounded up to whole MiB,
    never below DALI's defaults."""
    needed = math.ceil(max(largest_pixels, 0) * BYTES_PER_PIXEL / MIB) * MIB
    return DecoderPadding(max(needed, DALI_DEVICE_PADDING), max(needed, DALI_HOST_PADDING),
                          source or "DALI's defaults")


def largest_decoded_pixels(summary: dict) -> int | None:
    """An upper bound of the pixels of the largest listed file, from prepare's summary.json; None if it has
    no image sizes. With `--resize R` the listed files are the copies, whose shorter side is R: their
    longer side is at most R x (the longest side / the shortest shorter side) of the originals."""
    sizes = summary.get("image_size") or {}
    width, height, shorter = (sizes.get(key) or {} for key in ("width", "height", "shorter_side"))
    if not all(part.get("max") for part in (width, height)):
        return None
    resize = summary.get("resize")
    if resize and shorter.get("min"):
        return math.ceil(resize * resize * max(width["max"], height["max"]) / shorter["min"])
    return int(width["max"]) * int(height["max"])


def padding_from_lists(lists: Path) -> DecoderPadding:
    """The padding for the files listed in `lists` (prepare's --out): sized from its summary.json, or DALI's
    defaults where there is none (lists written by hand) or it cannot be read."""
    path = Path(lists) / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DecoderPadding()
    pixels = largest_decoded_pixels(summary) if isinstance(summary, dict) else None
    if pixels is None:
        return DecoderPadding()
    return padding_for(pixels, f"{path.name}: largest file ~{pixels / 1e6:.2f} Mpixel")


def memory_estimate(padding: DecoderPadding, threads: int, pipelines: int = RUN_PIPELINES) -> dict[str, int]:
    """What nvJPEG preallocates for `pipelines` GPU pipelines of `threads` threads each, in bytes."""
    return {"device_bytes": pipelines * threads * padding.device,
            "pinned_bytes": pipelines * threads * 2 * padding.host}
