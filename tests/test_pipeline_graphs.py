"""The DALI graphs (pipeline/graphs.py) against independent PIL/NumPy references, on the CPU.

The references here are written from the paper (§2, §4.1, §6) and the published constants, not from
the pipeline's code: PIL resize + centre crop for the stored image, NumPy slicing, flipping and
lighting for the augmentations.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DataConfig
from pipeline.graphs import EXPOSED_OUTPUTS, OUTPUTS, as_numpy, build_pipeline

# The paper's preprocessing, by hand.
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
# Measured on the generated images (tests/conftest.py) and on Imagenette: DALI's CPU decode + antialiased
# linear resize differ from PIL's decode + antialiased bilinear by 0.2-0.5 grey levels on average, at
# most 5 (see docs/pipeline.md). The bounds leave a margin for other libjpeg builds.
PIL_MEAN_ABS_TOLERANCE = 1.0
PIL_MAX_ABS_TOLERANCE = 8


def write_lists(root: Path, label_is_index: bool = False) -> tuple[Path, Path]:
    """train.txt / val.txt for an ImageFolder tree; label = class index, or the line number."""
    paths = {}
    for split in ("train", "val"):
        files = sorted((root / split).glob("*/*.JPEG"))
        classes = sorted({f.parent.name for f in files})
        lines = [f"{f.relative_to(root)} {i if label_is_index else classes.index(f.parent.name)}"
                 for i, f in enumerate(files)]
        paths[split] = root / f"{split}.txt"
        paths[split].write_text("\n".join(lines) + "\n")
    return paths["train"], paths["val"]


def make_cfg(root: Path, **changes) -> DataConfig:
    train_list, val_list = write_lists(root, label_is_index=changes.pop("label_is_index", False))
    return DataConfig(root=root, train_list=train_list, val_list=val_list, **{"batch_size": 4, **changes})


def pil_stored(path: Path) -> np.ndarray:
    """§2 by PIL: shorter side 256 (rounded), centre 256x256 with the corner rounded half up."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    scale = 256 / min(width, height)
    size = (256, int(height * scale + 0.5)) if width <= height else (int(width * scale + 0.5), 256)
    pixels = np.asarray(image.resize(size, Image.BILINEAR))
    y0, x0 = (int(math.floor((n - 256) / 2 + 0.5)) for n in pixels.shape[:2])
    return pixels[y0 : y0 + 256, x0 : x0 + 256]


def numpy_train_view(stored: np.ndarray, x: int, y: int, flip: int, alpha: np.ndarray,
                     scale: str = "stdev") -> np.ndarray:
    """§4.1 by NumPy: 224 crop at (x, y), mirror, add to every pixel eigvec @ (alpha * 255 sqrt(eigval)) (the
    authors' code: alpha times each component's standard deviation on 0-255) or, for scale "eigval",
    255 * eigvec @ (alpha * eigval) (fb.resnet.torch)."""
    view = stored[y : y + 224, x : x + 224].astype(np.float64)
    if flip:
        view = view[:, ::-1]
    size = np.sqrt(EIGVAL) if scale == "stdev" else EIGVAL
    return view + 255.0 * EIGVEC @ (alpha * size)


def run_exposed(cfg: DataConfig, split: str, **kwargs) -> dict[str, np.ndarray]:
    pipe, names = build_pipeline(cfg, split, expose=True, **kwargs)
    pipe.build()
    assert names == OUTPUTS + EXPOSED_OUTPUTS[split]
    return {name: as_numpy(out) for name, out in zip(names, pipe.run())}


def entries_of(list_path: Path) -> list[tuple[str, int]]:
    rows = [line.rsplit(" ", 1) for line in list_path.read_text().splitlines()]
    return [(path, int(label)) for path, label in rows]


def test_val_centre_crop_matches_pil(image_tree: Path) -> None:
    cfg = make_cfg(image_tree, batch_size=9, normalize="meanstd")
    out = run_exposed(cfg, "val")
    for i, (path, label) in enumerate(entries_of(cfg.val_list)):
        reference = pil_stored(image_tree / path)
        difference = np.abs(out["stored"][i].astype(int) - reference.astype(int))
        assert difference.mean() < PIL_MEAN_ABS_TOLERANCE and difference.max() <= PIL_MAX_ABS_TOLERANCE, path
        # val = the centre 224 of the stored image, exactly; then normalised, CHW.
        np.testing.assert_array_equal(out["raw"][i], out["stored"][i][16:240, 16:240])
        expected = ((out["stored"][i][16:240, 16:240] - MEAN) / STD).transpose(2, 0, 1)
        np.testing.assert_allclose(out["images"][i], expected, atol=1e-4)
        assert out["labels"][i, 0] == label


def test_ten_crop_positions_and_flips_exact(image_tree: Path) -> None:
    cfg = make_cfg(image_tree, batch_size=3)
    out = run_exposed(cfg, "ten_crop")
    assert out["images"].shape == (3, 10, 3, 224, 224)
    corners = [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]  # (x, y): tl, tr, bl, br, centre
    for i in range(3):
        stored = out["stored"][i]
        views = [stored[y : y + 224, x : x + 224] for x, y in corners]
        views += [view[:, ::-1] for view in views]
        for k, view in enumerate(views):
            np.testing.assert_array_equal(out["raw"][i, k], view, err_msg=f"image {i} view {k}")
            np.testing.assert_allclose(out["images"][i, k], (view - MEAN).transpose(2, 0, 1), atol=1e-4)


@pytest.mark.parametrize("normalize,scale,rescale", [("mean", None, False), ("meanstd", "eigval", False),
                                                     ("mean", "stdev", True)])
def test_train_output_equals_numpy_reference(image_tree: Path, normalize: str, scale: str | None,
                                             rescale: bool) -> None:
    """scale None: DataConfig's default, which must be the authors' "stdev". rescale: cuda-convnet2's
    1 / (1 + 0.1) on the training image (convdata.py:183), opt-in."""
    extra = {"lighting_scale": scale} if scale else {}
    cfg = make_cfg(image_tree, batch_size=8, normalize=normalize, seed=3, lighting_rescale=rescale, **extra)
    out = run_exposed(cfg, "train")
    std = (STD if normalize == "meanstd" else np.ones(3)) * (1.1 if rescale else 1.0)
    for i in range(8):
        expected = numpy_train_view(out["stored"][i], out["crop_x"][i], out["crop_y"][i], out["flip"][i],
                                    out["alpha"][i].astype(np.float64), scale or "stdev")
        np.testing.assert_allclose(out["raw"][i], expected, atol=2e-3)
        np.testing.assert_allclose(out["images"][i], ((expected - MEAN) / std).transpose(2, 0, 1), atol=2e-3)
    assert np.abs(out["alpha"]).max() > 0  # lighting was on


def test_train_nhwc_float16_and_no_lighting(image_tree: Path) -> None:
    cfg = make_cfg(image_tree, batch_size=4, layout="NHWC", dtype="float16", pca_alpha_std=0.0)
    out = run_exposed(cfg, "train")
    assert out["images"].shape == (4, 224, 224, 3) and out["images"].dtype == np.float16
    np.testing.assert_array_equal(out["alpha"], 0)
    for i in range(4):
        expected = numpy_train_view(out["stored"][i], out["crop_x"][i], out["crop_y"][i], out["flip"][i], np.zeros(3))
        np.testing.assert_allclose(out["images"][i].astype(np.float64), expected - MEAN, atol=0.07)


def test_random_parameter_statistics(tmp_path: Path) -> None:
    # Small images (upscaled to 256) keep 768 draws cheap.
    root = tmp_path / "tiny"
    (root / "train" / "c").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(root / "train" / "c" / f"c_{i}.JPEG")
    (root / "train.txt").write_text("".join(f"train/c/c_{i}.JPEG 0\n" for i in range(4)))
    cfg = DataConfig(root=root, train_list=root / "train.txt", batch_size=64, seed=7)
    pipe, names = build_pipeline(cfg, "train", expose=True)
    pipe.build()
    draws: dict[str, list] = {"crop_x": [], "crop_y": [], "flip": [], "alpha": []}
    for _ in range(12):
        out = dict(zip(names, pipe.run()))
        for name in draws:
            draws[name].append(as_numpy(out[name]))
    crop_x, crop_y, flip, alpha = (np.concatenate(draws[n]) for n in ("crop_x", "crop_y", "flip", "alpha"))
    assert len(flip) == 768
    assert set(crop_x.tolist()) == set(range(33)) and set(crop_y.tolist()) == set(range(33))
    assert abs(flip.mean() - 0.5) < 0.06  # 3.3 sigma for 768 fair coins
    assert abs(alpha.mean()) < 0.01 and abs(alpha.std() - 0.1) < 0.006  # 2304 draws of N(0, 0.1)
    assert abs(np.corrcoef(crop_x, crop_y)[0, 1]) < 0.15


def test_same_seed_same_batches_other_seed_other(image_tree: Path) -> None:
    def first_two(seed: int) -> list[np.ndarray]:
        pipe, names = build_pipeline(make_cfg(image_tree, seed=seed), "train", expose=True)
        pipe.build()
        return [as_numpy(pipe.run()[0]) for _ in range(2)]

    a, b, c = first_two(5), first_two(5), first_two(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))


def dali_decoded(paths: list[Path]) -> list[np.ndarray]:
    """Independent minimal DALI graph: the CPU decoder alone, no resize (the reference for skipped resizes)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=len(paths), num_threads=1, device_id=None)
    def decode():
        return fn.decoders.image(fn.external_source(name="files"), device="cpu", output_type=types.RGB)

    pipe = decode()
    pipe.build()
    pipe.feed_input("files", [np.fromfile(p, dtype=np.uint8) for p in paths])
    (images,) = pipe.run()
    return [np.array(images[i]) for i in range(len(paths))]


def test_images_already_256_keep_their_decoded_pixels(tmp_path: Path) -> None:
    """Files from `prepare --resize 256` skip the resize: the stored image is the centre of the decoded file,
    pixel for pixel, in a batch that also holds images that do get resized (checked against PIL)."""
    root = tmp_path / "mixed"
    (root / "val" / "c").mkdir(parents=True)
    rng = np.random.default_rng(1)
    sizes = [(341, 256), (256, 384), (256, 256), (300, 255), (257, 400), (500, 375)]  # (width, height)
    paths = []
    for i, (width, height) in enumerate(sizes):
        paths.append(root / "val" / "c" / f"c_{i}.JPEG")
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(paths[-1], quality=90)
    (root / "val.txt").write_text("".join(f"val/c/c_{i}.JPEG 0\n" for i in range(len(sizes))))
    cfg = DataConfig(root=root, val_list=root / "val.txt", batch_size=len(sizes))
    out = run_exposed(cfg, "val")
    for path, decoded, stored, (width, height) in zip(paths, dali_decoded(paths), out["stored"], sizes):
        if min(width, height) == 256:
            y0, x0 = (int(math.floor((n - 256) / 2 + 0.5)) for n in (height, width))
            np.testing.assert_array_equal(stored, decoded[y0 : y0 + 256, x0 : x0 + 256], err_msg=path.name)
        else:  # resized as before: close to PIL's §2
            difference = np.abs(stored.astype(int) - pil_stored(path).astype(int))
            assert difference.mean() < 4 * PIL_MEAN_ABS_TOLERANCE, path.name  # noise images: more resampling error


def test_resize_at_scale_one_is_the_identity(tmp_path: Path) -> None:
    """Why skipping is exact: DALI's antialiased linear resize returns a shorter-side-256 image unchanged."""
    from nvidia.dali import fn, pipeline_def, types

    path = tmp_path / "a.JPEG"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (256, 341, 3), dtype=np.uint8)).save(path, quality=90)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def resized():
        images = fn.decoders.image(fn.external_source(name="files"), device="cpu", output_type=types.RGB)
        return fn.resize(images, resize_shorter=256, antialias=True, interp_type=types.INTERP_LINEAR)

    pipe = resized()
    pipe.build()
    pipe.feed_input("files", [np.fromfile(path, dtype=np.uint8)])
    (image,) = pipe.run()
    np.testing.assert_array_equal(np.array(image[0]), dali_decoded([path])[0])


@pytest.mark.parametrize("split", ["train", "val", "ten_crop"])
@pytest.mark.parametrize("layout,dtype", [("NCHW", "float32"), ("NHWC", "float16")])
def test_gpu_graph_definitions_trace_without_a_gpu(image_tree: Path, split: str, layout: str, dtype: str) -> None:
    """The GPU graph ("mixed" decoder, GPU operators, the per-sample resize `if` on GPU data) is defined in
    Python on any machine; DALI checks every operator's arguments there, so a wrong one in a GPU-only branch
    fails here on CI, not first on a GPU machine. Building it needs CUDA (tests marked gpu)."""
    cfg = make_cfg(image_tree, device="gpu", device_id=0, layout=layout, dtype=dtype, hw_decoder_load=0.65,
                   preallocate_width_hint=500, preallocate_height_hint=375)
    pipe, names = build_pipeline(cfg, split, expose=True)
    assert names == OUTPUTS + EXPOSED_OUTPUTS[split]
    outputs = getattr(pipe, "_graph_out", None)  # DALI's traced outputs (private; absent in other versions)
    if outputs is not None:
        devices = dict(zip(names, (node.device for node in outputs)))
        assert devices["images"] == devices["labels"] == devices["stored"] == "gpu", devices
