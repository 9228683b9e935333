"""Images that are not what they look like: strips too elongated to train on, links that would list a file twice,
class tars where class folders should be; and the list parser's word on a tab before the label."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.filelist import read_file_list
from tests.test_tools_prepare_check import jpeg_bytes, read_rejected, read_report, run_prepare, small_rgb


def test_extreme_aspect_ratios_are_rejected_with_the_reason(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    folder = root / "train" / "n01"
    folder.mkdir(parents=True)
    sizes = {"strip.JPEG": (30000, 20), "tall.JPEG": (12, 600), "ratio20.JPEG": (400, 20), "ratio10.JPEG": (500, 50),
             "photo.JPEG": (64, 48)}
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 120, 30)).save(folder / name, "JPEG")
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    listed = sorted(rel.split("/")[-1] for rel, _ in read_file_list(out / "train.txt"))
    assert listed == ["photo.JPEG", "ratio10.JPEG", "ratio20.JPEG"]  # 20:1 is still kept by default
    rejected = read_rejected(out)
    assert rejected["train/n01/strip.JPEG"] == "too elongated (30000x20, 1500.0:1; --max-aspect 20)"
    assert rejected["train/n01/tall.JPEG"] == "too elongated (12x600, 50.0:1; --max-aspect 20)"
    assert run_prepare(root, "--out", out, "--max-aspect", "60").exit_code == 0
    assert len(read_file_list(out / "train.txt")) == 4
    assert run_prepare(root, "--out", out, "--max-aspect", "5").exit_code == 0
    assert "train/n01/ratio10.JPEG" in read_rejected(out)


def test_each_real_file_is_listed_once(tmp_path: Path) -> None:
    root, out, elsewhere = tmp_path / "root", tmp_path / "out", tmp_path / "elsewhere"
    for folder in ("train/n01", "train/n02", "val/n01", "val/n02"):
        (root / folder).mkdir(parents=True)
    elsewhere.mkdir()
    for seed, rel in enumerate(["train/n01/a.JPEG", "train/n02/x.JPEG", "val/n01/v.JPEG", "val/n02/z.JPEG"]):
        small_rgb(seed=seed).save(root / rel)
    small_rgb(seed=9).save(elsewhere / "far.JPEG")
    (root / "train" / "n01" / "0link.JPEG").symlink_to("a.JPEG")  # before the real file in scan order
    (root / "train" / "n01" / "b_link.JPEG").symlink_to(root / "train" / "n01" / "a.JPEG")
    (root / "val" / "n02" / "y.JPEG").symlink_to("../../train/n02/x.JPEG")  # a training image in val
    (root / "train" / "n02" / "far1.JPEG").symlink_to(elsewhere / "far.JPEG")  # outside ROOT: listed once
    (root / "train" / "n02" / "far2.JPEG").symlink_to(elsewhere / "far.JPEG")
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(rel for rel, _ in read_file_list(out / "train.txt")) == [
        "train/n01/a.JPEG", "train/n02/far1.JPEG", "train/n02/x.JPEG"]
    assert sorted(rel for rel, _ in read_file_list(out / "val.txt")) == ["val/n01/v.JPEG", "val/n02/z.JPEG"]
    ignored = read_report(out / "ignored.tsv")
    assert ignored == {
        "train/n01/0link.JPEG": "duplicate (a link to the same file as train/n01/a.JPEG, which is listed)",
        "train/n01/b_link.JPEG": "duplicate (a link to the same file as train/n01/a.JPEG, which is listed)",
        "train/n02/far2.JPEG": "duplicate (a link to the same file as train/n02/far1.JPEG, which is listed)",
        "val/n02/y.JPEG": "duplicate (a link to the same file as train/n02/x.JPEG, which is listed)"}
    assert "files under ROOT: 9 = 5 listed + 0 repaired and listed + 0 rejected + 4 ignored" in result.output
