"""`imagenet-tools prepare` on ImageFolder trees: labels, the header reader, bad files, odd names.

References are independent of the code under test: labels from sorted folder names, sizes and
colour modes from PIL, decodability from DALI's own CPU decoder.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from pipeline.filelist import read_class_table, read_file_list
from tools.prepare.header import read_header
from tools.prepare.report import unescape_name
from tools.prepare_imagenet import main

def small_rgb(width: int = 48, height: int = 36, seed: int = 0) -> Image.Image:
    """A small smooth RGB picture (smooth, so JPEG round trips stay close)."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 40 + 30 * seed)], -1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def write_bad_cases(folder: Path) -> dict[str, str]:
    """Every bad kind of file under a .JPEG name; returns name -> the word its rejection/repair reason holds."""
    folder.mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes(small_rgb())
    (folder / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    (folder / "empty.JPEG").write_bytes(b"")
    (folder / "text.JPEG").write_text("not an image\n")
    small_rgb().save(folder / "png.JPEG", format="PNG")
    small_rgb().convert("CMYK").save(folder / "cmyk.JPEG", "JPEG")
    small_rgb().convert("L").save(folder / "gray.JPEG", "JPEG")
    small_rgb(3, 2).save(folder / "tiny.JPEG", "JPEG")
    return {"truncated.JPEG": "truncated", "empty.JPEG": "empty", "text.JPEG": "not an image",
            "png.JPEG": "PNG", "cmyk.JPEG": "CMYK", "gray.JPEG": "grayscale", "tiny.JPEG": "too small"}


REPAIRABLE = {"png.JPEG", "cmyk.JPEG", "gray.JPEG"}


def run_prepare(*args) -> Result:
    """Run `prepare` in this process (one worker) with click's test runner."""
    result = CliRunner().invoke(main, [*map(str, args), "--workers", "1"])
    assert "Traceback" not in result.output
    return result


def read_report(path: Path) -> dict[str, str]:
    """rejected.tsv / ignored.tsv: path -> reason, after the header line (which says how names are escaped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# path<TAB>reason") and "\\xHH" in lines[0]
    return dict(line.split("\t") for line in lines[1:])


def read_rejected(out: Path) -> dict[str, str]:
    return read_report(out / "rejected.tsv")


def test_header_matches_pil(tmp_path: Path) -> None:
    cases = {"rgb": small_rgb(), "gray": small_rgb().convert("L"), "cmyk": small_rgb().convert("CMYK"),
             "wide": small_rgb(301, 17)}
    for name, image in cases.items():
        for progressive in (False, True):
            path = tmp_path / f"{name}{progressive}.JPEG"
            image.save(path, "JPEG", progressive=progressive)
            header, reference = read_header(path), Image.open(path)
            assert (header.format, header.width, header.height) == ("jpeg", *reference.size)
            assert header.components == len(reference.getbands())
            assert header.coding == ("progressive" if progressive else "baseline")
            assert header.problem == ""


def test_header_flags_every_truncation(tmp_path: Path) -> None:
    data = jpeg_bytes(small_rgb(), exif=b"Exif\x00\x00" + bytes(3000))
    path = tmp_path / "cut.JPEG"
    for cut in [2, 3, 5, 40, 400, 3100, len(data) // 2, len(data) - 2, len(data) - 1]:
        path.write_bytes(data[:cut])
        assert "truncated" in read_header(path).problem, cut
    path.write_bytes(data + bytes(5000))  # zero padding after the end-of-image marker is harmless
    assert read_header(path).problem == ""


def test_header_of_other_files(tmp_path: Path) -> None:
    write_bad_cases(tmp_path)
    assert read_header(tmp_path / "empty.JPEG").problem == "empty file"
    assert "not an image" in read_header(tmp_path / "text.JPEG").problem
    png = read_header(tmp_path / "png.JPEG")
    assert (png.format, png.width, png.height, png.problem) == ("png", 48, 36, "")


def test_imagefolder_labels_match_sorted_folders(image_tree: Path, tmp_path: Path) -> None:
    # A class present only in val still gets its place in sorted order.
    extra = image_tree / "val" / "n00000001"
    extra.mkdir()
    small_rgb().save(extra / "only_val.JPEG")
    out = tmp_path / "lists"
    result = run_prepare(image_tree, "--out", out)
    assert result.exit_code == 0, result.output
    classes = sorted(set(os.listdir(image_tree / "train")) | set(os.listdir(image_tree / "val")))
    for split in ("train", "val"):
        entries = read_file_list(out / f"{split}.txt", num_classes=len(classes))
        on_disk = sorted(p.relative_to(image_tree).as_posix() for p in (image_tree / split).rglob("*.JPEG"))
        assert sorted(rel for rel, _ in entries) == on_disk
        for rel, label in entries:
            assert label == classes.index(rel.split("/")[1])
    assert [cid for cid, _ in read_class_table(out / "classes.tsv")] == classes
    assert read_rejected(out) == {}


@pytest.mark.parametrize("on_bad", ["reject", "repair"])
def test_bad_files(tmp_path: Path, on_bad: str) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    expected = write_bad_cases(root / "train" / "n01")
    for i in range(2):
        small_rgb(seed=i).save(root / "train" / "n01" / f"good{i}.JPEG")
    result = run_prepare(root, "--out", out, "--on-bad", on_bad)
    assert result.exit_code == 0, result.output
    rejected = read_rejected(out)
    repaired = REPAIRABLE if on_bad == "repair" else set()
    assert set(rejected) == {f"train/n01/{name}" for name in expected if name not in repaired}
    for rel, reason in rejected.items():
        assert expected[rel.split("/")[-1]] in reason
    listed = dict(read_file_list(out / "train.txt"))
    assert len(listed) == 2 + len(repaired)
    reference = np.asarray(small_rgb(), dtype=np.float32)
    for rel in listed:
        path = root / rel
        assert path.is_file()
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            if rel.endswith(("png.JPEG", "cmyk.JPEG")):  # colour kept through the repair
                assert np.abs(np.asarray(image, dtype=np.float32) - reference).mean() < 6
    if on_bad == "repair":
        assert sorted(Path(rel).name for rel in listed if rel.startswith("..")) == sorted(REPAIRABLE)


def test_decode_check_finds_what_the_header_cannot(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    (root / "train" / "n01").mkdir(parents=True)
    data = bytearray(jpeg_bytes(small_rgb()))
    table = data.index(b"\xff\xc4")
    data[table + 5:table + 21] = b"\xff" * 16  # an impossible Huffman table: markers fine, pixels not
    (root / "train" / "n01" / "bad_huffman.JPEG").write_bytes(bytes(data))
    small_rgb().save(root / "train" / "n01" / "good.JPEG")
    assert run_prepare(root, "--out", out).exit_code == 0
    assert len(read_file_list(out / "train.txt")) == 2
    assert run_prepare(root, "--out", out, "--check", "decode").exit_code == 0
    assert read_file_list(out / "train.txt") == [("train/n01/good.JPEG", 0)]
    assert "does not decode" in read_rejected(out)["train/n01/bad_huffman.JPEG"]


def test_odd_names(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    names = ["it's a photo.JPEG", "naïve café 東京.JPEG", " leading space.JPEG"]
    for folder in ("n01 with space", "n02"):
        (root / "train" / folder).mkdir(parents=True)
        for name in names:
            small_rgb().save(root / "train" / folder / name)
    assert run_prepare(root, "--out", out).exit_code == 0
    entries = read_file_list(out / "train.txt")
    assert sorted(entries) == sorted((f"train/{f}/{n}", i) for i, f in enumerate(("n01 with space", "n02"))
                                     for n in names)


def test_every_listed_file_decodes_in_dali(tmp_path: Path) -> None:
    """The rule: nothing prepare lists may stop a DALI run (DALI cannot skip a sample)."""
    dali = pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    from nvidia.dali import fn, types

    root, out = tmp_path / "root", tmp_path / "out"
    write_bad_cases(root / "train" / "n01 odd")
    small_rgb().save(root / "train" / "n01 odd" / "it's é.JPEG")
    assert run_prepare(root, "--out", out).exit_code == 0
    entries = read_file_list(out / "train.txt")

    @dali.pipeline_def(batch_size=len(entries), num_threads=1, device_id=None)
    def decode_all():
        jpegs, _ = fn.readers.file(file_root=str(root), file_list=str(out / "train.txt"))
        return fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)

    pipe = decode_all()
    pipe.build()
    (images,) = pipe.run()
    assert [np.asarray(images[i]).shape for i in range(len(entries))] == [(36, 48, 3)] * len(entries)


def test_process_pool_gives_the_same_lists(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(70):  # more than run_parallel's in-process threshold
        folder = root / "train" / f"n{i % 3:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.JPEG").write_bytes(jpeg_bytes(small_rgb(16, 12)))
    (root / "train" / "n00" / "broken.JPEG").write_bytes(b"\xff\xd8\xff")
    lists = {}
    for workers in ("1", "2"):
        result = CliRunner().invoke(main, [str(root), "--out", str(tmp_path / workers), "--workers", workers])
        assert result.exit_code == 0, result.output
        lists[workers] = (tmp_path / workers / "train.txt").read_text(), read_rejected(tmp_path / workers)
    assert lists["1"] == lists["2"]
    assert len(lists["1"][0].splitlines()) == 70


def test_enormous_unreadable_and_loose_files(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    folder = root / "train" / "n01"
    folder.mkdir(parents=True)
    small_rgb().save(folder / "good.JPEG")
    data = bytearray(jpeg_bytes(small_rgb()))
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = (30000).to_bytes(2, "big") * 2  # the frame header claims 30000 x 30000
    (folder / "enormous.JPEG").write_bytes(bytes(data))
    (folder / "dangling.JPEG").symlink_to(tmp_path / "gone.JPEG")
    small_rgb().save(root / "train" / "loose.JPEG")
    assert read_header(folder / "enormous.JPEG").width == 30000
    assert run_prepare(root, "--out", out).exit_code == 0
    rejected = read_rejected(out)
    assert rejected["train/n01/enormous.JPEG"].startswith("too large (30000x30000")
    assert rejected["train/n01/dangling.JPEG"].startswith("unreadable")
    assert rejected["train/loose.JPEG"] == "not inside a class folder"
    assert read_file_list(out / "train.txt") == [("train/n01/good.JPEG", 0)]
    assert run_prepare(root, "--out", out, "--max-pixels", str(30000 ** 2)).exit_code == 0
    assert "train/n01/enormous.JPEG" in dict(read_file_list(out / "train.txt"))


def test_name_that_is_not_utf8_is_rejected_not_fatal(tmp_path: Path) -> None:
    """rejected.tsv writes such a name escaped (as its header line says), so it can be turned back into the name."""
    root, out = tmp_path / "root", tmp_path / "out"
    folder = root / "train" / "n01"
    folder.mkdir(parents=True)
    small_rgb().save(folder / "good.JPEG")
    names = [b"latin1 caf\xe9.JPEG", b"byte \xff and a \\xff.JPEG", b"tab\there.JPEG", b"line\nbreak.JPEG"]
    for name in names:
        with open(os.fsencode(folder) + b"/" + name, "wb") as handle:
            handle.write(jpeg_bytes(small_rgb()))
    assert run_prepare(root, "--out", out).exit_code == 0, "a bad name is a rejected file, not a failed run"
    assert read_file_list(out / "train.txt") == [("train/n01/good.JPEG", 0), ("train/n01/tab\there.JPEG", 0)]
    rejected = read_rejected(out)
    assert rejected["train/n01/latin1 caf\\xe9.JPEG"].startswith("file name is not valid UTF-8")
    assert rejected["train/n01/byte \\xff and a \\\\xff.JPEG"].startswith("file name is not valid UTF-8")
    assert rejected["train/n01/line\\nbreak.JPEG"].startswith("line break in the file name")
    escaped = [row.split("\t")[0] for row in (out / "rejected.tsv").read_text("utf-8").splitlines()[1:]]
    found_again = sorted(os.fsencode(root) + b"/" + unescape_name(text) for text in escaped)
    assert found_again == sorted(os.fsencode(folder) + b"/" + name for name in names if b"\t" not in name)
    for path in found_again:
        assert os.path.isfile(path)
