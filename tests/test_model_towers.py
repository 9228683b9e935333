"""TowerAlexNet (model/towers.py) against the one-device grouped `AlexNet` from the same weights.

The reference is model/alexnet.py's `AlexNet`: grouped convolutions on one device, a separate code path
(no tensor is split, no exchange). Inputs are on the pipeline's scale (pixels minus the mean, |x| ~ 100),
where LRN changes the activations enough for a wrong cut between the towers to show.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from model.alexnet import AlexNet, build_model
from model.parallel import (
    init_parallel,
    load_optimizer_state_dict,
    load_state_dict,
    optimizer_state_dict,
    unwrap_state_dict,
    wrap_model,
)
from pipeline.errors import InputError
from model.train import main as train_main
from tests.conftest import requires_cuda, write_image_tree, write_lists

CLASSES = 10
BATCH = 2


def _reference(seed: int = 0, classes: int = CLASSES, strong_lrn: bool = False) -> AlexNet:
    """The one-device net; `strong_lrn` scales conv1 x10 so that LRN divides conv1's maps by ~2.3, not ~1.02
    (with the paper's N(0, 0.01) init LRN is nearly the identity, and would hide a wrong cut)."""
    torch.manual_seed(seed)
    net = AlexNet(num_classes=classes)
    if strong_lrn:
        with torch.no_grad():
            net.conv1.weight.mul_(10)
    return net


def _images(seed: int, batch: int = BATCH, size: int = 224) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 255 - 120


def _towers(reference: AlexNet, gpus: tuple[str, str] = ("cpu", "cpu")):
    ctx = init_parallel("towers", "cpu", gpus)
    return wrap_model(reference, ctx), ctx


def _joined_grads(towers) -> dict[str, torch.Tensor]:
    """Each parameter's gradient under the one-device name: tower 1's rows, then tower 2's."""
    grads = {}
    for name, half in towers.towers[0].named_parameters():
        other = towers.towers[1].get_parameter(name)
        grads[name] = torch.cat([half.grad.cpu(), other.grad.cpu()])
    return grads


def _check_equal(reference: AlexNet, gpus: tuple[str, str]) -> None:
    towers, ctx = _towers(reference, gpus)
    images, labels = _images(1), torch.tensor([3, 8])
    reference.eval(), towers.eval()
    with torch.no_grad():
        expected, got = reference(images), towers(images.to(ctx.device))
    assert got.device == ctx.device and got.shape == (BATCH, CLASSES)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-4)

    # Gradients in training mode with dropout off on both sides (their masks come from different draws).
    reference.train(), towers.train()
    reference.dropout.p = towers.dropout.p = 0.0
    F.cross_entropy(reference(images), labels).backward()
    F.cross_entropy(towers(images.to(ctx.device)), labels.to(ctx.device)).backward()
    got_grads = _joined_grads(towers)
    assert set(got_grads) == {name for name, _ in reference.named_parameters()}
    for name, param in reference.named_parameters():
        scale = param.grad.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(got_grads[name], param.grad, rtol=1e-3, atol=1e-4 * scale, msg=name)


def test_forward_and_all_gradients_equal_one_device_alexnet():
    _check_equal(_reference(strong_lrn=True), ("cpu", "cpu"))


def test_lrn_normalises_within_each_tower_by_the_papers_formula():
    """§3.3 by hand in NumPy, per tower: b = a / (k + alpha/n * sum over the n=5 nearest maps of a^2)^beta,
    the sum clipped at the tower's edges (the maps of the other tower never enter)."""
    import numpy as np

    from model.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, TowerLRN

    a = np.random.default_rng(0).normal(0, 30, size=(2, 8, 3, 3))
    expected = np.empty_like(a)
    half = a.shape[1] // 2
    for tower in range(2):
        maps = a[:, tower * half:(tower + 1) * half]
        for i in range(half):
            lo, hi = max(0, i - LRN_SIZE // 2), min(half, i + LRN_SIZE // 2 + 1)
            denom = (LRN_K + LRN_ALPHA / LRN_SIZE * (maps[:, lo:hi] ** 2).sum(axis=1)) ** LRN_BETA
            expected[:, tower * half + i] = maps[:, i] / denom
    got = TowerLRN()(torch.tensor(a, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a full-width LRN would mix the towers at maps 3 and 4: the test above tells them apart
    full = torch.nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)(torch.tensor(a)).numpy()
    assert np.abs(full[:, 3] - expected[:, 3]).max() > 1e-3


def test_bf16_autocast_logits_equal_one_device_alexnet():
    """Under autocast the towers send conv2's LRN output in bf16; conv3 casts it so anyway: same logits."""
    reference = _reference(seed=6)
    towers, _ = _towers(reference)
    reference.eval(), towers.eval()
    images = _images(7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = reference(images), towers(images)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2 * expected.abs().max().item())


def test_sgd_steps_give_the_same_losses_and_weights():
    reference = _reference(seed=2)
    towers, ctx = _towers(reference)
    for model in (reference, towers):
        model.dropout.p = 0.0
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
                  for m in (reference, towers)]
    for step in range(2):  # the second step sees the momentum and weight decay of the first
        images, labels = _images(10 + step), torch.tensor([step, step + 5])
        losses = []
        for model, optimizer in zip((reference, towers), optimizers):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6), step
    got = unwrap_state_dict(towers)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6, msg=key)

    # The momentum, saved in the one-device layout, is the one-device optimizer's own buffers.
    saved = optimizer_state_dict(optimizers[1], towers, ctx)
    own = optimizers[0].state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [g["params"] for g in own["param_groups"]]
    for index, buffers in own["state"].items():
        scale = buffers["momentum_buffer"].abs().max().item()
        torch.testing.assert_close(saved["state"][index]["momentum_buffer"], buffers["momentum_buffer"],
                                   rtol=1e-3, atol=1e-4 * scale)


def test_optimizer_state_round_trips_between_modes():
    reference = _reference(seed=3)
    towers, ctx = _towers(reference)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    F.cross_entropy(reference(_images(5)), torch.tensor([1, 2])).backward()
    optimizer.step()
    one_device = optimizer.state_dict()

    tower_optimizer = torch.optim.SGD(towers.parameters(), lr=0.01, momentum=0.9)
    load_optimizer_state_dict(tower_optimizer, one_device, towers, ctx)
    assert tower_optimizer.param_groups[0]["lr"] == 0.05
    fc8 = reference.fc8.weight.shape[0] // 2
    halves = [tower_optimizer.state[towers.towers[k]["fc8"].weight]["momentum_buffer"] for k in (0, 1)]
    torch.testing.assert_close(halves[0], one_device["state"][14]["momentum_buffer"][:fc8])
    torch.testing.assert_close(halves[1], one_device["state"][14]["momentum_buffer"][fc8:])
    back = optimizer_state_dict(tower_optimizer, towers, ctx)
    for index, buffers in one_device["state"].items():
        assert torch.equal(back["state"][index]["momentum_buffer"], buffers["momentum_buffer"])


def test_state_dict_keys_and_round_trip_between_modes():
    reference = _reference(seed=4, classes=5)  # odd: fc8 splits 3 + 2
    towers, ctx = _towers(reference)
    state = towers.state_dict()
    assert list(state) == list(reference.state_dict())
    assert [towers.towers[k]["fc8"].weight.shape[0] for k in (0, 1)] == [3, 2]

    other = _reference(seed=5, classes=5)
    load_state_dict(towers, other.state_dict())
    for key, value in other.state_dict().items():
        assert torch.equal(unwrap_state_dict(towers)[key], value), key
    fresh = AlexNet(num_classes=5)
    fresh.load_state_dict(unwrap_state_dict(towers))  # towers -> one device
    assert torch.equal(fresh.conv3.weight, other.conv3.weight)
    assert torch.equal(towers.towers[1]["conv3"].weight, other.conv3.weight[192:])

    partial = dict(other.state_dict())
    del partial["fc7.bias"]
    with pytest.raises(RuntimeError, match="fc7.bias"):
        towers.load_state_dict(partial)
    with pytest.raises(RuntimeError, match="size mismatch for fc8"):
        towers.load_state_dict(AlexNet(num_classes=4).state_dict())


def test_init_parallel_rejects_bad_tower_devices():
    with pytest.raises(InputError, match="two devices"):
        init_parallel("towers", "cpu", ("cpu",))
    with pytest.raises(InputError, match="unknown --parallel"):
        init_parallel("pipeline", "cpu", None)
    with pytest.raises(InputError, match="unknown device"):
        init_parallel("towers", "cpu", ("cpu", "tpu:7"))
    with pytest.raises(InputError, match="use -a alexnet"):
        wrap_model(build_model("alexnet_owt", 10), init_parallel("towers", "cpu", ("cpu", "cpu")))


def _no_tf32(monkeypatch) -> None:
    """The reference runs on the CPU in fp32; TF32 convolutions on the GPU would differ by ~1e-3."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.gpu
@pytest.mark.timeout(60)
@requires_cuda
def test_towers_on_one_gpu_equal_one_device_alexnet(monkeypatch):
    _no_tf32(monkeypatch)
    _check_equal(_reference(strong_lrn=True), ("cuda:0", "cuda:0"))


@pytest.mark.gpu
@pytest.mark.timeout(60)
@requires_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_towers_on_two_gpus_equal_one_device_alexnet(monkeypatch):
    _no_tf32(monkeypatch)
    _check_equal(_reference(strong_lrn=True), ("cuda:0", "cuda:1"))


def test_train_cli_towers_on_a_cpu_pair_writes_one_device_checkpoints(tmp_path):
    """`python -m model.train --parallel towers --gpus cpu,cpu` trains, and its checkpoint evaluates in mode none."""
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 2, "val": 1}), tmp_path / "lists")
    common = ["--root", str(root), "--lists", str(lists), "--workers", "1", "-b", "2"]
    out = tmp_path / "run"
    trained = CliRunner().invoke(train_main, [*common, "--out", str(out), "--parallel", "towers",
                                              "--gpus", "cpu,cpu", "--epochs", "1", "--max-steps", "1"])
    assert trained.exit_code == 0, trained.output
    checkpoint = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert list(checkpoint["state_dict"]) == list(AlexNet(num_classes=3).state_dict())
    momentum = checkpoint["optimizer"]["state"][0]["momentum_buffer"]
    assert momentum.shape == (96, 3, 11, 11)  # the one-device layout: resumable in any mode

    # Resume the towers run in mode none: weights and momentum load; one more step, then the epoch ends.
    resumed = CliRunner().invoke(train_main, [*common, "--out", str(tmp_path / "none"), "--resume",
                                              str(out / "checkpoint.pth.tar"), "--epochs", "1", "--max-steps", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(tmp_path / "none" / "checkpoint.pth.tar", weights_only=True)["step"] == 2
    assert "(centre, 3 images)" in CliRunner().invoke(train_main, [
        *common, "--out", str(tmp_path / "eval"), "-e", "--resume", str(out / "checkpoint.pth.tar")]).output
