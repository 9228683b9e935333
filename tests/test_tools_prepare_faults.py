"""`prepare` faults of issue 15: outputs inside the scanned tree, unwritable outputs found late, empty class
folders, progress lines in a log."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.filelist import read_class_table, read_file_list
from tests.test_tools_prepare_check import read_rejected, run_prepare, small_rgb
from tests.test_tools_prepare_layouts import expect_error


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two classes; one grayscale image (repaired by default)."""
    root = tmp_path / "root"
    for wnid in ("n01", "n02"):
        (root / "train" / wnid).mkdir(parents=True)
        small_rgb().save(root / "train" / wnid / "a.JPEG")
    small_rgb().convert("L").save(root / "train" / "n01" / "gray.JPEG")
    return root


@pytest.mark.parametrize("flag, where", [
    ("--out", "train/zz"), ("--out", "."), ("--repair-dir", "repaired"), ("--resized-root", "r256"),
])
def test_outputs_inside_the_scanned_tree_are_refused(tree: Path, tmp_path: Path, flag: str, where: str) -> None:
    """`--out ROOT/train/zz` run twice used to invent class zz and list the repaired copies again."""
    target = tree / where
    args = ["--out", tmp_path / "out"] if flag != "--out" else []
    before = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*"))
    expect_error(run_prepare(tree, *args, flag, target), flag, str(target), "inside")
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")) == before  # nothing written into ROOT


def test_out_through_a_link_into_the_tree_is_refused(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tree / "train")
    expect_error(run_prepare(tree, "--out", tmp_path / "link" / "zz"), "--out", "inside")


def test_unwritable_repair_dir_is_found_before_the_check(tree: Path, tmp_path: Path) -> None:
    """Found at the start in one line, not after checking every file (the repairs then all failed)."""
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "out"
    result = run_prepare(tree, "--out", out, "--repair-dir", tmp_path / "a_file" / "repaired")
    expect_error(result, "--repair-dir", "is a file, not a folder")
    assert "check (header)" not in result.output
    assert not (out / "train.txt").exists()


def test_empty_class_folder_is_reported_and_can_be_skipped(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tree / "train" / "n00").mkdir()  # empty: sorts first, so dropping its class would shift every label
    result = run_prepare(tree, "--out", out)
    expect_error(result, "train/n00", "no valid image", "--skip-empty-classes")
    assert "check (header)" not in result.output  # an empty folder is known before any file is checked
    assert read_rejected(out)["train/n00/"] == "no valid image in this class folder (empty folder)"
    (tree / "train" / "n03").mkdir()
    (tree / "train" / "n03" / "broken.JPEG").write_bytes(b"\xff\xd8\xff")  # its only file is rejected
    (tree / "train" / "n00").rmdir()
    expect_error(run_prepare(tree, "--out", out), "train/n03", "no valid image", "--skip-empty-classes")
    assert read_rejected(out)["train/n03/"] == "no valid image in this class folder (1 rejected, 0 ignored files)"
    (tree / "train" / "n00").mkdir()
    result = run_prepare(tree, "--out", out, "--skip-empty-classes")
    assert result.exit_code == 0, result.output
    assert "train/n00" in result.output and "train/n03" in result.output
    classes = ["n00", "n01", "n02", "n03"]  # the folders on disk, in sorted order: labels do not move
    assert [cid for cid, _ in read_class_table(out / "classes.tsv")] == classes
    assert sorted({label for _, label in read_file_list(out / "train.txt")}) == [1, 2]
    rejected = read_rejected(out)
    assert "empty" in rejected["train/n00/"] and "truncated" in rejected["train/n03/broken.JPEG"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["empty_class_folders"] == ["train/n00", "train/n03"]
    assert summary["splits"]["train"]["per_class"]["n00"] == 0


def test_progress_into_a_log_has_no_carriage_return(tmp_path: Path) -> None:
    """stderr that is not a terminal gets whole lines only (a log file or a pipe)."""
    root = tmp_path / "root"
    (root / "train" / "n01").mkdir(parents=True)
    for i in range(70):  # enough for the process pool
        small_rgb(16, 12).save(root / "train" / "n01" / f"{i}.JPEG")
    small_rgb(16, 12).convert("L").save(root / "train" / "n01" / "gray.JPEG")
    log = tmp_path / "log.txt"
    with open(log, "wb") as handle:
        done = subprocess.run([sys.executable, "-m", "tools.prepare_imagenet", str(root), "--out",
                               str(tmp_path / "out"), "--workers", "2"], stdout=handle, stderr=subprocess.STDOUT,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])
    text = log.read_bytes()
    assert done.returncode == 0, text
    assert b"\r" not in text
    assert b"check (header): 71/71 files" in text and b"repair: 1/1 files" in text
