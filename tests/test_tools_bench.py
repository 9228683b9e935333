"""`imagenet-tools bench` on a tiny generated tree: the JSON's fields and their consistency, never speeds."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.errors import InputError
from tests.conftest import CLASSES, requires_cuda, write_image_tree
from tools import bench
from tools.benchmark.modes import endless, make_train_step, time_end_to_end, to_model_input

MODES = ("pipeline", "model", "e2e", "pil-pipeline", "pil-e2e")
# AlexNet's 61 M parameters make a CPU training step cost seconds: time one step per mode.
BATCH, STEPS, WARMUP = 4, 1, 0


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """12 training JPEGs (3 classes x 4) and their file list, written by hand in prepare's format."""
    root = tmp_path_factory.mktemp("bench") / "images"
    written = write_image_tree(root, {"train": 4})
    list_path = root.parent / "train.txt"
    lines = [f"{path.relative_to(root).as_posix()} {CLASSES.index(path.parent.name)}" for path in written["train"]]
    list_path.write_text("\n".join(lines) + "\n")
    return root, list_path


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and stdout + stderr of `imagenet-tools bench ARGS`."""
    result = CliRunner().invoke(bench.main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def check_mode(entry: dict, images: int) -> None:
    assert entry["images"] == images
    assert entry["seconds"] > 0
    assert entry["images_per_s"] > 0
    assert entry["images_per_s"] == pytest.approx(entry["images"] / entry["seconds"], rel=1e-3)


def test_all_modes_cpu_json_table_and_chart(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, list_path = tree
    json_path, png_path = tmp_path / "out" / "bench.json", tmp_path / "out" / "bench.png"
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads", "1",
                           "--batch-size", str(BATCH), "--steps", str(STEPS), "--warmup", str(WARMUP),
                           "--json", str(json_path), "--png", str(png_path))
    assert code == 0, output
    report = json.loads(json_path.read_text())

    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpus_usable"] >= 1
    assert machine["torch"] == torch.__version__
    import nvidia.dali

    assert machine["dali"] == nvidia.dali.__version__
    assert machine["gpu_name"] is None  # a CPU run names no GPU, even on a machine that has one
    date = np.datetime64(report["date"].replace("+00:00", ""))
    assert abs(np.datetime64("now") - date) < np.timedelta64(1, "h")
    assert report["config"]["device"] == "cpu" and report["config"]["steps"] == STEPS

    (row,) = report["results"]
    assert (row["threads"], row["batch_size"], row["amp"], row["root"]) == (1, BATCH, "off", str(root))
    assert tuple(row["modes"]) == MODES
    for mode in MODES:
        check_mode(row["modes"][mode], STEPS * BATCH)
    for mode in ("e2e", "pil-e2e"):
        assert 0.0 <= row["modes"][mode]["wait_fraction"] <= 1.0
        hours = 90 * 1_281_167 / row["modes"][mode]["images_per_s"] / 3600
        assert row["modes"][mode]["hours_for_90_epochs"] == pytest.approx(hours, rel=1e-2)
    assert "wait_fraction" not in row["modes"]["pipeline"]
    speed = {mode: row["modes"][mode]["images_per_s"] for mode in MODES}
    assert row["ratios"]["e2e_over_model"] == pytest.approx(speed["e2e"] / speed["model"], rel=1e-2)
    assert row["ratios"]["dali_over_pil_pipeline"] == pytest.approx(speed["pipeline"] / speed["pil-pipeline"], rel=1e-2)
    assert row["ratios"]["dali_over_pil_e2e"] == pytest.approx(speed["e2e"] / speed["pil-e2e"], rel=1e-2)

    (header,) = [line.split() for line in output.splitlines() if line.split()[:1] == ["data"]]
    assert header[:5] == ["data", "thr", "batch", "hw", "amp"] and all(mode in header for mode in MODES)
    with Image.open(png_path) as chart:
        assert chart.format == "PNG" and chart.width > 100 and chart.height > 100


def test_sweep_and_mode_subset(tree: tuple[Path, Path], tmp_path: Path) -> None:
    """Two thread counts x two batch sizes of DALI alone (DataLoader workers take seconds to spawn):
    four rows, only the asked mode, no ratio without its other mode."""
    root, list_path = tree
    json_path = tmp_path / "sweep.json"
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads", "1,2",
                           "--batch-size", "2,3", "--steps", "2", "--warmup", "0", "--modes", "pipeline",
                           "--repeat", "3", "--json", str(json_path))
    assert code == 0, output
    rows = json.loads(json_path.read_text())["results"]
    assert [(r["threads"], r["batch_size"]) for r in rows] == [(1, 2), (1, 3), (2, 2), (2, 3)]
    for row in rows:
        assert set(row["modes"]) == {"pipeline"}
        entry = row["modes"]["pipeline"]
        check_mode(entry, 2 * row["batch_size"])
        assert len(entry["runs_images_per_s"]) == 3 and all(value > 0 for value in entry["runs_images_per_s"])
        assert entry["images_per_s"] == pytest.approx(float(np.median(entry["runs_images_per_s"])), rel=1e-5)
        assert set(row["ratios"].values()) == {None}


def test_two_roots_share_one_list(tree: tuple[Path, Path], tmp_path: Path) -> None:
    """A second root with the same relative paths (as prepare's --resized-root writes) is a second data set."""
    root, list_path = tree
    resized = tmp_path / "resized"
    for line in list_path.read_text().splitlines():
        relpath = line.rsplit(" ", 1)[0]
        (resized / relpath).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(root / relpath) as image:
            image.resize((256, 256)).save(resized / relpath, quality=90)
    json_path = tmp_path / "two.json"
    code, output = run_cli("--root", str(root), "--root", str(resized), "--list", str(list_path), "--device", "cpu",
                           "--threads", "1", "--batch-size", "3", "--steps", "1", "--warmup", "0",
                           "--modes", "pipeline", "--json", str(json_path))
    assert code == 0, output
    rows = json.loads(json_path.read_text())["results"]
    assert [(r["data"], r["root"]) for r in rows] == [("images", str(root)), ("resized", str(resized))]


def test_stage_profile_cpu(tree: tuple[Path, Path], tmp_path: Path) -> None:
    """--stages adds CPU ms per image for every probe of every data set to the JSON and the output."""
    root, list_path = tree
    json_path = tmp_path / "stages.json"
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads", "1",
                           "--batch-size", "3", "--steps", "1", "--warmup", "0", "--modes", "pipeline", "--stages",
                           "--json", str(json_path))
    assert code == 0, output
    stages = json.loads(json_path.read_text())["stages"]
    expected = ["dali read", "dali decode", "dali resize", "dali stored", "dali train",
                "pil decode", "pil stored", "pil train"]
    assert list(stages) == ["images"] and list(stages["images"]) == expected
    assert all(value > 0 for value in stages["images"].values())
    assert "CPU ms per image, images" in output and all(key in output for key in expected)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--batch-size", "64"], "fewer images than --batch-size"),
        (["--amp", "fp8"], "--amp: unknown fp8"),
        (["--threads", "two"], "--threads 'two'"),
        (["--threads", "0"], "at least 1"),
        (["--modes", "pipeline,speed"], "--modes: unknown speed"),
        (["--hw-decoder-load", "0.5"], "GPU decoder only"),
        (["--compile", "fast"], "--compile: unknown fast"),
        (["--stages", "--device", "gpu"], "use it with --device cpu"),
    ],
)
def test_user_errors_end_in_one_line(tree: tuple[Path, Path], args: list[str], words: str) -> None:
    root, list_path = tree
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "cpu", "--steps", "1",
                           "--warmup", "0", "--modes", "pipeline", *args)
    assert code == 1
    assert words in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_missing_root_and_list(tmp_path: Path) -> None:
    code, output = run_cli("--root", str(tmp_path / "nope"), "--list", str(tmp_path / "x.txt"), "--device", "cpu")
    assert code == 1 and "no such image folder" in output
    code, output = run_cli("--root", str(tmp_path), "--lists", str(tmp_path), "--device", "cpu")
    assert code == 1 and "train.txt: no such file list" in output


def test_wait_fraction_follows_the_slow_side() -> None:
    """A loader that sleeps makes the wait near 1; a step that sleeps makes it near 0."""
    def batches(delay: float):
        while True:
            time.sleep(delay)
            yield torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64)

    def step(delay: float):
        return lambda images, labels: time.sleep(delay)

    cpu = torch.device("cpu")
    slow_data = time_end_to_end(batches(0.04), step(0.0), 5, 1, cpu, channels_last=False)
    slow_model = time_end_to_end(batches(0.0), step(0.04), 5, 1, cpu, channels_last=False)
    assert slow_data.images == slow_model.images == 10
    assert slow_data.wait_fraction > 0.8
    assert slow_model.wait_fraction < 0.2


def test_nhwc_batch_becomes_channels_last_view_without_copy() -> None:
    nhwc = torch.arange(2 * 5 * 6 * 3, dtype=torch.float32).reshape(2, 5, 6, 3)
    images, labels = to_model_input(nhwc, torch.tensor([[1], [2]], dtype=torch.int32), torch.device("cpu"), True)
    assert images.shape == (2, 3, 5, 6) and images.is_contiguous(memory_format=torch.channels_last)
    assert images.data_ptr() == nhwc.data_ptr()
    np.testing.assert_array_equal(images.numpy(), np.transpose(nhwc.numpy(), (0, 3, 1, 2)))
    assert labels.dtype == torch.int64 and labels.tolist() == [1, 2]


@pytest.mark.parametrize("amp, tolerance", [("off", 1e-5), ("bf16", 2e-2)])
def test_train_step_is_one_sgd_update(amp: str, tolerance: float) -> None:
    """One step of a linear classifier against the paper's SGD update computed with NumPy (float64)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images, labels = torch.randn(4, 3, 2, 2), torch.tensor([0, 2, 1, 2])
    weight, bias = (p.detach().double().numpy().copy() for p in model[1].parameters())
    loss = make_train_step(model, torch.device("cpu"), amp, None)(images, labels)

    x = images.reshape(4, 12).double().numpy()
    logits = x @ weight.T + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected_loss = -np.log(probs[np.arange(4), labels.numpy()]).mean()
    dlogits = (probs - np.eye(3)[labels.numpy()]) / 4
    # v = -lr (g + wd w) on the first step (empty momentum buffer); w += v.
    lr, wd = 0.01, 5e-4
    new_weight = weight - lr * (dlogits.T @ x + wd * weight)
    new_bias = bias - lr * (dlogits.sum(0) + wd * bias)
    assert float(loss.detach()) == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(model[1].weight.detach().numpy(), new_weight, rtol=0, atol=tolerance * 0.1)
    np.testing.assert_allclose(model[1].bias.detach().numpy(), new_bias, rtol=0, atol=tolerance * 0.1)


def test_empty_loader_is_a_user_error() -> None:
    with pytest.raises(InputError, match="fewer images than --batch-size"):
        next(endless([]))


@pytest.mark.gpu
@pytest.mark.timeout(240)
@requires_cuda
def test_gpu_all_modes_bf16_channels_last(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, list_path = tree
    json_path = tmp_path / "gpu.json"
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "gpu", "--threads", "2",
                           "--batch-size", str(BATCH), "--steps", str(STEPS), "--warmup", str(WARMUP),
                           "--amp", "bf16", "--channels-last", "--compile", "--hw-decoder-load", "0,0.65", "--json", str(json_path))
    assert code == 0, output
    report = json.loads(json_path.read_text())
    assert report["machine"]["gpu_name"] == torch.cuda.get_device_name()
    assert [row["hw_decoder_load"] for row in report["results"]] == [0.0, 0.65]
    for row in report["results"]:
        for mode in MODES:
            check_mode(row["modes"][mode], STEPS * BATCH)


# --- batches per epoch, and the JSON as it grows (issue 21) ------------------------------------------------
def dry_bench(monkeypatch, *args: str) -> list[str]:
    """bench's stderr lines up to the measurements (run_bench stopped at its start)."""
    def started(options, **kwargs):
        raise InputError("started")

    monkeypatch.setattr(bench, "run_bench", started)
    result = CliRunner().invoke(bench.main, list(args))
    assert result.exit_code == 1 and result.stderr.splitlines()[-1] == "Error: started", result.output
    return result.stderr.splitlines()[:-1]


def test_too_few_batches_per_epoch_is_said_in_one_line(tree: tuple[Path, Path], monkeypatch) -> None:
    root, list_path = tree  # 12 images
    lines = dry_bench(monkeypatch, "--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads",
                      "2,8", "--batch-size", "4")
    # 12 // 4 = 3 batches an epoch; needed: max(20, 4 x 2) = 20 at 2 workers, max(20, 4 x 8) = 32 at 8 (the worst).
    assert lines == ["device: cpu (--device cpu)",
                     "Warning: images: 12 images are 3 batches of 4 an epoch, fewer than 32 (at least 20, and 4 x "
                     "the 8 workers) (and 1 more sweep points): each epoch's end drains the DataLoader's queue and "
                     "DALI drops its partial batch, so the figures come out low; list more images or use a smaller "
                     "--batch-size"]


def test_enough_batches_per_epoch_give_no_warning(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    list_path = tmp_path / "train.txt"  # 21 images at batch 1 and 5 workers: 21 batches >= max(20, 20)
    list_path.write_text("".join(f"a/{i}.JPEG 0\n" for i in range(21)))
    assert dry_bench(monkeypatch, "--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads",
                     "5", "--batch-size", "1") == ["device: cpu (--device cpu)"]


def test_the_json_is_written_after_every_measurement(tree: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    root, list_path = tree
    written = []
    monkeypatch.setattr(bench, "write_atomic", lambda path, text: written.append(json.loads(text)))
    code, output = run_cli("--root", str(root), "--list", str(list_path), "--device", "cpu", "--threads", "1",
                           "--batch-size", str(BATCH), "--steps", "1", "--warmup", "0", "--modes",
                           "pipeline,pil-pipeline", "--json", str(tmp_path / "b.json"))
    assert code == 0, output
    assert [list(report["results"][0]["modes"]) for report in written] == [
        ["pipeline"], ["pipeline", "pil-pipeline"], ["pipeline", "pil-pipeline"]]
    assert [report["complete"] for report in written] == [False, False, True]
