"""`prepare --resize 256 --resized-root DIR`: geometry, lists, resuming, a full disk."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.filelist import read_file_list
from tests.test_tools_prepare_check import jpeg_bytes, read_rejected, run_prepare, small_rgb, write_bad_cases
from tools.prepare import reencode
from tools.prepare.reencode import PART_SUFFIX


def expected_size(width: int, height: int, shorter: int = 256) -> tuple[int, int]:
    """Shorter side -> `shorter`, the other side scaled by the same factor, rounded."""
    scale = shorter / min(width, height)
    return (shorter, round(height * scale)) if width <= height else (round(width * scale), shorter)


def test_resize_geometry_and_lists(image_tree: Path, tmp_path: Path) -> None:
    out, resized = tmp_path / "out", tmp_path / "r256"
    (image_tree / "train" / "n01440764" / "small_wide.JPEG").write_bytes(b"")  # rejected, not resized
    small_rgb(300, 40).save(image_tree / "train" / "n01440764" / "wide.JPEG")  # upscaled: 40 -> 256
    result = run_prepare(image_tree, "--out", out, "--resize", "256", "--resized-root", resized, "--quality", "85")
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        original = read_file_list(out / f"{split}.txt")
        assert original, split
        for rel, _ in original:
            with Image.open(image_tree / rel) as source, Image.open(resized / rel) as copy:
                assert copy.size == expected_size(*source.size)
                assert min(copy.size) == 256
                assert (copy.format, copy.mode) == ("JPEG", "RGB")
    assert "train/n01440764/small_wide.JPEG" in read_rejected(out)
    assert not (resized / "train" / "n01440764" / "small_wide.JPEG").exists()
    assert not list(resized.rglob("*" + PART_SUFFIX))


def test_resize_repairs_bad_files_in_the_resized_tree(tmp_path: Path) -> None:
    root, out, resized = tmp_path / "root", tmp_path / "out", tmp_path / "r"
    write_bad_cases(root / "train" / "n01")
    result = run_prepare(root, "--out", out, "--resized-root", resized)  # --resize defaults to 256
    assert result.exit_code == 0, result.output
    listed = sorted(rel for rel, _ in read_file_list(out / "train.txt"))
    assert listed == ["train/n01/cmyk.JPEG", "train/n01/gray.JPEG", "train/n01/png.JPEG"]
    for rel in listed:
        with Image.open(resized / rel) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (341, 256))


def test_resume_skips_complete_files_and_redoes_the_rest(image_tree: Path, tmp_path: Path) -> None:
    out, resized = tmp_path / "out", tmp_path / "r"
    args = (image_tree, "--out", out, "--resized-root", resized)
    assert run_prepare(*args).exit_code == 0
    files = sorted(resized.rglob("*.JPEG"))
    assert len(files) == 27
    # An interrupted run: one file never written, one left half-written under its temporary name.
    os.remove(files[0])
    os.remove(files[1])
    Path(str(files[1]) + PART_SUFFIX).write_bytes(b"\xff\xd8half")
    os.utime(files[2], (1, 1))  # a kept file keeps its time stamp
    assert run_prepare(*args).exit_code == 0
    assert sorted(resized.rglob("*.JPEG")) == files
    assert os.stat(files[2]).st_mtime == 1
    for path in files[:2]:
        with Image.open(path) as image:
            image.load()
            assert min(image.size) == 256
    assert not list(resized.rglob("*" + PART_SUFFIX))


def test_resize_settings_cannot_be_mixed(image_tree: Path, tmp_path: Path) -> None:
    resized = tmp_path / "r"
    assert run_prepare(image_tree, "--out", tmp_path / "o", "--resized-root", resized).exit_code == 0
    result = run_prepare(image_tree, "--out", tmp_path / "o", "--resized-root", resized, "--quality", "70")
    assert result.exit_code == 1
    assert "use a new --resized-root" in result.output.strip().splitlines()[-1]
    inside = run_prepare(image_tree, "--out", tmp_path / "o", "--resized-root", image_tree / "r")
    assert inside.exit_code == 1 and "outside ROOT" in inside.output


def test_disk_full_while_resizing(image_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up in the middle of writing a copy: nothing under a final name is incomplete."""
    out, resized = tmp_path / "out", tmp_path / "r"
    opened = []

    class FillsUp:
        """A file that takes half of what it is given, then reports a full disk (errno 28)."""

        def __init__(self, path, mode):
            self.handle = open(path, mode)

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def open_until_full(path, mode="r", *args, **kwargs):
        opened.append(path)
        return FillsUp(path, mode) if len(opened) > 5 else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(reencode, "open", open_until_full, raising=False)
    result = run_prepare(image_tree, "--out", out, "--resized-root", resized)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: disk full while writing") and "run the same command again" in last
    written = sorted(resized.rglob("*.JPEG"))
    assert len(written) == 5  # the finished ones, complete; nothing half-written under a final name
    for path in written:
        assert path.read_bytes().endswith(b"\xff\xd9")
        with Image.open(path) as image:
            image.load()
    assert not list(resized.rglob("*" + PART_SUFFIX))
    assert not (out / "train.txt").exists()
    monkeypatch.undo()
    result = run_prepare(image_tree, "--out", out, "--resized-root", resized)
    assert result.exit_code == 0
    assert "resized to 256: 22 written, 5 kept from an earlier run (" in result.output
    assert len(list(resized.rglob("*.JPEG"))) == 27


def _replace_source(path: Path, seed: int) -> None:
    """A new picture under the same name and of the same byte size as before (only its content and mtime differ)."""
    size = path.stat().st_size
    data = jpeg_bytes(small_rgb(seed=seed))
    path.write_bytes(data + bytes(max(0, size - len(data))) if len(data) <= size else data)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))


def test_rerun_redoes_a_truncated_copy_and_one_whose_source_changed(image_tree: Path, tmp_path: Path) -> None:
    out, resized = tmp_path / "out", tmp_path / "r"
    args = (image_tree, "--out", out, "--resized-root", resized)
    assert run_prepare(*args).exit_code == 0
    cut, stale = "train/n01440764/n01440764_0.JPEG", "train/n01440764/n01440764_1.JPEG"
    for rel in (cut, stale):
        assert (image_tree / rel).is_file()
    whole = (resized / cut).read_bytes()
    (resized / cut).write_bytes(whole[: len(whole) // 2])  # what a full disk left under the final name
    _replace_source(image_tree / stale, seed=3)
    result = run_prepare(*args)
    assert result.exit_code == 0, result.output
    assert ("resized to 256: 0 written, 25 kept from an earlier run, 2 redone (incomplete or corrupt copy 1; "
            "source changed 1)") in result.output
    for rel in (cut, stale):
        with Image.open(image_tree / rel) as source, Image.open(resized / rel) as copy:
            reference = np.asarray(source.convert("RGB").resize(copy.size), np.float32)
            assert np.abs(np.asarray(copy, np.float32) - reference).mean() < 4
    assert "kept from an earlier run" in run_prepare(*args).output  # and now they are kept


def test_repaired_copy_is_redone_when_its_source_is_replaced(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    (root / "train" / "n01").mkdir(parents=True)
    gray = root / "train" / "n01" / "gray.JPEG"
    small_rgb(seed=0).convert("L").save(gray, "JPEG", quality=95)
    assert run_prepare(root, "--out", out).exit_code == 0
    small_rgb(seed=4).convert("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(gray, "JPEG", quality=95)
    os.utime(gray, ns=(gray.stat().st_atime_ns, gray.stat().st_mtime_ns + 1_000_000_000))
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "repaired copies: 0 written, 0 kept from an earlier run, 1 redone (source changed 1)" in result.output
    (rel, _), = read_file_list(out / "train.txt")
    with Image.open(gray) as source, Image.open(root / rel) as copy:
        np.testing.assert_allclose(np.asarray(copy.convert("L"), np.float32), np.asarray(source, np.float32),
                                   atol=6)


def test_exif_orientation_is_applied_like_dali(tmp_path: Path) -> None:
    """A photo stored sideways with EXIF orientation 6: DALI shows it upright, so must the resized copy."""
    from PIL import ImageOps

    root, out, resized = tmp_path / "root", tmp_path / "out", tmp_path / "r"
    (root / "train" / "n01").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    source = root / "train" / "n01" / "sideways.JPEG"
    small_rgb(80, 40).save(source, "JPEG", exif=exif, quality=95)
    assert run_prepare(root, "--out", out, "--resized-root", resized).exit_code == 0
    with Image.open(source) as original:
        reference = np.asarray(ImageOps.exif_transpose(original).convert("RGB").resize((256, 512)), np.float32)
    with Image.open(resized / "train" / "n01" / "sideways.JPEG") as copy:
        assert copy.size == (256, 512)
        assert np.abs(np.asarray(copy, np.float32) - reference).mean() < 4

    dali = pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    from nvidia.dali import fn, types

    @dali.pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        jpegs, _ = fn.readers.file(files=[str(source)])
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipe = decode()
    pipe.build()
    assert np.asarray(pipe.run()[0][0]).shape == (80, 40, 3)  # upright: height 80, width 40


def test_unchanged_jpeg_is_copied_with_only_its_stamp_added(tmp_path: Path) -> None:
    """Shorter side already 256: the copy is the source's bytes plus one comment segment, same pixels in DALI."""
    root, resized = tmp_path / "root", tmp_path / "r"
    (root / "train" / "n01").mkdir(parents=True)
    source = root / "train" / "n01" / "a.JPEG"
    small_rgb(300, 256).save(source, "JPEG", quality=90)
    assert run_prepare(root, "--out", tmp_path / "out", "--resized-root", resized).exit_code == 0
    original, copy = source.read_bytes(), (resized / "train" / "n01" / "a.JPEG").read_bytes()
    segment = 2 + int.from_bytes(copy[4:6], "big")
    assert copy[2:4] == b"\xff\xfe" and copy[:2] + copy[2 + segment:] == original
    assert copy[6:2 + segment].startswith(reencode.STAMP_PREFIX)
    dali = pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    from nvidia.dali import fn, types

    @dali.pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        jpegs, _ = fn.readers.file(files=[str(resized / "train" / "n01" / "a.JPEG")])
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipe = decode()
    pipe.build()
    with Image.open(source) as image:
        np.testing.assert_array_equal(np.asarray(pipe.run()[0][0]), np.asarray(image.convert("RGB")))
