"""`imagenet-tools preview` (tools/preview.py): the PNG, the --npz batch and its parameters, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from tests.shard_data import as_files, prepared_shards
from tests.test_pipeline_graphs import make_cfg, numpy_train_view, pil_stored
from tools.preview import main


def test_train_preview_npz_matches_numpy_reference(image_tree: Path, tmp_path: Path) -> None:
    cfg = make_cfg(image_tree)
    png, npz = tmp_path / "grid.png", tmp_path / "batch.npz"
    result = CliRunner().invoke(main, [str(image_tree), str(cfg.train_list), "--images", "2", "--samples", "3",
                                       "--out", str(png), "--npz", str(npz), "--seed", "4"])
    assert result.exit_code == 0, result.output
    with Image.open(png) as grid:
        assert grid.format == "PNG" and grid.width > grid.height  # 2 rows of 5 panels
    data = np.load(npz)
    assert data["images"].shape == (6, 224, 224, 3) and data["images"].dtype == np.float32
    assert data["labels"].tolist() == [0] * 6
    first = sorted((image_tree / "train").glob("*/*.JPEG"))[0]
    assert data["files"][0] == str(first.relative_to(image_tree))
    for k in range(6):
        stored = data["stored"][k]
        difference = np.abs(stored.astype(int) - pil_stored(image_tree / str(data["files"][k])).astype(int))
        assert difference.mean() < 1.0
        expected = numpy_train_view(stored, data["crop_x"][k], data["crop_y"][k], data["flip"][k],
                                    data["alpha"][k].astype(np.float64))
        np.testing.assert_allclose(data["images"][k], expected, atol=2e-3)


def test_ten_crop_preview_and_bad_input(image_tree: Path, tmp_path: Path) -> None:
    cfg = make_cfg(image_tree)
    npz = tmp_path / "ten.npz"
    runner = CliRunner()
    result = runner.invoke(main, [str(image_tree), str(cfg.val_list), "--split", "ten_crop", "--images", "1",
                                  "--out", str(tmp_path / "ten.png"), "--npz", str(npz)])
    assert result.exit_code == 0, result.output
    assert np.load(npz)["images"].shape == (1, 10, 224, 224, 3)
    result = runner.invoke(main, [str(tmp_path / "nowhere"), str(cfg.val_list)])
    assert result.exit_code == 1 and "no such folder" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, [str(image_tree), str(cfg.val_list), "--start", "99"])
    assert result.exit_code == 1 and "past the last" in result.output


def test_shard_list_previews_the_same_pixels_as_files(tmp_path: Path) -> None:
    """preview of prepare's shard lists: the stored images are the JPEGs' own (PIL reference), the training views
    follow the drawn parameters, the val batch equals that of the same JPEGs as files, pixel for pixel."""
    expected = prepared_shards(tmp_path, train_tars=1, per_tar=4, val_tars=1, labels=4, label_offset=100)
    runner = CliRunner()
    npz = tmp_path / "train.npz"
    result = runner.invoke(main, [str(tmp_path / "wds"), str(tmp_path / "lists" / "train.txt"), "--images", "2",
                                  "--samples", "2", "--out", str(tmp_path / "t.png"), "--npz", str(npz)])
    assert result.exit_code == 0, result.output
    data = np.load(npz)
    assert data["labels"].tolist() == [label for _, label in expected["train"][:2] for _ in range(2)]
    files = as_files(tmp_path / "wds", expected["train"][:2], tmp_path / "files", tmp_path / "files.txt")
    for k in range(4):
        reference = pil_stored(tmp_path / "files" / files[k // 2][0]).astype(int)
        assert np.abs(data["stored"][k].astype(int) - reference).mean() < 1.0
        view = numpy_train_view(data["stored"][k], data["crop_x"][k], data["crop_y"][k], data["flip"][k],
                                data["alpha"][k].astype(np.float64))
        np.testing.assert_allclose(data["images"][k], view, atol=2e-3)
    as_files(tmp_path / "wds", expected["val"][:3], tmp_path / "vfiles", tmp_path / "vfiles.txt")
    batches = []
    for root, file_list in ((tmp_path / "wds", tmp_path / "lists" / "val.txt"), (tmp_path / "vfiles", tmp_path / "vfiles.txt")):
        out = tmp_path / f"{root.name}.npz"
        result = runner.invoke(main, [str(root), str(file_list), "--split", "val", "--images", "3",
                                      "--out", str(tmp_path / f"{root.name}.png"), "--npz", str(out)])
        assert result.exit_code == 0, result.output
        batches.append(np.load(out))
    np.testing.assert_array_equal(batches[0]["images"], batches[1]["images"])
    assert batches[0]["labels"].tolist() == batches[1]["labels"].tolist() == [100, 101, 102]


def test_a_missing_shard_is_one_line(tmp_path: Path) -> None:
    prepared_shards(tmp_path, train_tars=1, per_tar=2, val_tars=1, labels=2)
    (tmp_path / "wds" / "imagenet1k-validation-00.tar").unlink()
    result = CliRunner().invoke(main, [str(tmp_path / "wds"), str(tmp_path / "lists" / "val.txt"), "--split", "val",
                                       "--out", str(tmp_path / "v.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "imagenet1k-validation-00.tar:ILSVRC2012_val_00000001: listed in" in result.output
