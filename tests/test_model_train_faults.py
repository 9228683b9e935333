"""model.train against bad input and faults: non-finite flags, strict JSON metrics, a batch larger than the
training set, the first validated epoch as model_best, the epoch line's wording, the --workers default.
(The engine's 10-crop memory and progress lines: test_model_train.py.)"""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from click.testing import CliRunner

from model import run as run_module
from model import run_log
from model.metrics import EpochClock
from model.run_log import append_metrics, epoch_record
from model.train import main
from tests.conftest import write_image_tree, write_lists
from tests.fake_data import install, write_tiny_lists


def train(tmp_path, *extra: str):
    lists = write_tiny_lists(tmp_path / "lists")
    return CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                     "--epochs", "1", *extra])


@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"), ("--wd", "inf"),
                                         ("--wd", "nan"), ("--bias-one", "nan"), ("--bias-one", "-inf")])
def test_non_finite_numbers_are_refused(tmp_path, monkeypatch, flag, value):
    calls = install(monkeypatch)
    result = train(tmp_path, flag, value)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output
    assert f"Invalid value for '{flag}" in errors[0] and f"'{value}' is not a finite number" in errors[0]
    assert calls == [] and not (tmp_path / "run").exists()


def test_metrics_lines_are_strict_json_whatever_the_values(tmp_path):
    """JSON has no NaN or Infinity: a value that is not a finite number is written as null."""
    nan, inf = math.nan, math.inf
    append_metrics(tmp_path, epoch_record(0, nan, (nan, inf, 1.0), (2.0, nan, -inf, 3), None, EpochClock()))

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    record = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert record["lr"] is None and record["train_loss"] is None and record["train_top1_err"] is None
    assert record["train_top5_err"] == 1.0 and record["val_loss"] == 2.0 and record["val_top5_err"] is None


def test_a_batch_larger_than_the_training_set_is_one_line(tmp_path):
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 3, "val": 1}), tmp_path / "lists")  # 9 training images
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "-b", "64", "--workers", "1"])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and "Traceback" not in result.output and len(errors) == 1
    assert errors[0].startswith(f"Error: -b 64 is more than the training images (9 in {lists / 'train.txt'})")
    assert not (tmp_path / "run" / "checkpoint.pth.tar").exists()


def test_the_first_validated_epoch_is_a_best_even_at_0_percent(tmp_path, monkeypatch):
    install(monkeypatch)
    monkeypatch.setattr(run_module, "evaluate", lambda trainer, loader, **kwargs: (9.0, 100.0, 100.0, 2))
    result = train(tmp_path, "--lr", "0.001")
    assert result.exit_code == 0, result.output
    best = torch.load(tmp_path / "run" / "model_best.pth.tar", weights_only=True)
    assert (best["epoch"], best["best_acc1"]) == (1, 0.0)


def test_the_epoch_line_calls_errors_errors():
    record = epoch_record(0, 0.01, (2.5, 100.0, 40.0), (2.0, 66.67, 0.0, 3), None, EpochClock())
    line = run_log.record_line(record)
    assert "train loss 2.5000 top-1 err 100.00% top-5 err 40.00%" in line
    assert "val loss 2.00 top-1 err 66.67% top-5 err 0.00%" in line


def test_workers_default_to_the_usable_cpus(monkeypatch):
    from pipeline.processes import usable_cpus

    default = next(param.default for param in main.params if param.name == "workers")
    assert default == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes share this node's CPUs
    assert usable_cpus() == 3


def no_val_lists(tmp_path):
    """A tiny tree with train/ only (one image per class) and its lists, as prepare writes them: no val.txt."""
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 1}, seed=4), tmp_path / "lists")
    assert not (lists / "val.txt").exists()
    return root, lists


def test_training_without_a_validation_set(tmp_path):
    """Lists without val.txt (prepare found no val/): model.train says so once and trains (real images, the PIL
    loader), a checkpoint every epoch, no model_best, metrics without validation values."""
    root, lists = no_val_lists(tmp_path)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(out), "--epochs", "2",
                                       "-b", "2", "--schedule", "step", "--no-dali", "--workers", "1", "--lr", "0.001"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "val.txt" in line]
    assert notes == [f"note: --lists {lists} has no val.txt (prepare found no validation set): training without "
                     "validation (a checkpoint every epoch, no model_best.pth.tar)"]
    epochs = [line for line in result.output.splitlines() if line.startswith("epoch ") and "| lr" in line]
    assert len(epochs) == 2 and all("| no validation |" in line for line in epochs)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["val_loss"], r["val_top1_err"], r["val_top5_err"]) for r in records] == \
        [(0, None, None, None), (1, None, None, None)]
    state = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert (state["epoch"], state["step"], state["best_acc1"]) == (2, 2, 0.0)
    assert not (out / "model_best.pth.tar").exists()


@pytest.mark.parametrize("extra, words", [
    ([], "and --schedule plateau lowers the rate when validation stops improving; train without validation with "
         "--schedule step (lr/10 every --step-size epochs), or add val/ to the tree and run prepare again"),
    (["--schedule", "step", "--ten-crop"], "and --ten-crop scores the validation set; drop --ten-crop"),
])
def test_what_needs_validation_is_refused_without_val_txt(tmp_path, monkeypatch, extra, words):
    calls = install(monkeypatch)
    root, lists = no_val_lists(tmp_path)
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "--epochs", "1", *extra])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.strip() and not line.startswith("device: ")] == [
        f"Error: --lists {lists} has no val.txt (prepare found no validation set), {words}"]
    assert calls == [] and not (tmp_path / "run").exists()


def test_evaluate_without_val_txt_is_one_line(tmp_path, monkeypatch):
    install(monkeypatch)
    root, lists = no_val_lists(tmp_path)
    trained = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                        "--epochs", "1", "--schedule", "step"])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "-e", "--resume",
                                       str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.strip() and not line.startswith("device: ")] == [
        f"Error: -e: --lists {lists} has no val.txt (prepare found no validation set), so there is nothing to "
        "evaluate on; give the lists of a tree with val/ images"]


@pytest.mark.slow
def test_sigterm_during_ten_crop_evaluation_says_what_stopped(tmp_path):
    """issue 20: `-e --ten-crop` killed by SIGTERM ended with no line at all."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 1, "val": 4}, seed=6), tmp_path / "lists")
    common = [sys.executable, "-m", "model.train", "--root", str(root), "--lists", str(lists), "-b", "1",
              "--workers", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    trained = subprocess.run([*common, "--out", str(tmp_path / "run"), "--epochs", "1", "--max-steps", "1",
                              "--lr", "0.001"], capture_output=True, text=True, cwd=repo, env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    checkpoint = tmp_path / "run" / "checkpoint.pth.tar"
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    evaluation = subprocess.Popen([*common, "-e", "--resume", str(checkpoint), "--ten-crop", "-p", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo, env=env)
    try:
        for line in evaluation.stderr:  # the 10-crop pass is under way (12 images, one a step)
            if "10-crop" in line:
                evaluation.send_signal(signal.SIGTERM)
                break
        rest = evaluation.stderr.read()
        evaluation.wait(timeout=120)
    finally:
        evaluation.kill()
    assert evaluation.returncode == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1] == (f"SIGTERM: stopped evaluating {checkpoint} before the end; nothing was "
                                             "written (-e writes no file)")
    assert "Traceback" not in rest and sorted(p.name for p in (tmp_path / "run").iterdir()) == before
