"""prepare on a folder of webdataset shards (timm/imagenet-1k-wds naming): lists, index files, classes, every
member accounted for, truncated tars, samples without image or label, corrupt images, multi-digit labels."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.shard_data import jpeg, read_list, sample, wnid, write_shards, write_tar
from tools.prepare_imagenet import main as prepare_main
from tests.test_tools_prepare_check import read_report


def run_prepare(root: Path, out: Path, *args: str):
    result = CliRunner().invoke(prepare_main, [str(root), "--out", str(out), "--workers", "1", *args])
    return result


def read_tsv(path: Path) -> dict[str, str]:
    return read_report(path)


def test_lists_classes_and_index_files(tmp_path: Path) -> None:
    expected = write_shards(tmp_path / "wds")
    (tmp_path / "wds" / "README.md").write_text("hub card")
    write_tar(tmp_path / "wds" / "imagenet1k-test-00.tar", [sample("t1", 0, 1)])
    result = run_prepare(tmp_path / "wds", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "layout webdataset" in result.output and "webdataset shards: 3 read" in result.output
    assert read_list(tmp_path / "out" / "train.txt") == expected["train"]
    assert read_list(tmp_path / "out" / "val.txt") == expected["val"]
    classes = (tmp_path / "out" / "classes.tsv").read_text().splitlines()
    assert classes == [f"{i}\t{wnid(i)}\tclass {i}" for i in range(3)]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["splits"]["train"]["images"] == 12 and summary["splits"]["val"]["images"] == 6
    ignored = read_tsv(tmp_path / "out" / "ignored.tsv")
    assert ignored == {"README.md": "not a shard (expected <name>-train-NNNN.tar or <name>-validation-NN.tar)",
                       "imagenet1k-test-00.tar": "test split (no labels)"}
    # 18 samples x 3 members, all listed, + 2 files ignored
    assert summary["files"] == {"found": 56, "listed": 54, "repaired": 0, "rejected": 0, "ignored": 2}
    # DALI's v1.2 index: one line per sample, the .jpg and .cls members at their offsets in the tar
    tar_path = tmp_path / "wds" / "imagenet1k-train-0001.tar"
    lines = (tmp_path / "out" / "index" / "imagenet1k-train-0001.tar.idx").read_text().splitlines()
    assert lines[0] == "v1.2 6"
    with tarfile.open(tar_path) as tar, open(tar_path, "rb") as raw:
        for line, (path, label) in zip(lines[1:], expected["train"][6:]):
            fields = line.split(" ")
            assert fields[0::4] == ["jpg", "cls"] and fields[3] == path.split(":")[1] + ".jpg"
            raw.seek(int(fields[1]))
            assert raw.read(int(fields[2])) == tar.extractfile(fields[3]).read()
            raw.seek(int(fields[5]))
            assert raw.read(int(fields[6])) == str(label).encode()


def test_faults_are_named(tmp_path: Path) -> None:
    root = tmp_path / "wds"
    good = [sample(f"n00000001_{i}", 1, i) for i in range(3)]
    no_cls = ("n00000001_nocls", {"jpg": jpeg(5), "json": b"{}"})
    no_jpg = ("n00000001_nojpg", {"cls": b"1"})
    corrupt = ("n00000001_bad", {"jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "cls": b"1"})
    write_tar(root / "imagenet1k-train-0000.tar", [good[0], no_cls, no_jpg, corrupt, good[1]])
    # a half-finished download: the second tar cut inside its third sample's image
    write_tar(tmp_path / "whole.tar", [sample(f"n00000000_{i}", 0, i) for i in range(4)])
    data = (tmp_path / "whole.tar").read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tar:
        third = [m for m in tar.getmembers() if m.name == "n00000000_2.jpg"][0]
    (root / "imagenet1k-train-0001.tar").write_bytes(data[: third.offset_data + 100])
    write_tar(root / "imagenet1k-validation-00.tar", [good[2]])
    result = run_prepare(root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    rejected = read_tsv(tmp_path / "out" / "rejected.tsv")
    assert rejected["imagenet1k-train-0000.tar:n00000001_nocls"] == "no label (.cls) in this sample"
    assert rejected["imagenet1k-train-0000.tar:n00000001_nojpg"] == "no image (.jpg) in this sample"
    assert rejected["imagenet1k-train-0000.tar:n00000001_bad"] == "truncated JPEG (file ends inside a segment)"
    assert rejected["imagenet1k-train-0001.tar:n00000000_2"] == "cut off where the shard is truncated"
    assert "2 samples readable before the cut" in rejected["imagenet1k-train-0001.tar"]
    assert "truncated shard imagenet1k-train-0001.tar: 2 samples" in result.output
    listed = read_list(tmp_path / "out" / "train.txt")
    assert listed == [("imagenet1k-train-0000.tar:n00000001_0", 1), ("imagenet1k-train-0000.tar:n00000001_1", 1),
                      ("imagenet1k-train-0001.tar:n00000000_0", 0), ("imagenet1k-train-0001.tar:n00000000_1", 0)]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    files = summary["files"]
    # members read: tar 0 has 3+2+1+2+3 = 11, tar 1 has 3+3 complete and the cut .cls... + .jpg, tar val 3
    assert files["found"] == files["listed"] + files["rejected"] + files["ignored"]
    assert files["listed"] == 4 * 3 + 3


def test_tar_cut_at_a_member_boundary(tmp_path: Path) -> None:
    root = tmp_path / "wds"
    write_tar(tmp_path / "whole.tar", [sample(f"n00000000_{i}", 0, i) for i in range(3)])
    with tarfile.open(tmp_path / "whole.tar") as tar:
        second = [m for m in tar.getmembers() if m.name == "n00000000_1.jpg"][0]
    (root).mkdir()
    (root / "imagenet1k-train-0000.tar").write_bytes((tmp_path / "whole.tar").read_bytes()[: second.offset])
    result = run_prepare(root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "truncated shard imagenet1k-train-0000.tar: 1 samples" in result.output
    assert read_list(tmp_path / "out" / "train.txt") == [("imagenet1k-train-0000.tar:n00000000_0", 0)]


def test_three_digit_labels(tmp_path: Path) -> None:
    expected = write_shards(tmp_path / "wds", train_tars=1, per_tar=4, labels=4, label_offset=997)
    result = run_prepare(tmp_path / "wds", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert read_list(tmp_path / "out" / "train.txt") == expected["train"]
    assert [label for _, label in expected["train"]] == [997, 998, 999, 1000]
    classes = (tmp_path / "out" / "classes.tsv").read_text().splitlines()
    assert len(classes) == 1001 and classes[999] == f"999\t{wnid(999)}\tclass 999"
    assert classes[5] == "5\tlabel5\tlabel5"  # a label no sample has keeps its place


def test_decode_check_rejects_what_the_header_cannot(tmp_path: Path) -> None:
    root = tmp_path / "wds"
    data = bytearray(jpeg(3))
    table = data.index(b"\xff\xc4")
    data[table + 5:table + 21] = b"\xff" * 16  # an impossible Huffman table: markers fine, pixels not
    write_tar(root / "imagenet1k-train-0000.tar", [sample("n00000000_0", 0, 0),
                                                   ("n00000000_1", {"jpg": bytes(data), "cls": b"0"})])
    assert read_list_after(root, tmp_path / "header") == 2
    assert read_list_after(root, tmp_path / "decode", "--check", "decode") == 1
    rejected = read_tsv(tmp_path / "decode" / "rejected.tsv")
    assert rejected["imagenet1k-train-0000.tar:n00000000_1"].startswith("does not decode")


def read_list_after(root: Path, out: Path, *args: str) -> int:
    result = run_prepare(root, out, *args)
    assert result.exit_code == 0, result.output
    return len(read_list(out / "train.txt"))


def test_labels_dali_cannot_read_and_odd_member_names_are_not_listed(tmp_path):
    """A .cls with leading whitespace or longer than 8 bytes (DALI's graph would read another label or fail), a
    member inside a folder ('./key.jpg') and a key that comes twice: each named, none listed."""
    import io as _io
    import tarfile as _tarfile

    from PIL import Image as _Image

    from pipeline.shards import parse_label

    assert parse_label(b"123") == 123 and parse_label(b"7\n") == 7 and parse_label(b"0000012") == 12
    for bad in (b" 7", b"+7", b"1 2", b"000000012", b"", b"7x"):
        with pytest.raises(ValueError):
            parse_label(bad)
    buffer = _io.BytesIO()
    _Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    folder = tmp_path / "wds"
    folder.mkdir()
    members = [("good.jpg", jpeg), ("good.cls", b"1"), ("space.jpg", jpeg), ("space.cls", b" 1"),
               ("./dotted.jpg", jpeg), ("./dotted.cls", b"0"), ("other.jpg", jpeg), ("other.cls", b"0"),
               ("good.jpg", jpeg), ("good.cls", b"0")]
    with _tarfile.open(folder / "imagenet1k-train-0000.tar", "w") as tar:
        for name, data in members:
            info = _tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, _io.BytesIO(data))
    result = CliRunner().invoke(prepare_main, [str(folder), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    listed = (tmp_path / "out" / "train.txt").read_text().split()
    assert listed == ["imagenet1k-train-0000.tar:good", "1", "imagenet1k-train-0000.tar:other", "0"]
    reasons = " ".join(read_tsv(tmp_path / "out" / "rejected.tsv").values()) + " ".join(
        read_tsv(tmp_path / "out" / "ignored.tsv").values())
    assert "not ASCII digits followed only by whitespace" in reasons
    assert "a folder in the member name" in reasons and "duplicate key" in reasons


def encoded(mode: str, fmt: str) -> bytes:
    """A 40x32 image in PIL `mode`, saved as `fmt` (bytes)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def test_images_a_tree_would_re_encode_are_listed_as_they_are_when_dali_decodes_them(tmp_path: Path) -> None:
    """Grayscale and CMYK JPEGs and PNG data (ImageNet has all three; ~2 % of it is grayscale) are listed and
    named in summary.json; GIF data, which DALI does not decode, is rejected; --on-bad reject rejects them all."""
    import torch

    from pipeline.config import DataConfig
    from pipeline.loader import make_loader

    root = tmp_path / "wds"
    odd = {"gray": encoded("L", "JPEG"), "cmyk": encoded("CMYK", "JPEG"), "png": encoded("RGB", "PNG"),
           "tiff": encoded("RGB", "TIFF"), "webp": encoded("RGB", "WEBP"), "gif": encoded("P", "GIF")}
    rows = [(f"n00000001_{name}", {"jpg": data, "cls": b"1"}) for name, data in odd.items()]
    write_tar(root / "imagenet1k-train-0000.tar", [sample("n00000000_0", 0, 0)])
    write_tar(root / "imagenet1k-validation-00.tar", rows)
    result = run_prepare(root, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert ("listed as they are: 5 samples a file tree would re-encode (grayscale JPEG 1; CMYK JPEG 1; PNG data, "
            "not JPEG 1; TIFF data, not JPEG 1; WEBP data, not JPEG 1); DALI decodes them") in result.output
    assert [key for key, _ in read_list(tmp_path / "out" / "val.txt")] == [
        f"imagenet1k-validation-00.tar:n00000001_{name}" for name in ("gray", "cmyk", "png", "tiff", "webp")]
    rejected = read_tsv(tmp_path / "out" / "rejected.tsv")
    assert rejected == {"imagenet1k-validation-00.tar:n00000001_gif":
                        "GIF data, not JPEG (DALI does not decode it, and shards are read as they are)"}
    as_is = json.loads((tmp_path / "out" / "summary.json").read_text())["shards"]["listed_as_is"]
    assert as_is["count"] == 5 and as_is["samples"][0] == {"sample": "imagenet1k-validation-00.tar:n00000001_gray",
                                                           "reason": "grayscale JPEG"}
    # DALI's CPU graph decodes every listed sample to 3 channels
    cfg = DataConfig(root=root, train_list=tmp_path / "out" / "train.txt", val_list=tmp_path / "out" / "val.txt",
                     batch_size=5, device="cpu", device_id=None, num_threads=1)
    images, labels = next(iter(make_loader(cfg, "val")))
    assert images.shape == (5, 3, 224, 224) and torch.isfinite(images).all() and labels.tolist() == [1] * 5

    result = run_prepare(root, tmp_path / "strict", "--on-bad", "reject")
    assert result.exit_code == 0, result.output
    rejected = read_tsv(tmp_path / "strict" / "rejected.tsv")
    assert rejected["imagenet1k-validation-00.tar:n00000001_gray"] == "grayscale JPEG (--on-bad reject)"
    strict_val = tmp_path / "strict" / "val.txt"
    assert len(rejected) == 6 and (not strict_val.exists() or not strict_val.read_text())
