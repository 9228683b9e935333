"""`prepare` on the devkit and Kaggle layouts, layout detection, and every input error (message + exit 1)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.filelist import read_class_table, read_file_list
from tests.prepare_trees import GROUND_TRUTH, SORTED_WNIDS, SYNSETS, write_kaggle, write_meta_mat
from tests.test_tools_prepare_check import read_rejected, run_prepare, small_rgb


def write_devkit_tree(root: Path) -> None:
    for wnid, _ in SYNSETS.values():
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(2):
            small_rgb(seed=i).save(root / "train" / wnid / f"{wnid}_{i}.JPEG")
    (root / "val").mkdir()
    for number in range(1, len(GROUND_TRUTH) + 1):
        small_rgb().save(root / "val" / f"ILSVRC2012_val_{number:08d}.JPEG")
    small_rgb().save(root / "val" / "ILSVRC2012_val_00000099.JPEG")  # past the ground truth's end
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in GROUND_TRUTH))
    write_meta_mat(data / "meta.mat")


def test_devkit_val_labels_go_through_meta_mat(tmp_path: Path) -> None:
    pytest.importorskip("scipy", reason="the devkit layout reads meta.mat with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_devkit_tree(root)
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "layout devkit" in result.output
    val = read_file_list(out / "val.txt", num_classes=3)
    expected = [(f"val/ILSVRC2012_val_{n:08d}.JPEG", SORTED_WNIDS.index(SYNSETS[gt][0]))
                for n, gt in enumerate(GROUND_TRUTH, start=1)]
    assert val == expected
    assert {rel: SORTED_WNIDS[label] for rel, label in read_file_list(out / "train.txt")} == {
        f"train/{w}/{w}_{i}.JPEG": w for w in SORTED_WNIDS for i in range(2)}
    assert read_class_table(out / "classes.tsv") == sorted(SYNSETS.values())
    assert "no label" in read_rejected(out)["val/ILSVRC2012_val_00000099.JPEG"]


def test_devkit_without_scipy_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("scipy", reason="meta.mat is written with scipy")
    root = tmp_path / "imagenet"
    write_devkit_tree(root)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # `import scipy.io` now raises ImportError
    result = run_prepare(root, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "needs scipy" in result.output and "pip install" in result.output


def test_kaggle_layout(tmp_path: Path) -> None:
    root, out = tmp_path / "kaggle", tmp_path / "out"
    write_kaggle(root)
    result = run_prepare(root, "--out", out)
    assert result.exit_code == 0, result.output
    assert "layout kaggle" in result.output
    prefix = "ILSVRC/Data/CLS-LOC"
    assert read_file_list(out / "val.txt") == [
        (f"{prefix}/val/ILSVRC2012_val_{n:08d}.JPEG", SORTED_WNIDS.index(SYNSETS[gt][0]))
        for n, gt in enumerate(GROUND_TRUTH, start=1)]
    assert read_file_list(out / "train.txt") == [(f"{prefix}/train/{w}/{w}_0.JPEG", i)
                                                 for i, w in enumerate(SORTED_WNIDS)]
    assert read_class_table(out / "classes.tsv")[1] == ("n02102040", "springer")


def test_forced_layout_overrides_detection(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    write_kaggle(root)
    result = run_prepare(root, "--out", tmp_path / "out", "--layout", "imagefolder")
    assert result.exit_code == 1
    assert "no class folders" in result.output


def expect_error(result, *words: str) -> None:
    """One `Error: ...` line naming the problem, exit code 1, no traceback."""
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    for word in words:
        assert word in last, (word, last)


def test_errors(tmp_path: Path) -> None:
    out = tmp_path / "out"
    expect_error(run_prepare(tmp_path / "missing", "--out", out), "missing", "no such folder")
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    expect_error(run_prepare(tmp_path / "odd", "--out", out), "unknown layout")
    expect_error(run_prepare(tmp_path / "odd", "--out", out, "--layout", "tfrecord"), "unknown layout", "tfrecord")
    empty = tmp_path / "empty"
    (empty / "train" / "n01").mkdir(parents=True)
    expect_error(run_prepare(empty, "--out", out), "no images")
    nothing_valid = tmp_path / "nothing_valid"
    for wnid in ("n01", "n02"):
        (nothing_valid / "train" / wnid).mkdir(parents=True)
    small_rgb().save(nothing_valid / "train" / "n01" / "a.JPEG")
    (nothing_valid / "train" / "n02" / "b.JPEG").write_text("no")
    expect_error(run_prepare(nothing_valid, "--out", out), "n02", "no valid image", "rejected.tsv")
    assert "not an image" in read_rejected(out)["train/n02/b.JPEG"]
    devkit = tmp_path / "devkit"
    (devkit / "val").mkdir(parents=True)
    small_rgb().save(devkit / "val" / "ILSVRC2012_val_00000001.JPEG")
    expect_error(run_prepare(devkit, "--out", out), "ILSVRC2012_validation_ground_truth.txt", "need label files",
                 "--devkit DIR")
    kaggle = tmp_path / "kaggle"
    (kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val").mkdir(parents=True)
    expect_error(run_prepare(kaggle, "--out", out), "LOC_synset_mapping.txt", "CLS-LOC tree needs its label files")
    expect_error(run_prepare(nothing_valid, "--out", out, "--resize", "256"), "--resized-root")


def test_error_from_a_subprocess(tmp_path: Path) -> None:
    """`python tools/prepare_imagenet.py` behaves like the console script: one line on stderr, exit 1."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "tools" / "prepare_imagenet.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope'}: no such folder; give the folder "
                                                "that holds train/ and val/"]


def test_cli_group_runs_prepare(image_tree: Path, tmp_path: Path) -> None:
    from tools.cli import main as cli

    result = CliRunner().invoke(cli, ["prepare", str(image_tree), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_file_list(tmp_path / "o" / "train.txt")) == 18


def test_out_that_is_a_file(image_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    expect_error(run_prepare(image_tree, "--out", tmp_path / "taken"), "--out", "is a file, not a folder")
    expect_error(run_prepare(image_tree, "--out", tmp_path / "o", "--resized-root", tmp_path / "taken"),
                 "--resized-root", "is a file, not a folder")


def test_a_class_with_no_training_image_is_warned_about(tmp_path: Path) -> None:
    """val/n0144O764 (a typo of a train folder's name) becomes a class of its own with label 1, which shifts
    the labels after it: listed as prepare always did, and said in a warning and in summary.json."""
    root = tmp_path / "tree"
    for rel in ("train/n01440764/a.JPEG", "train/n02102040/b.JPEG", "val/n0144O764/c.JPEG",
                "val/n02102040/d.JPEG"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        small_rgb(64, 64).save(root / rel, "JPEG")
    result = run_prepare(root, "--out", tmp_path / "lists")
    assert result.exit_code == 0, result.output
    assert ("warning: 1 class has a label but no training image (a val folder named unlike every train folder?): "
            "n0144O764") in result.output
    summary = json.loads((tmp_path / "lists" / "summary.json").read_text())
    assert summary["classes_without_training_images"] == ["n0144O764"] and summary["classes"] == 3
    (root / "val" / "n0144O764" / "c.JPEG").rename(root / "val" / "n02102040" / "c.JPEG")
    (root / "val" / "n0144O764").rmdir()
    fixed = run_prepare(root, "--out", tmp_path / "lists3")
    assert fixed.exit_code == 0 and "warning" not in fixed.output
    assert json.loads((tmp_path / "lists3" / "summary.json").read_text())["classes_without_training_images"] == []


def test_a_tree_without_val_says_there_is_no_validation_set(image_tree: Path, tmp_path: Path) -> None:
    """No val/: one plain line and "validation_set": false in summary.json; no val.txt, not even one that an
    earlier run (of the tree when it had val/) left in --out."""
    import shutil

    out = tmp_path / "o"
    assert run_prepare(image_tree, "--out", out).exit_code == 0
    assert (out / "val.txt").is_file() and json.loads((out / "summary.json").read_text())["validation_set"] is True
    shutil.rmtree(image_tree / "val")
    result = run_prepare(image_tree, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"no validation set: no val images under {image_tree}, so no val.txt; model.train trains without " \
           "validation (with --schedule step; docs/training.md)" in result.output.splitlines()
    assert json.loads((out / "summary.json").read_text())["validation_set"] is False
    assert not (out / "val.txt").exists() and len(read_file_list(out / "train.txt")) == 18
