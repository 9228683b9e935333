"""The networks against the paper's numbers (shared PAPER.md §3, §5) and the optimiser against §5's update rule."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.alexnet import AlexNet, AlexNetOWT, build_model
from model.engine import Trainer, train_step
from tests.conftest import NumpySgd

# PAPER.md §3, copied from the paper's accounting (not computed from the code).
PAPER_PARAMS = {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
                "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
PAPER_NEURONS = {"conv1": 290_400, "conv2": 186_624, "conv3": 64_896, "conv4": 64_896, "conv5": 43_264,
                 "fc6": 4096, "fc7": 4096, "fc8": 1000}
LAYERS = tuple(PAPER_PARAMS)


@pytest.fixture(scope="module")
def paper_net() -> AlexNet:
    torch.manual_seed(0)
    return AlexNet(num_classes=1000)


def test_parameter_counts_match_the_paper(paper_net):
    for layer, expected in PAPER_PARAMS.items():
        assert sum(p.numel() for p in getattr(paper_net, layer).parameters()) == expected, layer
    assert sum(p.numel() for p in paper_net.parameters()) == 60_965_224
    assert sum(p.numel() for p in AlexNetOWT(1000).parameters()) == 61_100_840


def test_neuron_counts_and_conv1_is_55x55(paper_net):
    shapes = {}
    hooks = [getattr(paper_net, layer).register_forward_hook(
        lambda module, inputs, output, name=layer: shapes.__setitem__(name, tuple(output.shape[1:])))
        for layer in LAYERS]
    try:
        with torch.no_grad():
            out = paper_net.eval()(torch.zeros(1, 3, 224, 224))
    finally:
        for hook in hooks:
            hook.remove()
    assert shapes["conv1"] == (96, 55, 55)
    for layer, expected in PAPER_NEURONS.items():
        assert int(np.prod(shapes[layer])) == expected, layer
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("arch", ["alexnet", "alexnet_owt"])
def test_output_and_fc7_shapes(arch):
    net = build_model(arch, num_classes=7).eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 224, 224)
        assert net(x).shape == (2, 7)
        assert net.fc7_features(x).shape == (2, 4096)
    if arch == "alexnet":  # the paper's 227 input gives the same result as 224 padded right/bottom
        padded = F.pad(x, (0, 3, 0, 3))
        with torch.no_grad():
            assert torch.equal(net(x), net(padded))


def test_paper_initialisation_statistics(paper_net):
    for layer in LAYERS:
        module = getattr(paper_net, layer)
        weights = module.weight.detach().double().numpy().ravel()
        # std of a sample of n N(0, 0.01) draws is within a few 0.01/sqrt(2n) of 0.01
        tolerance = 6 * 0.01 / np.sqrt(2 * weights.size)
        assert abs(weights.std() - 0.01) < tolerance, layer
        assert abs(weights.mean()) < 6 * 0.01 / np.sqrt(weights.size), layer
        expected_bias = 1.0 if layer in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert np.all(module.bias.detach().numpy() == expected_bias), layer
    caffe = AlexNet(num_classes=10, bias_one=0.1)
    assert torch.all(caffe.fc6.bias == 0.1) and torch.all(caffe.conv1.bias == 0)


def test_sgd_step_is_the_papers_update_rule():
    """Two steps of train_step equal v <- 0.9 v - 0.0005 lr w - lr g; w <- w + v, done by hand in NumPy."""
    torch.manual_seed(1)
    net = AlexNet(num_classes=3).eval()  # eval: no dropout, so the reference sees the same function
    lr, momentum, wd = 0.01, 0.9, 5e-4
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    trainer = Trainer(net, optimizer, torch.device("cpu"))
    by_hand = NumpySgd(net, lr, momentum, lambda name: wd)
    generator = torch.Generator().manual_seed(2)
    for _ in range(2):
        images = torch.randn(2, 3, 224, 224, generator=generator) * 50
        labels = torch.tensor([0, 2])
        by_hand.step(images, labels)
        train_step(trainer, images, labels)
    for name, p in net.named_parameters():
        # compare the displacement over the two steps (the weights themselves would hide a wrong update)
        got = p.detach().double().numpy() - by_hand.initial[name]
        expected = by_hand.displacement(name)
        assert np.abs(expected).max() > 0, name
        # float32 weights hold the result: allow a few units in the last place of the weight itself
        ulps = 4 * np.spacing(np.abs(by_hand.initial[name]).astype(np.float32)).astype(np.float64)
        tolerance = 1e-3 * np.abs(expected) + 1e-4 * np.abs(expected).max() + ulps
        assert np.all(np.abs(got - expected) <= tolerance), name


def test_kaiming_init_statistics():
    """--init kaiming: N(0, 2 / fan_in) for conv1..fc7 (fan_in = in/groups x kernel area), fc8 N(0, 0.01), biases 0."""
    import math

    torch.manual_seed(0)
    net = build_model("alexnet", 10, init="kaiming")
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(net, name)
        weight = layer.weight.detach().double()
        fan_in = weight[0].numel()
        expected = 0.01 if name == "fc8" else math.sqrt(2.0 / fan_in)
        assert abs(weight.std().item() / expected - 1) < 0.05, name
        assert abs(weight.mean().item()) < 0.05 * expected, name
        assert torch.count_nonzero(layer.bias) == 0, name


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="unknown init"):
        build_model("alexnet", 10, init="xavier")
