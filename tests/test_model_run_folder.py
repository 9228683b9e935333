"""The run folder (--out): checked before any work, locked while in use, not taken over by a new run, and a
failed write mid-run still leaves the epoch's checkpoint. model/run_folder.py."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from model.train import main
from tests.conftest import write_image_tree, write_lists
from tests.fake_data import install, write_tiny_lists

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600


def train(tmp_path: Path, out: Path, *extra: str):
    lists = write_tiny_lists(tmp_path / "lists")
    return CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(out),
                                     "--epochs", "1", "--lr", "0.001", *extra])


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("where", ["file_in_path", "proc", "sys"])
def test_an_unwritable_out_is_refused_before_any_step(tmp_path, monkeypatch, where):
    calls = install(monkeypatch)
    (tmp_path / "a_file").write_text("x")
    out = {"file_in_path": tmp_path / "a_file" / "run", "proc": Path("/proc"), "sys": Path("/sys")}[where]
    result = train(tmp_path, out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(error_lines(result)) == 1 and error_lines(result)[0].startswith(f"Error: --out {out}: ")
    assert calls == []  # no loader was built: nothing was trained or validated


def test_a_failed_metrics_write_mid_run_still_writes_the_checkpoint(tmp_path, monkeypatch):
    """metrics.jsonl turns into a folder during epoch 0: the epoch's line cannot be appended; the run ends
    in one line, and the epoch's checkpoint is written all the same."""
    from model import run as run_module
    from tests.fake_data import fake_make_loader

    out = tmp_path / "run"
    fake = fake_make_loader()

    def sabotaging_make_loader(cfg, split, shard_id=0, num_shards=1):
        if split == "train":
            (out / "metrics.jsonl").mkdir()
        return fake(cfg, split)

    monkeypatch.setattr(run_module, "make_loader", sabotaging_make_loader)
    result = train(tmp_path, out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(error_lines(result)) == 1 and "could not append to" in error_lines(result)[0]
    checkpoint = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 1)


class BadSecondBatch:
    """A training loader of 3 batches whose second holds a file the decoder cannot read."""

    def __init__(self, batch):
        self.batch = batch

    def __len__(self) -> int:
        return 3

    def __iter__(self):
        from pipeline.errors import InputError

        yield self.batch
        raise InputError("train/n1/x.JPEG: DALI could not read or decode this image")


def test_a_data_error_mid_epoch_keeps_the_steps_before_it(tmp_path, monkeypatch):
    from model import run as run_module
    from tests.fake_data import fake_make_loader

    fake = fake_make_loader()

    def make_loader(cfg, split, shard_id=0, num_shards=1):
        return BadSecondBatch(fake(cfg, split)[0]) if split == "train" else fake(cfg, split)

    monkeypatch.setattr(run_module, "make_loader", make_loader)
    out = tmp_path / "run"
    result = train(tmp_path, out)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert error_lines(result) == [f"Error: train/n1/x.JPEG: DALI could not read or decode this image; the 1 step "
                                   f"trained before it saved: fix the file (same list), then continue with "
                                   f"--resume {out}"]
    checkpoint = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["step"]) == (0, 1, 1)


def test_a_new_run_does_not_take_over_a_folder_with_a_checkpoint(tmp_path, monkeypatch):
    install(monkeypatch)
    out = tmp_path / "run"
    assert train(tmp_path, out).exit_code == 0
    first = (out / "metrics.jsonl").read_text()

    again = train(tmp_path, out)
    assert again.exit_code == 1 and len(error_lines(again)) == 1
    assert f"--out {out} already holds a run" in again.output and "--overwrite" in again.output
    elsewhere = tmp_path / "other"
    assert train(tmp_path, elsewhere).exit_code == 0
    foreign = train(tmp_path, out, "--resume", str(elsewhere / "checkpoint.pth.tar"), "--epochs", "2")
    assert foreign.exit_code == 1 and "holds another run's" in foreign.output
    assert (out / "metrics.jsonl").read_text() == first  # nothing of the old run was touched

    replaced = train(tmp_path, out, "--overwrite", "--seed", "5")
    assert replaced.exit_code == 0, replaced.output
    assert "--overwrite: removed the previous run's checkpoint.pth.tar, model_best.pth.tar, metrics.jsonl" in replaced.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0]
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["config"]["RunConfig"]["seed"] == 5
    assert not (out / ".lock").exists()  # released at the end


@pytest.fixture
def real_tree(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "tree"
    return root, write_lists(root, write_image_tree(root, {"train": 3, "val": 1}, seed=4), tmp_path / "lists")


def start(real_tree, out: Path, *extra: str) -> subprocess.Popen:
    root, lists = real_tree
    command = [sys.executable, "-m", "model.train", "--root", str(root), "--lists", str(lists), "--out", str(out),
               "-b", "4", "--workers", "1", "-p", "1", "--lr", "0.001", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder(real_tree, tmp_path):
    out = tmp_path / "run"
    first = start(real_tree, out, "--epochs", "50")
    try:
        deadline = time.monotonic() + TIMEOUT
        for line in first.stderr:  # the first step is done: the run is under way
            if "epoch 0 [    1/2]" in line or time.monotonic() > deadline:
                break
        second = start(real_tree, out, "--epochs", "1", "--max-steps", "1")
        _, stderr = second.communicate(timeout=TIMEOUT)
        assert second.returncode == 1, stderr
        lines = [line for line in stderr.strip().splitlines() if not line.startswith("device: ")]
        assert len(lines) == 1 and "Traceback" not in stderr
        assert lines[0].startswith(f"Error: --out {out} is in use by another run (pid {first.pid} on "
                                   f"{socket.gethostname()}, since ")
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the lock must not outlive it
        first.wait(TIMEOUT)
    finally:
        first.kill()
    assert (out / ".lock").exists()
    third = start(real_tree, out, "--overwrite", "--epochs", "1", "--max-steps", "1")
    _, stderr = third.communicate(timeout=TIMEOUT)
    assert third.returncode == 0, stderr
    assert not (out / ".lock").exists()
