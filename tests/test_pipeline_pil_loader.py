"""The PIL baseline (pipeline/pil_loader.py) against the same PIL/NumPy references as the DALI graphs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.lighting import colour_stats
from pipeline.pil_loader import ImageListDataset, stored_image
from tests.test_pipeline_graphs import MEAN, STD, entries_of, make_cfg, numpy_train_view, pil_stored


def dataset(root: Path, split: str, normalize: str = "mean", scale: str = "stdev") -> ImageListDataset:
    cfg = make_cfg(root)
    entries = entries_of(cfg.train_list if split == "train" else cfg.val_list)
    return ImageListDataset(root, entries, split, colour_stats(None, normalize, scale), 224, 0.1)


def test_stored_image_is_the_paper_preprocessing(image_tree: Path) -> None:
    data = dataset(image_tree, "val")
    for path, _ in data.entries:
        np.testing.assert_array_equal(stored_image(image_tree / path), pil_stored(image_tree / path))


@pytest.mark.parametrize("scale", ["stdev", "eigval"])
def test_train_sample_equals_numpy_reference(image_tree: Path, scale: str) -> None:
    data = dataset(image_tree, "train", normalize="meanstd", scale=scale)
    for index in range(6):
        stored = pil_stored(image_tree / data.entries[index][0])
        torch.manual_seed(index)
        image, label = data[index]
        torch.manual_seed(index)  # replay the same draws to learn the parameters
        raw, params = data.views(stored)
        expected = numpy_train_view(stored, params["crop_x"], params["crop_y"], params["flip"], params["alpha"],
                                    scale)
        np.testing.assert_allclose(raw, expected, atol=1e-3)
        np.testing.assert_allclose(image.numpy(), ((expected - MEAN) / STD).transpose(2, 0, 1), atol=1e-4)
        assert label == data.entries[index][1]


def test_val_and_ten_crop_views(image_tree: Path) -> None:
    stored = pil_stored(image_tree / dataset(image_tree, "val").entries[0][0])
    image, _ = dataset(image_tree, "val")[0]
    np.testing.assert_allclose(image.numpy(), (stored[16:240, 16:240] - MEAN).transpose(2, 0, 1), atol=1e-4)
    views, _ = dataset(image_tree, "ten_crop")[0]
    corners = [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]
    expected = [stored[y : y + 224, x : x + 224] for x, y in corners]
    expected += [view[:, ::-1] for view in expected]
    for k in range(10):
        np.testing.assert_allclose(views[k].numpy(), (expected[k] - MEAN).transpose(2, 0, 1), atol=1e-4)


def test_random_parameter_statistics() -> None:
    data = ImageListDataset(Path("."), [], "train", colour_stats(None, "mean"), 224, 0.1)
    torch.manual_seed(0)
    draws = [data.draw() for _ in range(1500)]
    crop_x = np.array([d[0] for d in draws])
    crop_y = np.array([d[1] for d in draws])
    flip = np.array([d[2] for d in draws], dtype=float)
    alpha = np.stack([d[3] for d in draws])
    assert set(crop_x.tolist()) == set(range(33)) and set(crop_y.tolist()) == set(range(33))
    assert abs(flip.mean() - 0.5) < 0.045  # 3.5 sigma for 1500 fair coins
    assert abs(alpha.mean()) < 0.008 and abs(alpha.std() - 0.1) < 0.005
