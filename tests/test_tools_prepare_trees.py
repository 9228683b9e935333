"""`prepare` on ImageNet trees as real users have them: half-finished valprep, a Kaggle val/ sorted into class
folders, the val folder under its tar name, Kaggle roots at three depths, the ILSVRC2015 devkit.

Every expected label comes from tests/prepare_trees.py's tables (ground truth -> ID -> WNID -> sorted index).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.filelist import read_class_table, read_file_list
from tests.prepare_trees import (CLS_LOC, GROUND_TRUTH, SORTED_WNIDS, SYNSETS, val_label, val_name, val_wnid,
                                 write_devkit_2012, write_devkit_2015, write_kaggle, write_train, write_val)
from tests.test_tools_prepare_check import read_rejected, run_prepare
from tests.test_tools_prepare_layouts import expect_error

NUMBERS = range(1, len(GROUND_TRUTH) + 1)


def expected_val(prefix: str, sorted_numbers=()) -> dict[str, int]:
    """val.txt as {path: label}: sorted images under <prefix>/<wnid>/, the others flat in <prefix>/."""
    return {(f"{prefix}/{val_wnid(n)}/{val_name(n)}" if n in sorted_numbers else f"{prefix}/{val_name(n)}"):
            val_label(n) for n in NUMBERS}


def expected_train(prefix: str, per_class: int) -> dict[str, int]:
    return {f"{prefix}/{w}/{w}_{i}.JPEG": SORTED_WNIDS.index(w) for w in SORTED_WNIDS for i in range(per_class)}


def run_ok(root: Path, out: Path, *args) -> str:
    result = run_prepare(root, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_devkit_valprep_stopped_midway(tmp_path: Path) -> None:
    """valprep.sh made every class folder and moved 3 images: those are listed by folder, the rest by the truth."""
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_train(root / "train")
    write_val(root / "val", sorted_numbers={1, 2, 3}, make_all_folders=True)
    write_devkit_2012(root)
    assert "layout devkit" in run_ok(root, out)
    assert dict(read_file_list(out / "val.txt", num_classes=3)) == expected_val("val", {1, 2, 3})
    assert dict(read_file_list(out / "train.txt")) == expected_train("train", 2)


def test_devkit_val_fully_sorted_but_one(tmp_path: Path) -> None:
    """Only one flat image left: still the devkit layout; nothing of val/<wnid>/ is lost."""
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_val(root / "val", sorted_numbers={1, 2, 3, 4, 5})
    write_devkit_2012(root)
    run_ok(root, out)
    assert dict(read_file_list(out / "val.txt")) == expected_val("val", {1, 2, 3, 4, 5})


def test_kaggle_val_sorted_into_class_folders_from_the_kaggle_root(tmp_path: Path) -> None:
    root, out = tmp_path / "kaggle", tmp_path / "out"
    write_kaggle(root, sorted_numbers=NUMBERS)
    assert "layout kaggle" in run_ok(root, out)
    assert dict(read_file_list(out / "val.txt")) == expected_val(f"{CLS_LOC}/val", set(NUMBERS))
    assert dict(read_file_list(out / "train.txt")) == expected_train(f"{CLS_LOC}/train", 1)


def test_val_and_train_under_their_tar_names_beside_the_devkit(tmp_path: Path) -> None:
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_train(root / "ILSVRC2012_img_train")
    write_val(root / "ILSVRC2012_img_val")
    write_devkit_2012(root)
    assert "layout devkit" in run_ok(root, out)
    assert dict(read_file_list(out / "val.txt")) == expected_val("ILSVRC2012_img_val")
    assert dict(read_file_list(out / "train.txt")) == expected_train("ILSVRC2012_img_train", 2)
    assert read_class_table(out / "classes.tsv") == sorted(SYNSETS.values())


@pytest.mark.parametrize("start", ["", "ILSVRC", CLS_LOC])
def test_kaggle_tree_from_each_of_its_roots(tmp_path: Path, start: str) -> None:
    """ROOT = the Kaggle folder, its ILSVRC/, or ILSVRC/Data/CLS-LOC: the CSVs are found up to the Kaggle folder."""
    kaggle, out = tmp_path / "kaggle", tmp_path / "out"
    write_kaggle(kaggle, sorted_numbers={2})
    root = kaggle / start if start else kaggle
    prefix = CLS_LOC.removeprefix(start).strip("/") if start else CLS_LOC
    assert "layout kaggle" in run_ok(root, out)
    val_prefix = f"{prefix}/val" if prefix else "val"
    train_prefix = f"{prefix}/train" if prefix else "train"
    assert dict(read_file_list(out / "val.txt")) == expected_val(val_prefix, {2})
    assert dict(read_file_list(out / "train.txt")) == expected_train(train_prefix, 1)
    assert read_class_table(out / "classes.tsv")[0] == ("n01440764", "tench, Tinca tinca")


@pytest.mark.parametrize("table", ["meta_clsloc.mat", "map_clsloc.txt"])
def test_ilsvrc2015_devkit(tmp_path: Path, table: str) -> None:
    """The ILSVRC2015 CLS-LOC tree (Data/CLS-LOC, devkit/data): its file names and ID order, like 2012's."""
    if table.endswith(".mat"):
        pytest.importorskip("scipy", reason="meta_clsloc.mat is written and read with scipy")
    root, out = tmp_path / "ILSVRC2015", tmp_path / "out"
    write_train(root / "Data" / "CLS-LOC" / "train", per_class=1)
    write_val(root / "Data" / "CLS-LOC" / "val", sorted_numbers={6})
    write_devkit_2015(root / "devkit" / "data", table)
    assert "layout devkit" in run_ok(root, out)
    assert dict(read_file_list(out / "val.txt")) == expected_val("Data/CLS-LOC/val", {6})
    assert dict(read_file_list(out / "train.txt")) == expected_train("Data/CLS-LOC/train", 1)
    names = {wnid: name for wnid, name in read_class_table(out / "classes.tsv")}
    assert list(names) == SORTED_WNIDS
    assert names["n03000684"] == ("chain saw" if table.endswith(".mat") else "chain_saw")


def test_ilsvrc2015_devkit_beside_a_flat_val(tmp_path: Path) -> None:
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_val(root / "val")
    write_devkit_2015(root / "ILSVRC2015_devkit" / "data", "map_clsloc.txt")
    run_ok(root, out)
    assert dict(read_file_list(out / "val.txt")) == expected_val("val")


@pytest.mark.parametrize("layout", ["devkit", "kaggle"])
def test_a_sorted_image_that_contradicts_the_truth_is_refused(tmp_path: Path, layout: str) -> None:
    if layout == "devkit":
        pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
        root = tmp_path / "imagenet"
        write_val(root / "val", sorted_numbers={4})
        write_devkit_2012(root)
        val = root / "val"
    else:
        root = tmp_path / "kaggle"
        val = write_kaggle(root, sorted_numbers={4}) / "val"
    wrong = next(w for w in SORTED_WNIDS if w != val_wnid(4))
    (val / wrong).mkdir(exist_ok=True)
    shutil.move(val / val_wnid(4) / val_name(4), val / wrong / val_name(4))
    expect_error(run_prepare(root, "--out", tmp_path / "out"), f"{wrong}/{val_name(4)}", val_wnid(4), wrong)


def test_missing_metadata_names_every_layout(tmp_path: Path) -> None:
    """A flat val/ without any label file: the error names each layout it could be and the files each needs."""
    root = tmp_path / "imagenet"
    write_val(root / "val")
    expect_error(run_prepare(root, "--out", tmp_path / "out"), "ILSVRC2012_validation_ground_truth.txt",
                 "meta.mat", "ILSVRC2015_clsloc_validation_ground_truth.txt", "meta_clsloc.mat", "map_clsloc.txt",
                 "LOC_val_solution.csv", "LOC_synset_mapping.txt", "--devkit")
    kaggle = tmp_path / "kaggle"
    write_kaggle(kaggle)
    (kaggle / "LOC_val_solution.csv").unlink()
    expect_error(run_prepare(kaggle / CLS_LOC, "--out", tmp_path / "out"), "LOC_val_solution.csv",
                 "ILSVRC2015_clsloc_validation_ground_truth.txt", "map_clsloc.txt")


def test_two_val_folders_are_refused(tmp_path: Path) -> None:
    """val/ and ILSVRC2012_img_val/ both there: listing both would count every image twice."""
    root = tmp_path / "imagenet"
    write_val(root / "val", sorted_numbers=NUMBERS)
    write_val(root / "ILSVRC2012_img_val", sorted_numbers=NUMBERS)
    expect_error(run_prepare(root, "--out", tmp_path / "out"), "ILSVRC2012_img_val", "val", "keep one")


def test_unlabelled_flat_val_image_is_rejected_not_lost(tmp_path: Path) -> None:
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_val(root / "val")
    write_devkit_2012(root)
    write_val(root / "val" / "extra")  # not a class of meta.mat
    expect_error(run_prepare(root, "--out", out), "val/extra", "not a class")
    shutil.rmtree(root / "val" / "extra")
    (root / "val" / "ILSVRC2012_val_00000099.JPEG").write_bytes((root / "val" / val_name(1)).read_bytes())
    run_ok(root, out)
    assert "no label" in read_rejected(out)["val/ILSVRC2012_val_00000099.JPEG"]


def test_devkit_given_with_its_flag(tmp_path: Path) -> None:
    """--devkit DIR (the unpacked folder, or its data/) outside ROOT; a wrong one is refused, not replaced."""
    pytest.importorskip("scipy", reason="the devkit's meta.mat is written and read with scipy")
    root, out = tmp_path / "imagenet", tmp_path / "out"
    write_val(root / "val", sorted_numbers={5})
    write_devkit_2012(tmp_path / "elsewhere")
    for given in ("ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12/data"):
        run_ok(root, out, "--devkit", tmp_path / "elsewhere" / given)
        assert dict(read_file_list(out / "val.txt")) == expected_val("val", {5})
    write_devkit_2015(root / "devkit" / "data", "map_clsloc.txt")  # found under ROOT, but --devkit says where
    expect_error(run_prepare(root, "--out", out, "--devkit", tmp_path / "nowhere"), str(tmp_path / "nowhere"),
                 "--devkit DIR")
