"""The size of the PCA lighting (§4.1), measured: the offsets' std per principal component over many draws.

The authors' code (cuda-convnet2 convdata.py:74) draws alpha ~ N(0, 0.1) times each component's standard
deviation on the 0-255 scale, so the offset along eigenvector p_i has std 0.1 * 255 * sqrt(eigval_i)
(eigval of [0, 1] pixels): lighting_scale "stdev", the default. fb.resnet.torch's reading gives
0.1 * 255 * eigval_i: "eigval". The offset is measured from the images themselves (augmented crop minus
the same crop of the stored image), not read from the code's parameters.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import DataConfig
from pipeline.graphs import as_numpy, build_pipeline
from pipeline.lighting import colour_stats
from pipeline.pil_loader import ImageListDataset
from tests.test_pipeline_graphs import EIGVAL, EIGVEC

DRAWS = 1024
# The sample std of 1024 normal draws is within 1/sqrt(2 * 1024) = 2.2 % of the true one (1 sigma); 12 % is
# 5.4 sigma. The two readings differ by 1/sqrt(eigval): 2.1x, 7.3x and 14.9x per component.
RELATIVE_TOLERANCE = 0.12


def expected_std(scale: str) -> np.ndarray:
    return 0.1 * 255.0 * (np.sqrt(EIGVAL) if scale == "stdev" else EIGVAL)


def component_std(offsets: np.ndarray) -> np.ndarray:
    """(n, 3) RGB offsets -> the std of their coordinates along the published eigenvectors (columns)."""
    return (offsets @ EIGVEC).std(axis=0)


def dali_offsets(tmp_path: Path, draws: int = DRAWS, **cfg) -> np.ndarray:
    root = tmp_path / "tiny"
    (root / "train" / "c").mkdir(parents=True)
    for i in range(4):  # small, upscaled to 256: cheap draws
        Image.fromarray(np.full((40, 48, 3), 40 + 50 * i, np.uint8)).save(root / "train" / "c" / f"c_{i}.JPEG")
    (root / "train.txt").write_text("".join(f"train/c/c_{i}.JPEG 0\n" for i in range(4)))
    pipe, names = build_pipeline(DataConfig(root=root, train_list=root / "train.txt", batch_size=64, seed=11, **cfg),
                                 "train", expose=True)
    pipe.build()
    offsets = []
    for _ in range(draws // 64):
        out = {name: as_numpy(node) for name, node in zip(names, pipe.run())}
        for i in range(64):
            x, y = int(out["crop_x"][i]), int(out["crop_y"][i])
            view = out["stored"][i][y : y + 224, x : x + 224].astype(np.float64)
            view = view[:, ::-1] if out["flip"][i] else view
            offsets.append((out["raw"][i] - view).reshape(-1, 3).mean(axis=0))
    return np.array(offsets)


def pil_offsets(**stats) -> np.ndarray:
    stored = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = ImageListDataset(Path("."), [], "train", colour_stats(None, "mean", **stats), 224, 0.1)
    torch.manual_seed(0)
    offsets = []
    for _ in range(DRAWS):
        raw, params = data.views(stored)
        x, y = params["crop_x"], params["crop_y"]
        view = stored[y : y + 224, x : x + 224].astype(np.float64)
        view = view[:, ::-1] if params["flip"] else view
        offsets.append((raw - view).reshape(-1, 3).mean(axis=0))
    return np.array(offsets)


@pytest.mark.parametrize("scale", [None, "eigval"])
def test_dali_lighting_size_per_component(tmp_path: Path, scale: str | None) -> None:
    """None: DataConfig's default, which must be the authors' size."""
    measured = component_std(dali_offsets(tmp_path, **({"lighting_scale": scale} if scale else {})))
    np.testing.assert_allclose(measured, expected_std(scale or "stdev"), rtol=RELATIVE_TOLERANCE)


@pytest.mark.parametrize("scale", [None, "stdev", "eigval"])
def test_pil_lighting_size_per_component(scale: str | None) -> None:
    measured = component_std(pil_offsets(**({"lighting_scale": scale} if scale else {})))
    np.testing.assert_allclose(measured, expected_std(scale or "stdev"), rtol=RELATIVE_TOLERANCE)


def test_lighting_std_zero_adds_nothing(tmp_path: Path) -> None:
    offsets = dali_offsets(tmp_path, draws=64, pca_alpha_std=0.0)
    assert np.abs(offsets).max() < 1e-3


def test_unknown_scale_is_one_line() -> None:
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="unknown lighting scale 'variance'"):
        colour_stats(None, "mean", lighting_scale="variance")
