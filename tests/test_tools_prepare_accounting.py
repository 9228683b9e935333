"""Every file under ROOT ends in exactly one place: listed, repaired, rejected or ignored (ignored.tsv).

The files are counted by walking the tree here (os.walk), independently of prepare's own walk.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from pipeline.filelist import read_file_list
from tests.prepare_trees import (CLS_LOC, SORTED_WNIDS, write_devkit_2012, write_devkit_2015, write_images,
                                 write_kaggle, write_train, write_val)
from tests.test_tools_prepare_check import read_report, run_prepare, small_rgb


def walked_files(root: Path) -> set[str]:
    """Every file under root (links to files and dangling links included), relative to root."""
    return {(Path(folder) / name).relative_to(root).as_posix()
            for folder, _, names in os.walk(root) for name in names}


def read_tsv(path: Path) -> dict[str, str]:
    return read_report(path)


def messy_imagefolder(tmp_path: Path) -> Path:
    root = tmp_path / "messy"
    first = root / "train" / SORTED_WNIDS[0]
    write_images(first, ["a.JPEG", "b.JPEG"])
    write_images(first / "sub", ["deep.JPEG"])
    small_rgb().convert("L").save(first / "gray.JPEG")  # repaired
    (first / "text.JPEG").write_text("not a picture")  # rejected
    (first / "README.txt").write_text("notes")  # ignored: not an image
    (first / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # ignored: hidden
    (first / "dangling.JPEG").symlink_to(tmp_path / "gone.JPEG")  # rejected: unreadable
    os.mkfifo(first / "pipe.JPEG")  # ignored, never opened (opening a fifo would wait for a writer)
    (first / "loop").symlink_to(first)  # a link loop: walked once
    write_images(root / "train" / SORTED_WNIDS[1], ["c.JPEG"])
    write_images(root / "train", ["loose.JPEG"])  # rejected: not inside a class folder
    (root / "train" / "notes.txt").write_text("x")
    (root / "train" / f"{SORTED_WNIDS[1]}.tar").write_bytes(b"\0" * 512)  # a class tar kept beside its folder
    write_images(root / "val" / SORTED_WNIDS[0], ["v.JPEG"])
    write_images(root / "val" / SORTED_WNIDS[1], ["w.JPEG"])
    (root / "LICENSE").write_text("license")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    write_images(root / "extra", ["photo.JPEG"])  # an image outside train/ and val/
    return root


def devkit_half_sorted(tmp_path: Path) -> Path:
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root = tmp_path / "imagenet"
    write_train(root / "train")
    write_val(root / "val", sorted_numbers={1, 2}, make_all_folders=True)
    (root / "val" / "valprep.sh").write_text("mkdir -p n01440764\n")
    write_images(root / "val", ["ILSVRC2012_val_00000099.JPEG"])  # beyond the ground truth: rejected
    write_devkit_2012(root)
    return root


def kaggle_root(tmp_path: Path) -> Path:
    root = tmp_path / "kaggle"
    write_kaggle(root, sorted_numbers={3, 4}, test_images=3)
    return root


def kaggle_cls_loc(tmp_path: Path) -> Path:
    write_kaggle(tmp_path / "kaggle")
    return tmp_path / "kaggle" / CLS_LOC


def ilsvrc2015(tmp_path: Path) -> Path:
    root = tmp_path / "ILSVRC2015"
    write_train(root / "Data" / "CLS-LOC" / "train", per_class=1)
    write_val(root / "Data" / "CLS-LOC" / "val")
    write_images(root / "Data" / "CLS-LOC" / "test", ["ILSVRC2012_test_00000001.JPEG"])
    write_devkit_2015(root / "devkit" / "data", "map_clsloc.txt")
    (root / "devkit" / "readme.txt").write_text("ILSVRC2015 devkit\n")
    return root


TREES = {"imagefolder": messy_imagefolder, "devkit": devkit_half_sorted, "kaggle": kaggle_root,
         "kaggle from CLS-LOC": kaggle_cls_loc, "ilsvrc2015": ilsvrc2015}


@pytest.mark.parametrize("tree", TREES)
def test_every_file_is_counted_once(tmp_path: Path, tree: str) -> None:
    build: Callable[[Path], Path] = TREES[tree]
    root, out = build(tmp_path), tmp_path / "out"
    found = walked_files(root)
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    listed = [rel for split in ("train", "val") if (out / f"{split}.txt").exists()
              for rel, _ in read_file_list(out / f"{split}.txt")]
    as_is = {rel for rel in listed if not rel.startswith("..")}
    repaired = {entry["path"] for entry in summary["repaired"]["files"]}
    rejected = {rel for rel in read_tsv(out / "rejected.tsv") if not rel.endswith("/")}
    ignored = {rel: why for rel, why in read_tsv(out / "ignored.tsv").items() if not rel.endswith("/")}
    places = [as_is, repaired, rejected, set(ignored)]
    assert sum(map(len, places)) == len(found)  # no file in two places ...
    assert set().union(*places) == found  # ... and none in no place
    assert len(listed) == len(as_is) + len(repaired)
    assert summary["files"] == {"found": len(found), "listed": len(as_is), "repaired": len(repaired),
                                "rejected": len(rejected), "ignored": len(ignored)}
    assert all(reason for reason in ignored.values())
    last = result.output.strip().splitlines()[-1]
    assert f"ignored {len(ignored)} file" in last and str(out / "ignored.tsv") in last


def test_ignored_reasons(tmp_path: Path) -> None:
    root, out = messy_imagefolder(tmp_path), tmp_path / "out"
    assert run_prepare(root, "--out", out).exit_code == 0
    ignored = read_tsv(out / "ignored.tsv")
    assert "not an image" in ignored[f"train/{SORTED_WNIDS[0]}/README.txt"]
    assert "hidden" in ignored[f"train/{SORTED_WNIDS[0]}/.DS_Store"]
    assert "hidden" in ignored[".git/config"]
    assert "not a regular file" in ignored[f"train/{SORTED_WNIDS[0]}/pipe.JPEG"]
    assert "already scanned" in ignored[f"train/{SORTED_WNIDS[0]}/loop/"]
    assert "class folder" in ignored[f"train/{SORTED_WNIDS[1]}.tar"]
    assert "outside" in ignored["extra/photo.JPEG"] and "outside" in ignored["LICENSE"]
    kaggle, out = kaggle_root(tmp_path), tmp_path / "out2"
    assert run_prepare(kaggle, "--out", out).exit_code == 0
    ignored = read_tsv(out / "ignored.tsv")
    assert "test split" in ignored[f"{CLS_LOC}/test/ILSVRC2012_test_00000001.JPEG"]
    assert "label file" in ignored["LOC_val_solution.csv"]
    assert "bounding boxes" in ignored["ILSVRC/Annotations/CLS-LOC/val/ILSVRC2012_val_00000001.xml"]
