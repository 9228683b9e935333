"""The learning-rate warm-up and the at-chance note (model/warmup.py), against rates and losses computed by hand."""
from __future__ import annotations

import math
import re

import torch
from click.testing import CliRunner

from model.engine import Trainer, train_step
from model.train import main
from model.warmup import ChanceWatch, Warmup, warmup_steps
from tests import fake_data


def test_warmup_is_linear_and_continues_from_the_steps_done():
    warm = Warmup(4)
    assert [warm.next_scale() for _ in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    resumed = Warmup(4, done=2)
    assert [resumed.next_scale() for _ in range(3)] == [0.75, 1.0, 1.0]
    assert [Warmup(0).next_scale() for _ in range(2)] == [1.0, 1.0]
    assert warmup_steps(1.0, 74) == 74 and warmup_steps(0.5, 74) == 37 and warmup_steps(0.001, 10) == 1
    assert warmup_steps(0.0, 74) == 0


def test_a_warmed_update_uses_the_scaled_rate_and_leaves_the_schedules_rate():
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 3)
    before = net.weight.detach().clone()
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 0])
    reference = torch.nn.Linear(5, 3)
    reference.load_state_dict(net.state_dict())
    torch.nn.functional.cross_entropy(reference(x), y).backward()
    trainer = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), torch.device("cpu"), warmup=Warmup(4))
    train_step(trainer, x, y)
    # Plain SGD: w <- w - (0.1 x 1/4) g
    torch.testing.assert_close(net.weight.detach(), before - 0.025 * reference.weight.grad)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1


def test_the_chance_note_comes_once_after_the_steps_and_a_departure_restarts_the_count(capsys):
    watch = ChanceWatch(10, steps=5)
    at_chance = torch.tensor(math.log(10) * 1.01)
    for _ in range(4):
        watch.add(at_chance)
    assert not watch.report()
    watch.add(torch.tensor(math.log(10) * 0.9))  # 10 % below chance: it learned something
    assert not watch.report() and watch.count == 0
    for _ in range(5):
        watch.add(at_chance)
    assert watch.report()
    for _ in range(5):
        watch.add(at_chance)
    assert not watch.report()  # once
    err = capsys.readouterr().err
    assert err.count("note: the training loss has stayed within 2% of ln(10) = 2.303") == 1


def progress_rates(output: str) -> list[float]:
    return [float(rate) for rate in re.findall(r"\] loss \S+ top-1 err\s+\S+% lr (\S+)", output)]


def test_model_train_warms_up_per_step_and_a_resumed_run_continues_the_warm_up(tmp_path, monkeypatch):
    """4 batches an epoch, --lr-warmup-epochs 1: rates 1/4 .. 4/4 of --lr; stopped after 2 steps and resumed,
    the run goes on at 3/4 and 4/4."""
    lists = fake_data.write_tiny_lists(tmp_path / "lists")
    fake_data.install(monkeypatch, batches=4)
    out = tmp_path / "run"
    common = ["--root", str(tmp_path), "--lists", str(lists), "--out", str(out), "-b", "2", "-p", "1",
              "--epochs", "1", "--lr", "0.001"]
    whole = CliRunner().invoke(main, common + ["--lr-warmup-epochs", "1", "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    assert progress_rates(whole.output) == [0.00025, 0.0005, 0.00075, 0.001]
    first = CliRunner().invoke(main, common + ["--lr-warmup-epochs", "1", "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    assert progress_rates(first.output) == [0.00025, 0.0005]
    resumed = CliRunner().invoke(main, common + ["--resume", str(out)])  # the warm-up comes from the checkpoint
    assert resumed.exit_code == 0, resumed.output
    assert progress_rates(resumed.output) == [0.00075, 0.001]


def test_model_train_says_once_that_the_loss_sits_at_chance_and_goes_on(tmp_path, monkeypatch):
    """Blank images and no dropout (the output cannot depend on the image) and a rate too small to move: 2 classes, loss ln 2
    throughout; with the window shortened to 3 steps the note comes once, and the run still trains every batch."""
    monkeypatch.setattr("model.warmup.CHANCE_STEPS", 3)
    lists = fake_data.write_tiny_lists(tmp_path / "lists")
    blank = [(torch.zeros(2, 3, 224, 224), torch.tensor([0, 1]))] * 4
    monkeypatch.setattr("model.run.make_loader", lambda cfg, split, shard_id=0, num_shards=1: blank)
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "-b", "2", "-p", "1", "--epochs", "2", "--lr", "1e-9", "--no-dropout"])
    assert result.exit_code == 0, result.output
    assert result.output.count("note: the training loss has stayed within 2% of ln(2) = 0.693") == 1
    assert len(progress_rates(result.output)) == 8  # both epochs' 4 steps
