"""pipeline.pca.load_pca: good files load, each kind of bad pca.json is one clear line (also via the CLI)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.constants import IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC
from pipeline.errors import InputError
from pipeline.pca import default_pca, load_pca
from tools.compute_pca import main

GOOD = {
    "eigval": [0.2, 0.02, 0.004],
    "eigvec": np.linalg.qr(np.arange(1.0, 10.0).reshape(3, 3) + np.eye(3))[0].tolist(),
    "mean": [0.48, 0.45, 0.40],
    "std": [0.23, 0.22, 0.22],
    "scale": "unit",
}


def with_field(key: str, value) -> dict:
    return {**GOOD, key: value}


def without(key: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != key}


def test_good_file_loads(tmp_path):
    path = tmp_path / "pca.json"
    path.write_text(json.dumps(GOOD))
    pca = load_pca(path)
    np.testing.assert_array_equal(pca.eigvec, np.array(GOOD["eigvec"]))
    np.testing.assert_array_equal(pca.eigval, GOOD["eigval"])
    np.testing.assert_array_equal(pca.mean, GOOD["mean"])


def test_none_gives_the_published_imagenet_values():
    pca = load_pca(None)
    np.testing.assert_array_equal(pca.eigval, IMAGENET_PCA_EIGVAL)
    np.testing.assert_array_equal(pca.eigvec, np.array(IMAGENET_PCA_EIGVEC))
    # The published vectors are orthonormal to their 4 printed digits.
    assert np.abs(pca.eigvec.T @ pca.eigvec - np.eye(3)).max() < 1e-3
    assert default_pca().mean.shape == (3,)


# (file contents, words the message must hold); contents are a dict (dumped as JSON) or raw text.
BAD = {
    "wrong-shape-eigval": (with_field("eigval", [0.2, 0.02]), "'eigval' has shape (2,), expected (3,)"),
    "wrong-shape-eigvec": (with_field("eigvec", [[1, 0, 0], [0, 1, 0]]), "'eigvec' has shape (2, 3)"),
    "ragged-eigvec": (with_field("eigvec", [[1, 0, 0], [0, 1], [0, 0, 1]]), "'eigvec' is not numeric"),
    "nan": ('{"eigval": [NaN, 0.02, 0.004], "eigvec": %s, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}'
            % json.dumps(GOOD["eigvec"]), "'eigval' holds NaN"),
    "infinite-mean": (with_field("mean", [math.inf, 0.4, 0.4]), "'mean' holds NaN or infinite"),
    "non-orthonormal": (with_field("eigvec", [[1, 0, 0], [0.5, 1, 0], [0, 0, 1]]), "not orthonormal"),
    "scaled-eigvec": (with_field("eigvec", (2 * np.eye(3)).tolist()), "not orthonormal"),
    "negative-eigval": (with_field("eigval", [0.2, -0.02, 0.004]), "eigenvalues must be positive"),
    "zero-eigval": (with_field("eigval", [0.2, 0.02, 0.0]), "eigenvalues must be positive"),
    "zero-std": (with_field("std", [0.2, 0.0, 0.2]), "std must be positive"),
    "string-values": (with_field("mean", ["a", "b", "c"]), "'mean' is not numeric"),
    "missing-field": (without("std"), "no 'std' field"),
    "wrong-scale": (with_field("scale", "0-255"), "scale '0-255' is not supported"),
    "not-an-object": ("[1, 2, 3]", "expected a JSON object"),
    "not-json": ("eigval: 0.2, 0.02\n", "not a JSON file"),
    "binary": (b"\xff\xfe\x00garbage", "not a JSON file"),
    "empty": ("", "not a JSON file"),
}


def write(path: Path, contents) -> Path:
    if isinstance(contents, dict):
        path.write_text(json.dumps(contents))
    elif isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_clear_line(tmp_path, case):
    contents, words = BAD[case]
    path = write(tmp_path / f"{case}.json", contents)
    with pytest.raises(InputError) as caught:
        load_pca(path)
    message = str(caught.value)
    assert words in message and str(path) in message and "\n" not in message
    result = CliRunner().invoke(main, ["--check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert words in line and str(path) in line


def test_missing_file_is_one_clear_line(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(InputError, match="no such PCA file; make one with `imagenet-tools compute-pca`"):
        load_pca(path)
    result = CliRunner().invoke(main, ["--check", str(path)])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr


def test_check_accepts_a_good_file(tmp_path):
    path = write(tmp_path / "pca.json", GOOD)
    result = CliRunner().invoke(main, ["--check", str(path)])
    assert result.exit_code == 0 and "ok" in result.stdout and "0.2" in result.stdout


def test_a_file_without_a_mean_image_still_loads(tmp_path):
    """pca.json files written before the mean image existed: mean_image None, normalisation "mean" by default."""
    from pipeline.pca import default_normalization

    path = write(tmp_path / "pca.json", GOOD)
    assert load_pca(path).mean_image is None
    assert default_normalization(path) == "mean" and default_normalization(None) == "mean"


def mean_image_for(mean, seed: int = 0) -> np.ndarray:
    """A (256, 256, 3) image in [0, 1] whose average over pixels is `mean` (to rounding)."""
    pattern = np.random.default_rng(seed).uniform(-0.1, 0.1, (256, 256, 3))
    return np.asarray(mean) + pattern - pattern.mean(axis=(0, 1))


def with_mean_image(folder: Path, image: np.ndarray | None = None, **entry_changes) -> Path:
    from pipeline.pca import write_mean_image

    path = folder / "pca.json"
    image = mean_image_for(GOOD["mean"]) if image is None else image
    write(path, {**GOOD, "mean_image": {**write_mean_image(image, path), **entry_changes}})
    return path


def test_a_mean_image_loads_and_becomes_the_default_normalisation(tmp_path):
    from pipeline.pca import default_normalization

    image = mean_image_for(GOOD["mean"])
    path = with_mean_image(tmp_path, image)
    np.testing.assert_array_equal(load_pca(path).mean_image, image)
    assert default_normalization(path) == "image"


def corrupt(case: str, folder: Path) -> tuple[Path, str]:
    """A pca.json whose mean image is bad in one way, and the words its error must hold."""
    import hashlib

    if case == "missing":
        path = with_mean_image(folder)
        next(folder.glob("*.npy")).unlink()
        return path, "is missing"
    if case == "altered":
        path = with_mean_image(folder)
        side = next(folder.glob("*.npy"))
        side.write_bytes(side.read_bytes()[:-8] + np.float64(0.5).tobytes())
        return path, "does not match the sha256"
    if case == "other-run":  # a consistent file pair from another run's statistics
        return with_mean_image(folder, mean_image_for([0.3, 0.3, 0.3])), "do not belong together"
    if case == "out-of-range":
        return with_mean_image(folder, mean_image_for(GOOD["mean"]) * 3), "must lie in [0, 1]"
    if case == "not-a-folder-name":
        return with_mean_image(folder, file="../elsewhere.npy"), "must name a .npy file in the same folder"
    if case == "not-npy":
        (folder / "x.npy").write_bytes(b"not numpy")
        path = write(folder / "pca.json", {**GOOD, "mean_image": {
            "file": "x.npy", "sha256": hashlib.sha256(b"not numpy").hexdigest()}})
        return path, "not a NumPy .npy file"
    assert case == "wrong-shape"
    path = with_mean_image(folder)
    small = folder / "small.npy"
    np.save(small, np.full((128, 128, 3), 0.4))
    data = json.loads(path.read_text())
    data["mean_image"].update(file=small.name, sha256=hashlib.sha256(small.read_bytes()).hexdigest())
    return write(path, data), "expected a finite float (256, 256, 3) mean image"


@pytest.mark.parametrize("case", ["missing", "altered", "other-run", "out-of-range", "not-a-folder-name",
                                  "not-npy", "wrong-shape"])
def test_bad_mean_image_is_one_clear_line(tmp_path, case):
    path, words = corrupt(case, tmp_path)
    with pytest.raises(InputError) as caught:
        load_pca(path)
    message = str(caught.value)
    assert words in message and str(tmp_path) in message and "\n" not in message
    result = CliRunner().invoke(main, ["--check", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert words in line
