"""nvJPEG's buffer sizes (pipeline/decoder_memory.py) against numbers worked out by hand, and model.train
passing them to its DataConfig."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipeline.config import DataConfig
from pipeline.decoder_memory import (DecoderPadding, largest_decoded_pixels, memory_estimate, padding_for,
                                     padding_from_lists)

MIB = 1024 * 1024


def test_defaults_are_dalis_own():
    # DALI 2.4, fn.decoders.image: device_memory_padding=16777216, host_memory_padding=8388608.
    assert (DataConfig(root=".").device_memory_padding, DataConfig(root=".").host_memory_padding) == (16777216, 8388608)
    assert (DecoderPadding().device, DecoderPadding().host) == (16777216, 8388608)


def test_padding_grows_only_for_images_larger_than_the_defaults_cover():
    # 500x375 (ImageNet's usual photo) and a 256 copy: 1.1 MB and 0.4 MB at 6 bytes a pixel -> the defaults.
    for pixels in (500 * 375, 256 * 455, 0):
        assert (padding_for(pixels).device, padding_for(pixels).host) == (16 * MIB, 8 * MIB)
    # 2000x1000 x 6 bytes = 12,000,000 bytes -> 12 MiB (11.44 rounded up): more than the host default only.
    assert (padding_for(2000 * 1000).device, padding_for(2000 * 1000).host) == (16 * MIB, 12 * MIB)
    # 4000x3000 x 6 = 72,000,000 bytes = 68.66 MiB -> 69 MiB both.
    assert (padding_for(4000 * 3000).device, padding_for(4000 * 3000).host) == (69 * MIB, 69 * MIB)


def test_estimate_reproduces_the_issues_numbers():
    """Issue 13: 201 MiB device + 2 x 134 MiB pinned per thread, 3 pipelines x 16 threads: ~9.4 and ~12.6 GiB."""
    estimate = memory_estimate(DecoderPadding(211025920, 140544512), threads=16, pipelines=3)
    assert estimate == {"device_bytes": 48 * 211025920, "pinned_bytes": 96 * 140544512}
    assert round(estimate["device_bytes"] / 2**30, 1) == 9.4 and round(estimate["pinned_bytes"] / 2**30, 1) == 12.6
    assert memory_estimate(DecoderPadding(), 16) == {"device_bytes": 768 * MIB, "pinned_bytes": 768 * MIB}


def summary(width_max: int, height_max: int, shorter_min: int, resize: int | None = None) -> dict:
    sizes = {"width": {"min": 10, "max": width_max}, "height": {"min": 10, "max": height_max},
             "shorter_side": {"min": shorter_min, "max": 400}}
    return {"resize": resize, "image_size": sizes}


def test_largest_file_from_prepares_summary():
    assert largest_decoded_pixels(summary(4000, 3000, 300)) == 12_000_000
    # Resized to 256: the longest side (4000) over the shortest shorter side (300), at 256: 256 x 3413.3.
    assert largest_decoded_pixels(summary(4000, 3000, 300, resize=256)) == 873_814  # ceil(256 * 256 * 4000 / 300)
    assert largest_decoded_pixels({"image_size": {}}) is None and largest_decoded_pixels({}) is None


def test_padding_from_lists(tmp_path):
    assert padding_from_lists(tmp_path) == DecoderPadding()  # no summary.json: DALI's defaults
    (tmp_path / "summary.json").write_text("{not json")
    assert padding_from_lists(tmp_path) == DecoderPadding()
    (tmp_path / "summary.json").write_text(json.dumps(summary(4000, 3000, 300)))
    padding = padding_from_lists(tmp_path)
    assert (padding.device, padding.host) == (69 * MIB, 69 * MIB) and "summary.json" in padding.source


def test_model_train_sizes_the_buffers_from_the_lists(tmp_path, monkeypatch):
    import model.train as train

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "summary.json").write_text(json.dumps(summary(4000, 3000, 300)))
    seen = {}

    def capture(data, *configs):
        seen["data"] = data
        raise SystemExit(0)

    monkeypatch.setattr(train, "open_session", capture)
    result = CliRunner().invoke(train.main, ["--root", str(tmp_path), "--lists", str(lists)])
    assert result.exit_code == 0, result.output
    assert (seen["data"].device_memory_padding, seen["data"].host_memory_padding) == (69 * MIB, 69 * MIB)


@pytest.mark.parametrize("pixels", [-5, 1])
def test_tiny_or_nonsense_sizes_keep_the_defaults(pixels):
    assert padding_for(pixels) == DecoderPadding()
