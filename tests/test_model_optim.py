"""Weight decay on the weights only (cuda-convnet2 layer.cu:743, Caffe `decay_mult: 0`), --wd-biases to decay
the biases too: the optimizer a training session builds, and its update against §5's rule in NumPy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model.config import OptimConfig, RunConfig, ScheduleConfig
from model.engine import Trainer, train_step
from model.optim import make_sgd
from model.run import open_session, write_checkpoint
from model.variants import resolve_decay_biases
from pipeline.config import DataConfig
from pipeline.errors import InputError
from tests.conftest import NumpySgd

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def groups_by_name(session) -> list[tuple[set[str], float]]:
    names = {id(p): name for name, p in session.net.named_parameters()}
    return [({names[id(p)] for p in group["params"]}, group["weight_decay"])
            for group in session.trainer.optimizer.param_groups]


@pytest.mark.parametrize("parallel", ["none", "towers"])
def test_a_session_decays_the_weights_and_not_the_biases(tmp_path, parallel):
    gpus = ("cpu", "cpu") if parallel == "towers" else None
    session = open_session(DataConfig(root=tmp_path), OptimConfig(), ScheduleConfig(epochs=1),
                           RunConfig(out=tmp_path / "run", parallel=parallel, gpus=gpus))
    (weights, weight_decay), (biases, bias_decay) = groups_by_name(session)
    prefixes = [""] if parallel == "none" else ["towers.0.", "towers.1."]
    assert weights == {f"{p}{layer}.weight" for p in prefixes for layer in LAYERS} and weight_decay == 5e-4
    assert biases == {f"{p}{layer}.bias" for p in prefixes for layer in LAYERS} and bias_decay == 0.0


def test_wd_biases_decays_every_parameter(tmp_path):
    session = open_session(DataConfig(root=tmp_path), OptimConfig(decay_biases=True), ScheduleConfig(epochs=1),
                           RunConfig(out=tmp_path / "run"))
    ((names, decay),) = groups_by_name(session)
    assert len(names) == 16 and decay == 5e-4


@pytest.mark.parametrize("decay_biases", [False, True])
def test_two_sgd_steps_follow_the_rule_in_numpy(decay_biases):
    """v <- m v - wd lr w - lr g; w <- w + v, with wd = 0 for biases unless decay_biases (a large wd, so a
    wrong rule for either kind of parameter shows)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        for module in (net[0], net[3]):
            module.bias.uniform_(-1, 1)  # biases far from 0, so their decay would move them visibly
    lr, momentum, wd = 0.1, 0.9, 0.05
    trainer = Trainer(net, make_sgd(net, lr, momentum, wd, decay_biases), torch.device("cpu"))
    by_hand = NumpySgd(net, lr, momentum, lambda name: wd if (name.endswith("weight") or decay_biases) else 0.0)
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        images, labels = torch.randn(4, 3, 8, 8, generator=generator), torch.tensor([0, 1, 2, 1])
        by_hand.step(images, labels)
        train_step(trainer, images, labels)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.detach().double().numpy() - by_hand.initial[name], by_hand.displacement(name),
                                   rtol=1e-4, atol=1e-6, err_msg=name)


def test_resume_keeps_the_checkpoints_grouping(tmp_path):
    """A checkpoint with one parameter group (every checkpoint before --wd-biases, or a --wd-biases run)
    resumes decaying its biases; --wd-biases on a run that did not decay them is refused."""
    session = open_session(DataConfig(root=tmp_path), OptimConfig(decay_biases=True), ScheduleConfig(epochs=1),
                           RunConfig(out=tmp_path / "old"))
    write_checkpoint(session, None)
    resume = RunConfig(out=tmp_path / "new", resume=tmp_path / "old" / "checkpoint.pth.tar")
    resumed = open_session(DataConfig(root=tmp_path), OptimConfig(), ScheduleConfig(epochs=1), resume)
    assert len(resumed.trainer.optimizer.param_groups) == 1 and resumed.optim.decay_biases
    two_groups = {"optimizer": {"param_groups": [{}, {}]}}
    with pytest.raises(InputError, match="drop --wd-biases"):
        resolve_decay_biases(OptimConfig(decay_biases=True), two_groups, resume)
    assert resolve_decay_biases(OptimConfig(), two_groups, resume) is False
