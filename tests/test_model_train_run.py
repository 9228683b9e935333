"""Real training runs of the paper's AlexNet on tiny generated JPEGs (CPU, DALI's CPU graph):
resuming after a clean stop, SIGTERM and kill -9 all reach exactly the weights of an uninterrupted run.

Every run here is 2 epochs x 2 steps of 4 images, each in a fresh process; the reference run is shared
by the whole module.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.run_log import METRIC_KEYS
from tests.conftest import write_image_tree, write_lists

RUN_TIMEOUT = 600  # seconds; a hung run fails the test instead of hanging the suite


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("run_data")
    paths = write_image_tree(root, {"train": 3, "val": 1}, seed=4)  # 9 train (2 batches of 4), 3 val
    return root, write_lists(root, paths, root / "lists")


def args(dataset, out: Path, *extra: str) -> list[str]:
    root, lists = dataset
    return ["--root", str(root), "--lists", str(lists), "--out", str(out), "--epochs", "2", "-b", "4",
            "--seed", "3", "--workers", "2", "-p", "1", "--lr", "0.001", *extra]


REPO = Path(__file__).resolve().parents[1]


def run_fresh(arguments: list[str]) -> subprocess.CompletedProcess:
    """A whole run in a fresh Python process, like every run it is compared with.

    (CPU kernels are deterministic for a given process state, but a run inside this long-lived pytest
    process, after other tests, can differ from a fresh process in the last bits.)
    """
    result = subprocess.run([sys.executable, "-m", "model.train", *arguments], capture_output=True, text=True,
                            cwd=REPO, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pth.tar", weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"weights differ in {different}"


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("reference")
    run_fresh(args(dataset, out))
    yield out
    shutil.rmtree(out)  # two checkpoints of the whole net (0.9 GB): not kept to the session's end


def test_uninterrupted_run_writes_metrics_and_checkpoints(reference):
    records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(tuple(r) == METRIC_KEYS for r in records)
    assert all(0 <= r["val_top1_err"] <= 100 and r["val10_top1_err"] is None and r["images_per_s"] > 0 for r in records)
    checkpoint = torch.load(reference / "checkpoint.pth.tar", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["step"]) == (2, 0, 4)
    assert checkpoint["arch"] == "alexnet" and checkpoint["num_classes"] == 3
    assert (reference / "model_best.pth.tar").is_file()
    first = torch.load(reference / "model_best.pth.tar", weights_only=True)
    assert first["epoch"] in (1, 2)


def test_resume_at_an_epoch_boundary_gives_the_same_weights(dataset, reference, tmp_path):
    """Resumed with no settings on the command line (no -b, --seed, --lr, --epochs): the checkpoint's are used."""
    out = tmp_path / "boundary"
    run_fresh(args(dataset, out, "--max-steps", "2"))  # stops after epoch 0
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1
    root, lists = dataset
    run_fresh(["--root", str(root), "--lists", str(lists), "--out", str(out), "--resume", str(out / "checkpoint.pth.tar")])
    assert_same_weights(final_weights(out), final_weights(reference))
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


def start(dataset, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "model.train", *args(dataset, out, *extra)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


def wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    """Read stderr until a line containing `text` (the progress line printed after a step)."""
    seen, deadline = [], time.monotonic() + RUN_TIMEOUT
    for line in process.stderr:
        seen.append(line)
        if text in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"the run ended before {text!r}:\n{''.join(seen)}")


def test_kill_9_mid_epoch_then_resume_reaches_the_same_weights(dataset, reference, tmp_path):
    out = tmp_path / "killed"
    process = start(dataset, out, "--checkpoint-every", "1")
    try:
        wait_for_line(process, "epoch 1 [    1/2]")  # step 3 done; its checkpoint is being written now
        process.send_signal(signal.SIGKILL)
        process.wait(RUN_TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    survived = torch.load(out / "checkpoint.pth.tar", weights_only=True)  # never torn
    assert (survived["epoch"], survived["epoch_step"]) in ((1, 0), (1, 1))
    # the way before checkpoints stored DALI's reader state: read the trained batch again and drop it
    resumed = run_fresh(args(dataset, out, "--resume", str(out), "--resume-reread"))
    assert_same_weights(final_weights(out), final_weights(reference))
    if survived["epoch_step"] == 1:
        assert "resuming epoch 1 at batch 1: reading the 1 trained batches again: --resume-reread" in resumed.stderr
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # the torn temp file was cleaned up


def test_sigterm_finishes_the_step_checkpoints_and_exits_0(dataset, reference, tmp_path):
    out = tmp_path / "terminated"
    process = start(dataset, out)
    try:
        wait_for_line(process, "epoch 0 [    1/2]")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    # the signal lands during step 2 or just before it starts: the step in flight is finished either way
    match = re.search(r"SIGTERM: stopped at epoch 0 batch (\d) \(step (\d)\); checkpoint written", stderr)
    assert match and match.group(1) == match.group(2) in ("1", "2") and "--resume" in stderr, stderr
    stopped = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert (stopped["epoch"], stopped["epoch_step"], stopped["step"]) == (0, int(match.group(1)), int(match.group(1)))
    metrics = out / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text()  # stopped before validating: no epoch line yet
    assert stopped["reader"]["states"] and stopped["reader"]["epoch_step"] == int(match.group(1))
    resumed = run_fresh(args(dataset, out, "--resume", str(out / "checkpoint.pth.tar")))
    assert_same_weights(final_weights(out), final_weights(reference))  # the same batches, nothing decoded again
    assert f"resuming epoch 0 at batch {match.group(1)}: restored DALI's reader state" in resumed.stderr
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["reader"] is None  # written after an epoch


def test_evaluate_prints_top1_and_top5_error(dataset, reference):
    output = run_fresh(args(dataset, reference, "-e", "--resume", str(reference / "model_best.pth.tar"),
                                 "--ten-crop")).stdout
    lines = [line for line in output.splitlines() if "top-1 error" in line]
    assert len(lines) == 2 and "(centre, 3 images)" in lines[0] and "(10-crop, 3 images)" in lines[1]
    assert all("top-5 error 0.00 %" in line for line in lines)  # 3 classes: the label is always in the top 5
