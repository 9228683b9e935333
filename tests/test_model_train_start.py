"""The default start learns where the paper's exact start spikes: 10 classes, mean-subtracted 0-255 inputs.

docs/training.md ("Starting on real photos") measured it on Imagenette at batch 128: with the paper's bias 1
the loss goes 3.1 -> 12 -> 31 in three steps, then fc7 dies and the loss sits at ln 10; with the default 0.1
it stays near ln 10 and leaves it. A test cannot hold photos: the same mechanism on generated images
(image-independent activations at bias 1, so fc8's update moves every image's logits together).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from model.alexnet import DEFAULT_BIAS_ONE, PAPER_BIAS_ONE, build_model
from model.config import RunConfig
from model.optim import make_sgd
from model.train import main
from tests import fake_data

CLASSES, BATCH, STEPS = 10, 32, 4


def batches(seed: int = 0):
    """Mean-subtracted 0-255-scale images (std ~60, as `--normalize image` gives) with class-dependent colour."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
        images = 60 * torch.randn(BATCH, 3, 224, 224, generator=generator)
        images[:, 0] += (labels.float() - 4.5).view(-1, 1, 1) * 8
        yield images, labels


def losses(bias_one: float) -> list[float]:
    torch.manual_seed(0)
    net = build_model("alexnet", CLASSES, bias_one=bias_one)
    optimizer = make_sgd(net, 0.01, 0.9, 5e-4)
    out = []
    for images, labels in batches():
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def test_the_default_bias_stays_near_chance_where_the_papers_spikes():
    chance = math.log(CLASSES)
    paper, default = losses(PAPER_BIAS_ONE), losses(DEFAULT_BIAS_ONE)
    assert max(paper) > 3 * chance, paper  # the spike of docs/training.md
    assert max(default) < 1.2 * chance, default


def test_model_train_defaults_to_the_bias_that_learns_and_keeps_the_papers_one_flag_away(tmp_path, monkeypatch):
    assert (DEFAULT_BIAS_ONE, PAPER_BIAS_ONE, RunConfig().bias_one) == (0.1, 1.0, 0.1)
    lists = fake_data.write_tiny_lists(tmp_path / "lists")
    fake_data.install(monkeypatch)
    for extra, expected in (([], 0.1), (["--bias-one", "1"], 1.0)):
        out = tmp_path / f"run{expected}"
        result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(out),
                                           "-b", "2", "--epochs", "1", "--lr", "0.001", *extra])
        assert result.exit_code == 0, result.output
        state = torch.load(out / "checkpoint.pth.tar", weights_only=True)
        assert state["config"]["RunConfig"]["bias_one"] == expected
        # the weights were initialised with it: fc7's bias has moved by at most one small step from it
        assert abs(state["state_dict"]["fc7.bias"].mean().item() - expected) < 0.01
