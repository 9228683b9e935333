"""`imagenet-tools preview` (tools/preview.py): the PNG, the --npz batch and its parameters, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

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
