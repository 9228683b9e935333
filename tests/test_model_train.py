"""The training engine with in-test loaders (lists of tensors), and the CLI's answers to bad values.

Fast: a tiny linear model stands in for AlexNet wherever the network does not matter; references are NumPy.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from model import run as run_module
from model.engine import Trainer, evaluate, train_one_epoch
from model.metrics import Meter, TrainingDiverged, topk_correct
from model.train import main


class TinyNet(nn.Module):
    """Linear classifier on 3x4x4 inputs that remembers what it was fed."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(48, classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(torch.flatten(x, 1))


def batches(count: int, n: int = 4, views: int | None = None, classes: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = (n, views, 3, 4, 4) if views else (n, 3, 4, 4)
    return [(torch.randn(shape, generator=generator), torch.randint(0, classes, (n,), generator=generator))
            for _ in range(count)]


def trainer_for(net: nn.Module, lr: float = 0.1) -> Trainer:
    return Trainer(net, torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9), torch.device("cpu"))


def test_topk_correct_against_numpy():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    ranks = (-scores).argsort(axis=1)
    got = topk_correct(torch.from_numpy(scores), torch.from_numpy(labels), ks=(1, 3, 5, 9))
    for k, value in zip((1, 3, 5, 9), got):
        assert int(value) == int((ranks[:, :min(k, 7)] == labels[:, None]).any(axis=1).sum())


@pytest.mark.parametrize("views", [None, 10])
def test_evaluate_matches_numpy(views):
    torch.manual_seed(0)
    net = TinyNet()
    data = batches(3, n=5, views=views)
    loss, top1, top5, count = evaluate(trainer_for(net), data)
    weight, bias = net.fc.weight.detach().double().numpy(), net.fc.bias.detach().double().numpy()
    images = np.concatenate([b[0].double().numpy() for b in data])
    labels = np.concatenate([b[1].numpy() for b in data])
    logits = images.reshape(*images.shape[: 2 if views else 1], -1) @ weight.T + bias
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if views:  # §6: softmax averaged over the ten views
        probs = probs.mean(axis=1)
    ranks = (-probs).argsort(axis=1)
    assert count == 15
    assert loss == pytest.approx(-np.log(probs[np.arange(15), labels]).mean(), rel=1e-5)
    assert top1 == pytest.approx(100 * (ranks[:, 0] != labels).mean())
    assert top5 == pytest.approx(100 * (1 - (ranks[:, :5] == labels[:, None]).any(1).mean()))


def test_train_epoch_skips_finished_batches_and_stops_on_request():
    data = batches(5)
    net = TinyNet()
    meter = Meter(torch.device("cpu"))
    calls = []
    train_one_epoch(trainer_for(net), data, meter, epoch=0, skip=2, after_step=lambda done: calls.append(done) or done == 4,
                    log=False)
    assert calls == [3, 4]  # batches 3 and 4 (1-based) trained, then the callback stopped the epoch
    assert [torch.equal(seen, data[i][0]) for seen, i in zip(net.seen, (2, 3))] == [True, True]
    assert meter.values()[3] == 8


def test_nan_loss_stops_with_a_clear_message():
    data = batches(3)
    data[1] = (torch.full_like(data[1][0], float("nan")), data[1][1])
    with pytest.raises(TrainingDiverged, match="loss became nan .*last good checkpoint is kept"):
        train_one_epoch(trainer_for(TinyNet()), data, Meter(torch.device("cpu")), epoch=0, print_freq=100, log=False)


def test_epoch_clock_covers_the_training_only():
    """The images/s and data-wait fraction logged for an epoch exclude what runs after its last step (the
    validation): the clock train_one_epoch returns no longer moves."""
    clock = train_one_epoch(trainer_for(TinyNet()), batches(3), Meter(torch.device("cpu")), epoch=0, log=False)
    elapsed, rate = clock.elapsed(), clock.images_per_s()
    time.sleep(0.05)
    assert (clock.elapsed(), clock.images_per_s()) == (elapsed, rate) and clock.images == 12



def test_ten_views_are_evaluated_without_multiplying_the_batch():
    """§6's ten views of N images: the network sees at most N images at once, and the averaged softmax is
    unchanged (test_model_train.py checks it against NumPy)."""
    net = TinyNet()
    loss, top1, top5, count = evaluate(trainer_for(net), batches(3, n=5, views=10))
    assert count == 15 and max(seen.shape[0] for seen in net.seen) == 5 and len(net.seen) == 30


def test_evaluation_reports_progress_in_plain_lines(capsys):
    evaluate(trainer_for(TinyNet()), batches(3, n=2, views=10), label="10-crop", print_freq=1)
    lines = capsys.readouterr().err.split("\n")
    assert "\r" not in "".join(lines) and all(line.endswith(" img/s") for line in lines[:3])
    assert [line[:17] for line in lines[:3]] == [
        "10-crop [    1/3]", "10-crop [    2/3]", "10-crop [    3/3]"]
    assert lines[3:] == [""]


def test_training_progress_into_a_file_has_no_carriage_returns(capsys):
    train_one_epoch(trainer_for(TinyNet()), batches(3), Meter(torch.device("cpu")), epoch=0, print_freq=1)
    err = capsys.readouterr().err
    assert "\r" not in err and [line[:17] for line in err.splitlines()] == [
        "epoch 0 [    1/3]", "epoch 0 [    2/3]", "epoch 0 [    3/3]"]

# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("a.JPEG 0\nb.JPEG 1\n")
    (lists / "val.txt").write_text("a.JPEG 0\n")
    (lists / "classes.tsv").write_text("0\tn1\tone\n1\tn2\ttwo\n")
    return lists


@pytest.mark.parametrize("extra, message", [
    (["-b", "0"], "0 is not in the range x>=1"),
    (["--lr", "-0.1"], "-0.1 is not in the range x>0"),
    (["--epochs", "0"], "0 is not in the range x>=1"),
    (["--momentum", "1.5"], "1.5 is not in the range"),
    (["--device", "tpu"], "device 'tpu'"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--amp", "fp16"], "--amp fp16 needs a CUDA device"),
    (["-e"], "-e/--evaluate needs the checkpoint"),
    (["--resume-reread"], "--resume-reread applies to continuing a run"),
    (["--resume", "nowhere.pth.tar"], "nowhere.pth.tar: no such checkpoint"),
    (["--parallel", "towers"], "--parallel towers needs two devices"),
])
def test_bad_cli_values_give_one_line_and_nonzero_exit(tmp_path, lists_dir, extra, message):
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists_dir), "--out",
                                       str(tmp_path / "run"), *extra])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


@pytest.mark.parametrize("what", ["root", "lists", "classes"])
def test_missing_folders_and_files(tmp_path, lists_dir, what):
    root, lists = tmp_path, lists_dir
    if what == "root":
        root = tmp_path / "no_such_root"
    elif what == "lists":
        lists = tmp_path / "no_such_lists"
    else:
        (lists_dir / "classes.tsv").unlink()
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert {"root": "no_such_root", "lists": "no_such_lists", "classes": "classes.tsv"}[what] in result.output


def test_nan_during_a_run_keeps_the_last_good_checkpoint(tmp_path, lists_dir, monkeypatch):
    """Epoch 0 trains and checkpoints; epoch 1's batch is NaN: exit 1, the epoch-0 checkpoint stays."""
    generator = torch.Generator().manual_seed(0)
    good = [(torch.randn(2, 3, 224, 224, generator=generator), torch.tensor([0, 1]))]

    def fake_make_loader(cfg, split, shard_id=0, num_shards=1):
        if split == "train" and cfg.seed == 1:  # epoch 1 (seed + epoch)
            return [(torch.full((2, 3, 224, 224), float("nan")), torch.tensor([0, 1]))]
        return good

    monkeypatch.setattr(run_module, "make_loader", fake_make_loader)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists_dir), "--out", str(out),
                                       "--epochs", "3", "-b", "2", "--lr", "0.001"])
    assert result.exit_code == 1, result.output
    assert "training loss became nan" in result.output and "Traceback" not in result.output
    checkpoint = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0]


def test_resume_from_weights_of_another_shape_is_one_line(tmp_path, lists_dir):
    fake = {"epoch": 1, "step": 2, "arch": "alexnet", "num_classes": 2, "optimizer": {}, "scheduler": {},
            "state_dict": {"fc8.weight": torch.zeros(2, 4), "fc8.bias": torch.zeros(2)}}
    torch.save(fake, tmp_path / "odd.pth.tar")
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists_dir), "--out", str(tmp_path / "r"),
                                       "--resume", str(tmp_path / "odd.pth.tar")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "weights do not fit -a alexnet with 2 classes" in result.output
