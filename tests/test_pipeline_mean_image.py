"""normalize="image": the DALI graphs and the PIL baseline against a NumPy reference of both readings.

"centre" (cuda-convnet2 convdata.py:104,192): every crop, flipped or not, and every test view loses the
centre 224 window of the mean image. "crop" (Caffe data_transformer.cpp): each pixel loses the mean at its
own source position, so the window moves and mirrors with the crop. The reference is written here from
those two sentences with NumPy slicing; the mean image is random, so a wrong window cannot pass.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.lighting import colour_stats
from pipeline.pca import write_mean_image
from pipeline.pil_loader import ImageListDataset
from tests.conftest import requires_cuda
from tests.test_pipeline_graphs import (EIGVAL, EIGVEC, PIL_MEAN_ABS_TOLERANCE, entries_of, make_cfg,
                                        numpy_train_view, pil_stored, run_exposed)

CORNERS = [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]  # §6's views (x, y): tl, tr, bl, br, centre
DEVICES = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.timeout(60), requires_cuda])]


def write_pca_with_mean_image(folder: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """pca.json with the published eigen-pairs and a random mean image; returns (path, image on 0-255)."""
    image = np.random.default_rng(seed).uniform(0.1, 0.9, size=(256, 256, 3))
    path = folder / "pca.json"
    document = {"eigval": EIGVAL.tolist(), "eigvec": EIGVEC.tolist(), "mean": image.mean(axis=(0, 1)).tolist(),
                "std": [0.2, 0.2, 0.2], "scale": "unit", "mean_image": write_mean_image(image, path)}
    path.write_text(json.dumps(document))
    return path, image * 255.0


def window_of(mean_image: np.ndarray, reading: str, x: int, y: int, flip: int) -> np.ndarray:
    """The 224x224 mean a crop at (x, y), mirrored if flip, has subtracted under each reading."""
    if reading == "centre":
        return mean_image[16:240, 16:240]
    window = mean_image[y : y + 224, x : x + 224]
    return window[:, ::-1] if flip else window


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reading", ["centre", "crop"])
def test_dali_train_subtracts_the_window_of_each_reading(image_tree: Path, tmp_path: Path, reading: str,
                                                         device: str) -> None:
    pca, mean_image = write_pca_with_mean_image(tmp_path)
    gpu = dict(device="gpu", device_id=0) if device == "gpu" else {}
    cfg = make_cfg(image_tree, batch_size=12, normalize="image", mean_window=reading, pca=pca, seed=5, **gpu)
    out = run_exposed(cfg, "train")
    assert set(out["flip"].ravel().tolist()) == {0, 1}  # mirrored and plain crops both checked
    for i in range(12):
        x, y, flip = int(out["crop_x"][i]), int(out["crop_y"][i]), int(out["flip"][i])
        expected = numpy_train_view(out["stored"][i], x, y, flip, out["alpha"][i].astype(np.float64))
        expected -= window_of(mean_image, reading, x, y, flip)
        np.testing.assert_allclose(out["images"][i], expected.transpose(2, 0, 1), atol=2e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reading", ["centre", "crop"])
def test_dali_val_and_ten_crop_views(image_tree: Path, tmp_path: Path, reading: str, device: str) -> None:
    pca, mean_image = write_pca_with_mean_image(tmp_path)
    gpu = dict(device="gpu", device_id=0) if device == "gpu" else {}
    cfg = make_cfg(image_tree, batch_size=3, normalize="image", mean_window=reading, pca=pca, **gpu)
    val = run_exposed(cfg, "val")
    ten = run_exposed(cfg, "ten_crop")
    for i in range(3):
        stored = val["stored"][i].astype(np.float64)
        # The centre view's window is the centre window in both readings.
        np.testing.assert_allclose(val["images"][i], (stored[16:240, 16:240] - mean_image[16:240, 16:240])
                                   .transpose(2, 0, 1), atol=1e-3)
        stored = ten["stored"][i].astype(np.float64)
        for k, (flip, (x, y)) in enumerate((f, c) for f in (0, 1) for c in CORNERS):
            view = stored[y : y + 224, x : x + 224]
            view = view[:, ::-1] if flip else view
            expected = (view - window_of(mean_image, reading, x, y, flip)).transpose(2, 0, 1)
            np.testing.assert_allclose(ten["images"][i, k], expected, atol=1e-3, err_msg=f"view {k}")


@pytest.mark.parametrize("reading", ["centre", "crop"])
def test_dali_nhwc_float16_with_lighting_rescale(image_tree: Path, tmp_path: Path, reading: str) -> None:
    pca, mean_image = write_pca_with_mean_image(tmp_path)
    cfg = make_cfg(image_tree, batch_size=6, normalize="image", mean_window=reading, pca=pca, layout="NHWC",
                   dtype="float16", lighting_rescale=True, seed=2)
    out = run_exposed(cfg, "train")
    assert out["images"].dtype == np.float16 and out["images"].shape == (6, 224, 224, 3)
    for i in range(6):
        x, y, flip = int(out["crop_x"][i]), int(out["crop_y"][i]), int(out["flip"][i])
        expected = numpy_train_view(out["stored"][i], x, y, flip, out["alpha"][i].astype(np.float64))
        expected = (expected - window_of(mean_image, reading, x, y, flip)) / 1.1
        np.testing.assert_allclose(out["images"][i].astype(np.float64), expected, atol=0.07)


@pytest.mark.parametrize("reading", ["centre", "crop"])
def test_pil_baseline_subtracts_the_same_windows(image_tree: Path, tmp_path: Path, reading: str) -> None:
    pca, mean_image = write_pca_with_mean_image(tmp_path)
    stats = colour_stats(pca, "image", mean_window=reading)
    cfg = make_cfg(image_tree)
    train = ImageListDataset(image_tree, entries_of(cfg.train_list), "train", stats, 224, 0.1, rescale=True)
    flips = set()
    for index in range(8):
        stored = pil_stored(image_tree / train.entries[index][0])
        torch.manual_seed(index)
        image, _ = train[index]
        torch.manual_seed(index)  # replay the draws
        _, params = train.views(stored)
        x, y, flip = params["crop_x"], params["crop_y"], params["flip"]
        flips.add(flip)
        expected = numpy_train_view(stored, x, y, flip, params["alpha"]) - window_of(mean_image, reading, x, y, flip)
        np.testing.assert_allclose(image.numpy(), (expected / 1.1).transpose(2, 0, 1), atol=1e-3)
    assert flips == {0, 1}
    ten = ImageListDataset(image_tree, entries_of(cfg.val_list), "ten_crop", stats, 224, 0.1, rescale=True)
    views, _ = ten[0]
    stored = pil_stored(image_tree / ten.entries[0][0]).astype(np.float64)
    for k, (flip, (x, y)) in enumerate((f, c) for f in (0, 1) for c in CORNERS):
        view = stored[y : y + 224, x : x + 224]
        view = view[:, ::-1] if flip else view
        expected = view - window_of(mean_image, reading, x, y, flip)  # no rescale outside training
        np.testing.assert_allclose(views[k].numpy(), expected.transpose(2, 0, 1), atol=1e-3, err_msg=f"view {k}")


def test_dali_and_pil_val_batches_agree(image_tree: Path, tmp_path: Path) -> None:
    from pipeline.loader import make_loader

    pca, _ = write_pca_with_mean_image(tmp_path)
    batches = {}
    for backend in ("dali", "pil"):
        cfg = make_cfg(image_tree, batch_size=9, normalize="image", pca=pca, backend=backend, num_threads=0
                       if backend == "pil" else 1)
        batches[backend] = next(iter(make_loader(cfg, "val")))[0].numpy()
    difference = np.abs(batches["dali"] - batches["pil"])
    assert difference.mean() < PIL_MEAN_ABS_TOLERANCE  # the decoders' difference only: the means are equal


@pytest.mark.parametrize("reading", ["centre", "crop"])
@pytest.mark.parametrize("split", ["train", "ten_crop"])
def test_gpu_graph_with_mean_image_traces_without_a_gpu(image_tree: Path, tmp_path: Path, reading: str,
                                                        split: str) -> None:
    """The GPU graph's mean-image operators (a GPU constant, GPU arithmetic) pass DALI's definition-time checks."""
    from pipeline.graphs import build_pipeline

    pca, _ = write_pca_with_mean_image(tmp_path)
    cfg = make_cfg(image_tree, device="gpu", device_id=0, normalize="image", mean_window=reading, pca=pca,
                   layout="NHWC", dtype="float16")
    pipe, names = build_pipeline(cfg, split, expose=True)
    outputs = getattr(pipe, "_graph_out", None)  # DALI's traced outputs (private; absent in other versions)
    if outputs is not None:
        assert dict(zip(names, (node.device for node in outputs)))["images"] == "gpu"
