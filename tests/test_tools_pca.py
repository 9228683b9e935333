"""compute-pca against an independent PIL + NumPy reference, a known covariance, workers/order/sampling
invariance, bad images, the DALI path on CPU operators, and the GPU path (where CUDA exists)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import HAS_CUDA, requires_cuda, write_image_tree
from tools.compute_pca import main
from pipeline.pca import load_pca
from pipeline.pil_image import stored_pixels


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def write_list(path: Path, relpaths: list[str]) -> Path:
    path.write_text("".join(f"{p} 0\n" for p in relpaths), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[str]]:
    """12 photo-like JPEGs of varied sizes plus a grayscale, a CMYK and a PNG-under-.JPEG image."""
    root = tmp_path_factory.mktemp("pca") / "imagenet"
    written = write_image_tree(root, {"train": 4}, seed=3)["train"]
    rng = np.random.default_rng(5)
    odd = root / "train" / "odd"
    odd.mkdir()
    Image.fromarray(rng.integers(0, 256, (300, 280), dtype=np.uint8), "L").save(odd / "gray.JPEG")
    Image.fromarray(rng.integers(0, 256, (270, 333, 4), dtype=np.uint8), "CMYK").save(odd / "cmyk.JPEG")
    Image.fromarray(rng.integers(0, 256, (256, 390, 3), dtype=np.uint8)).save(odd / "png.JPEG", format="PNG")
    paths = written + [odd / "gray.JPEG", odd / "cmyk.JPEG", odd / "png.JPEG"]
    return root, [str(p.relative_to(root)) for p in paths]


def reference_pixels(path: Path) -> np.ndarray:
    """Independent: resize the whole image, then slice the centre; pixels in [0, 1] as (N, 3)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if w <= h:
        w, h = 256, round(h * 256 / w)
    else:
        w, h = round(w * 256 / h), 256
    pixels = np.asarray(image.resize((w, h), Image.BILINEAR), dtype=np.float64) / 255.0
    top, left = (h - 256 + 1) // 2, (w - 256 + 1) // 2  # floor((size - 256) / 2 + 0.5)
    return pixels[top : top + 256, left : left + 256].reshape(-1, 3)


def dali_reference_pixels(paths: list[Path]) -> np.ndarray:
    """Independent DALI graph (CPU): decode, shorter side 256 antialiased linear, centre 256x256; (N, 3) in [0, 1]."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=len(paths), num_threads=1, device_id=None)
    def reference():
        images = fn.decoders.image(fn.external_source(name="files"), device="cpu", output_type=types.RGB)
        images = fn.resize(images, resize_shorter=256, antialias=True, interp_type=types.INTERP_LINEAR)
        return fn.crop(images, crop=(256, 256))

    pipe = reference()
    pipe.build()
    pipe.feed_input("files", [np.fromfile(p, dtype=np.uint8) for p in paths])
    (images,) = pipe.run()
    return np.asarray(images.as_tensor()).reshape(-1, 3) / 255.0


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_matches_numpy_reference(tree, tmp_path, backend):
    root, relpaths = tree
    code, out, err = run_cli("--list", write_list(tmp_path / "train.txt", relpaths), "--root", root,
                             "--out", tmp_path / "pca.json", "--workers", 1, "--backend", backend)
    assert code == 0, out + err
    assert "images/s" in err
    if backend == "pil":
        pixels = np.concatenate([reference_pixels(root / p) for p in relpaths])
    else:
        pixels = dali_reference_pixels([root / p for p in relpaths])
    cov = np.cov(pixels, rowvar=False, bias=True)
    eigval, eigvec = np.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    got = load(tmp_path / "pca.json")
    np.testing.assert_allclose(got["covariance"], cov, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["mean"], pixels.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["std"], pixels.std(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["eigval"], eigval, rtol=0, atol=1e-9)
    # Same vectors up to sign; the tool's sign rule makes every R entry positive.
    vec = np.array(got["eigvec"])
    np.testing.assert_allclose(vec, eigvec * np.sign(eigvec[0]), rtol=0, atol=1e-9)
    assert np.all(vec[0] > 0)
    assert got["n_images"] == len(relpaths) and got["n_pixels"] == len(relpaths) * 256 * 256
    assert got["scale"] == "unit" and got["n_skipped"] == 0
    assert len(got["list_sha256"]) == 64 and got["version"] and "antialias" in got["preprocessing"]
    assert got["backend"] == backend
    # The mean image: the per-pixel mean of the stored images, HWC, in a side file named by pca.json.
    mean_image = load_pca(tmp_path / "pca.json").mean_image
    reference = pixels.reshape(len(relpaths), 256, 256, 3).mean(axis=0)
    np.testing.assert_allclose(mean_image, reference, rtol=0, atol=1e-12)
    assert (tmp_path / got["mean_image"]["file"]).is_file() and mean_image.std() > 0


def test_stored_pixels_match_the_pipeline_baseline(tree):
    from pipeline.pil_loader import stored_image

    root, relpaths = tree
    for relpath in relpaths:
        with Image.open(root / relpath) as image:
            np.testing.assert_array_equal(stored_pixels(image), stored_image(root / relpath))


def test_recovers_a_known_covariance(tmp_path):
    # Pixels i.i.d. N(128, C) on the 0-255 scale, stored losslessly at 256x256 (no resize, no crop).
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    true_eigval = np.array([28.0, 12.0, 5.0]) ** 2
    cov_255 = q @ np.diag(true_eigval) @ q.T
    names = []
    for i in range(4):
        x = rng.multivariate_normal([128.0] * 3, cov_255, size=(256, 256))
        Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        names.append(f"{i}.png")
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", names), "--root", tmp_path,
                             "--out", tmp_path / "pca.json", "--workers", 1)
    assert code == 0, out + err
    got = load(tmp_path / "pca.json")
    # Rounding to integers adds 1/12 to each variance (Sheppard); 262,144 pixels give ~0.3 % standard
    # error on each eigenvalue, so 2 % is > 6 standard errors.
    expected = (true_eigval + 1 / 12) / 255**2
    np.testing.assert_allclose(got["eigval"], expected, rtol=0.02)
    overlap = np.abs(np.array(got["eigvec"]).T @ q)
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=0.01)
    np.testing.assert_allclose(got["mean"], 128 / 255, atol=0.2 / 255)


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_same_result_for_workers_and_order(tree, tmp_path, backend):
    root, relpaths = tree
    shuffled = relpaths[:]
    random.Random(1).shuffle(shuffled)
    runs = {}
    for name, paths, workers in (("one", relpaths, 1), ("two", relpaths, 2), ("shuffled", shuffled, 2)):
        code, out, err = run_cli("--list", write_list(tmp_path / f"{name}.txt", paths), "--root", root,
                                 "--out", tmp_path / f"{name}.json", "--workers", workers, "--backend", backend)
        assert code == 0, out + err
        runs[name] = load(tmp_path / f"{name}.json")
    for key in ("eigval", "eigvec", "mean", "std", "covariance", "n_pixels"):
        assert runs["one"][key] == runs["two"][key] == runs["shuffled"][key], key  # bit-identical
    assert runs["one"]["mean_image"]["sha256"] == runs["two"]["mean_image"]["sha256"] \
        == runs["shuffled"]["mean_image"]["sha256"]  # the mean image too, to the bit
    assert runs["one"]["list_sha256"] != runs["shuffled"]["list_sha256"]


def test_max_images_sample_is_reproducible(tree, tmp_path):
    root, relpaths = tree
    list_path = write_list(tmp_path / "train.txt", relpaths)
    results = []
    for seed in (7, 7, 8):
        out_path = tmp_path / f"s{len(results)}.json"
        code, out, err = run_cli("--list", list_path, "--root", root, "--out", out_path,
                                 "--max-images", 5, "--seed", seed, "--workers", 1, "--backend", "pil")
        assert code == 0, out + err
        results.append(load(out_path))
    assert [r["n_images"] for r in results] == [5, 5, 5]
    assert results[0]["eigval"] == results[1]["eigval"] and results[0]["seed"] == 7
    assert results[0]["eigval"] != results[2]["eigval"]
    # The sample is numpy's default_rng(seed).choice without replacement: check against that directly.
    chosen = sorted(np.random.default_rng(7).choice(len(relpaths), size=5, replace=False))
    pixels = np.concatenate([reference_pixels(root / relpaths[i]) for i in chosen])
    np.testing.assert_allclose(results[0]["mean"], pixels.mean(axis=0), rtol=0, atol=1e-9)


def bad_files(root: Path) -> list[str]:
    """A truncated JPEG, an empty file, a text file and a missing file, all named .JPEG."""
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    good = next((root / "train").rglob("*.JPEG")).read_bytes()
    (bad / "truncated.JPEG").write_bytes(good[: len(good) // 3])
    (bad / "empty.JPEG").write_bytes(b"")
    (bad / "text.JPEG").write_text("not an image\n")
    return ["bad/truncated.JPEG", "bad/empty.JPEG", "bad/text.JPEG", "bad/missing.JPEG"]


def test_bad_images_are_skipped_and_counted(tree, tmp_path):
    root, relpaths = tree
    bad = bad_files(root)
    mixed = relpaths[:3] + bad + relpaths[3:6]
    code, out, err = run_cli("--list", write_list(tmp_path / "mixed.txt", mixed), "--root", root,
                             "--out", tmp_path / "mixed.json", "--workers", 2, "--backend", "pil")
    assert code == 0, out + err
    assert "4 skipped" in out
    got = load(tmp_path / "mixed.json")
    assert got["n_skipped"] == 4 and got["n_images"] == 6
    assert [line.split(":")[0] for line in got["skipped"]] == bad
    code, out, err = run_cli("--list", write_list(tmp_path / "good.txt", relpaths[:6]), "--root", root,
                             "--out", tmp_path / "good.json", "--workers", 1, "--backend", "pil")
    assert code == 0 and load(tmp_path / "good.json")["eigval"] == got["eigval"]


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_bad_image_with_on_error_fail_is_one_line(tree, tmp_path, backend):
    root, relpaths = tree
    bad = bad_files(root)
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", relpaths[:2] + bad[2:3]), "--root", root,
                             "--out", tmp_path / "p.json", "--on-error", "fail", "--workers", 1, "--backend", backend)
    assert code == 1 and "Traceback" not in out + err
    (line,) = err.strip().splitlines()[-1:]
    assert "l.txt:3" in line and "bad/text.JPEG" in line and "--on-error skip" in line
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--list", "{tmp}/none.txt", "--root", "{tmp}", "--out", "{tmp}/p.json"], "no such file list"),
        (["--list", "{tmp}/l.txt", "--root", "{tmp}/nowhere", "--out", "{tmp}/p.json"], "not a folder"),
        (["--list", "{tmp}/l.txt", "--root", "{tmp}", "--out", "{tmp}"], "is a folder"),
        (["--root", "{tmp}", "--out", "{tmp}/p.json"], "--list is required"),
        (["--list", "{tmp}/l.txt", "--root", "{tmp}", "--out", "{tmp}/p.json"], "none of the 1 images"),
        (["--list", "{tmp}/grey.txt", "--root", "{tmp}", "--out", "{tmp}/p.json"], "unusable, nothing written"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    write_list(tmp_path / "l.txt", ["missing.JPEG"])
    Image.new("RGB", (300, 260), (90, 90, 90)).save(tmp_path / "grey.JPEG")
    write_list(tmp_path / "grey.txt", ["grey.JPEG"])
    code, out, err = run_cli(*[a.format(tmp=tmp_path) for a in args], "--workers", 1)
    assert code == 1 and "Traceback" not in out + err
    assert len(err.strip().splitlines()[-1:]) == 1 and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "p.json").exists() and not list(tmp_path.glob("*.npy"))  # no mean image left behind


def test_an_existing_out_is_kept_without_overwrite(tree, tmp_path, monkeypatch):
    """Runs record the sha256 of their pca.json: a second compute-pca to the same --out is refused in one line,
    before any image is read, and leaves the pca.json and its mean image as they were."""
    import tools.compute_pca as compute_pca

    root, relpaths = tree
    out = tmp_path / "pca.json"
    code, _, err = run_cli("--list", write_list(tmp_path / "l.txt", relpaths[:3]), "--root", root, "--out", out,
                           "--workers", 1)
    assert code == 0, err
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.suffix in (".json", ".npy")}
    monkeypatch.setattr(compute_pca, "compute_pca", lambda *a, **k: pytest.fail("images read before the refusal"))
    code, stdout, err = run_cli("--list", tmp_path / "l.txt", "--root", root, "--out", out, "--workers", 1)
    assert code == 1 and "Traceback" not in stdout + err
    assert err.strip().splitlines() == [f"Error: --out {out} already exists (runs trained with it record its sha256); "
                                        "replace it and its mean image with --overwrite, or choose another --out"]
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.suffix in (".json", ".npy")}
    assert after == before and len(before) == 2


def test_rewriting_replaces_the_mean_image_and_check_describes_it(tree, tmp_path):
    """A second run to the same --out with --overwrite leaves one pair: the new pca.json and its own mean image."""
    root, relpaths = tree
    out = tmp_path / "pca.json"
    for paths, extra in ((relpaths[:3], []), (relpaths[3:6], ["--overwrite"])):
        code, _, err = run_cli("--list", write_list(tmp_path / "l.txt", paths), "--root", root, "--out", out,
                               "--workers", 1, *extra)
        assert code == 0, err
    (side,) = tmp_path.glob("*.npy")
    assert side.name == load(out)["mean_image"]["file"]
    expected = np.stack([reference_pixels(root / p).reshape(256, 256, 3) for p in relpaths[3:6]]).mean(axis=0)
    np.testing.assert_allclose(load_pca(out).mean_image, expected, rtol=0, atol=1e-12)
    code, stdout, _ = run_cli("--check", out)
    assert code == 0 and f"mean image {side.name}: 256x256x3" in stdout


@pytest.mark.skipif(HAS_CUDA, reason="checks the message of a machine without CUDA")
def test_gpu_without_cuda_is_one_line(tree, tmp_path):
    root, relpaths = tree
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", relpaths), "--root", root,
                             "--out", tmp_path / "p.json", "--device", "gpu")
    assert code == 1 and "no CUDA device" in err and "Traceback" not in out + err


def test_dali_agrees_with_pil_and_skips_bad_files(tree, tmp_path):
    """DALI (the GPU path's graph, here on CPU operators) is close to PIL; bad files are retried alone."""
    root, relpaths = tree
    bad = bad_files(root)[1:]  # empty, text, missing (libjpeg may decode a truncated file without error)
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", relpaths[:5] + bad + relpaths[5:]),
                             "--root", root, "--out", tmp_path / "dali.json", "--backend", "dali", "--workers", 2)
    assert code == 0, out + err
    dali = load(tmp_path / "dali.json")
    assert dali["n_skipped"] == 3 and dali["n_images"] == len(relpaths) and dali["backend"] == "dali"
    pixels = np.concatenate([reference_pixels(root / p) for p in relpaths])
    np.testing.assert_allclose(dali["mean"], pixels.mean(axis=0), atol=2e-3)
    np.testing.assert_allclose(dali["covariance"], np.cov(pixels, rowvar=False, bias=True), atol=5e-4)


@pytest.mark.gpu
@pytest.mark.timeout(60)
@requires_cuda
def test_gpu_agrees_with_cpu(tree, tmp_path):
    root, relpaths = tree
    list_path = write_list(tmp_path / "l.txt", relpaths)
    for device in ("cpu", "gpu"):
        code, out, err = run_cli("--list", list_path, "--root", root, "--out", tmp_path / f"{device}.json",
                                 "--device", device, "--workers", 2)
        assert code == 0, out + err
    cpu, gpu = load(tmp_path / "cpu.json"), load(tmp_path / "gpu.json")
    assert gpu["n_images"] == cpu["n_images"] and gpu["device"] == "gpu"
    # nvJPEG and DALI's resampler differ from PIL by a grey level here and there.
    np.testing.assert_allclose(gpu["mean"], cpu["mean"], atol=2e-3)
    np.testing.assert_allclose(gpu["covariance"], cpu["covariance"], atol=5e-4)


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_tiny_and_thin_images_are_upscaled(tmp_path, backend):
    rng = np.random.default_rng(2)
    sizes = {"dot.JPEG": (1, 1), "pair.JPEG": (2, 3), "thin.JPEG": (3, 200)}
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", list(sizes)), "--root", tmp_path,
                             "--out", tmp_path / "p.json", "--workers", 1, "--backend", backend)
    assert code == 0, out + err
    got = load(tmp_path / "p.json")
    assert got["n_images"] == 3 and got["n_pixels"] == 3 * 256 * 256
    pixels = np.concatenate([reference_pixels(tmp_path / name) for name in sizes])
    # Exact for PIL; DALI's resampler differs from PIL's by a grey level here and there.
    np.testing.assert_allclose(got["mean"], pixels.mean(axis=0), atol=1e-9 if backend == "pil" else 3e-3)


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    # PIL refuses images over 2 * MAX_IMAGE_PIXELS; lowered here so a test image counts as enormous.
    rng = np.random.default_rng(4)
    for name, (h, w) in {"big.JPEG": (300, 400), "a.JPEG": (200, 180), "b.JPEG": (150, 260)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", ["a.JPEG", "big.JPEG", "b.JPEG"]),
                             "--root", tmp_path, "--out", tmp_path / "p.json", "--workers", 1, "--backend", "pil")
    assert code == 0, out + err
    got = load(tmp_path / "p.json")
    assert got["n_skipped"] == 1 and got["n_images"] == 2
    assert got["skipped"][0].startswith("big.JPEG: DecompressionBombError")


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_names_with_spaces_quotes_and_non_ascii(tmp_path, backend):
    names = ["with space.JPEG", "quote'\"s.JPEG", "ünï cødé.JPEG"]
    rng = np.random.default_rng(6)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (260, 300, 3), dtype=np.uint8)).save(tmp_path / name)
    code, out, err = run_cli("--list", write_list(tmp_path / "l.txt", names), "--root", tmp_path,
                             "--out", tmp_path / "p.json", "--workers", 1, "--backend", backend)
    assert code == 0, out + err
    assert load(tmp_path / "p.json")["n_images"] == 3


def test_torch_summation_of_the_gpu_path_is_exact_on_cpu(tree):
    """The GPU path sums with torch in float64; the same function on a CPU DALI batch, vs int64 NumPy."""
    import torch

    from tools.pca.dali import build_pipeline, torch_moments

    root, relpaths = tree
    pipe = build_pipeline("cpu", batch_size=4, num_threads=1, device_id=None)
    pipe.feed_input("jpegs", [np.fromfile(root / p, dtype=np.uint8) for p in relpaths[:3]])
    (output,) = pipe.run()
    got = torch_moments(output, 3, torch.device("cpu"))
    x = np.asarray(output.as_tensor()).reshape(-1, 3).astype(np.int64)
    assert got.n_images == 3 and got.n_pixels == 3 * 256 * 256
    assert got.sums == x.sum(axis=0).tolist()
    assert got.products == (x.T @ x).tolist()
    np.testing.assert_array_equal(got.image_sums, np.asarray(output.as_tensor()).astype(np.int64).sum(axis=0))


def test_default_backend_is_pil_on_the_cpu(tree, tmp_path):
    """PIL worker processes measured faster than DALI's CPU graph on 2 cores (docs/pca.md): the CPU default."""
    root, relpaths = tree
    code, _, err = run_cli("--list", write_list(tmp_path / "train.txt", relpaths), "--root", root,
                           "--out", tmp_path / "pca.json", "--workers", 1)
    assert code == 0, err
    assert json.loads((tmp_path / "pca.json").read_text())["backend"] == "pil"


@pytest.mark.parametrize("out, words", [
    ("/proc/pca.json", "cannot write files in /proc"),
    ("{tmp}/a_file/pca.json", "a_file is a file, not a folder"),
    ("/sys/pca.json", "cannot write files in /sys"),
])
def test_unwritable_out_is_refused_before_the_computation(tree, tmp_path, monkeypatch, out, words):
    """Found at the start in one line, not after the whole computation as a traceback."""
    import tools.compute_pca as compute_pca

    def no_computation(*args, **kwargs):
        raise AssertionError("the images were read before --out was checked")

    monkeypatch.setattr(compute_pca, "compute_pca", no_computation)
    (tmp_path / "a_file").write_text("x")
    root, relpaths = tree
    out = out.format(tmp=tmp_path)
    code, stdout, err = run_cli("--list", write_list(tmp_path / "l.txt", relpaths), "--root", root,
                                "--out", out, "--workers", 1)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err
    assert len(lines) == 1 and lines[0].startswith(f"Error: --out {out}: ") and words in lines[0]
