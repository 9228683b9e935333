"""The paper's ablations as switches (model/variants.py): the networks they build, against hand-counted
parameters and a hand-written functional forward pass; their CLI rules; checkpoints that remember them."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from model.alexnet import AlexNet, NetConfig, build_model
from model.parallel import init_parallel, wrap_model
from model.towers import TowerAlexNet
from model.train import main
from pipeline.errors import InputError
from tests.conftest import write_image_tree, write_lists


def layer_params(kernels: int, size: int, inputs: int) -> int:
    return kernels * size * size * inputs + kernels


def test_one_gpu_net_has_the_footnotes_kernels():
    """§3.2's footnote: half the kernels in conv1-conv4; conv5 and the FC layers keep the two-GPU net's size,
    all of one GPU (so each layer reads every map of the one before)."""
    expected = {
        "conv1": layer_params(48, 11, 3), "conv2": layer_params(128, 5, 48), "conv3": layer_params(192, 3, 128),
        "conv4": layer_params(192, 3, 192), "conv5": layer_params(256, 3, 192),
        "fc6": 256 * 6 * 6 * 4096 + 4096, "fc7": 4096 * 4096 + 4096, "fc8": 4096 * 1000 + 1000,
    }
    net = build_model("alexnet", 1000, net=NetConfig(towers=1))
    for layer, count in expected.items():
        assert sum(p.numel() for p in getattr(net, layer).parameters()) == count, layer
    assert sum(p.numel() for p in net.parameters()) == 59_798_312  # the sum of the above, by hand
    assert net.conv2.groups == net.conv4.groups == net.conv5.groups == 1


def reference_forward(net: AlexNet, x: torch.Tensor, towers: int, lrn: bool, pool: str) -> torch.Tensor:
    """AlexNet in torch.nn.functional with `net`'s weights: LRN within each tower (or none), the pool asked for."""
    kernel, stride = (3, 2) if pool == "overlap" else (2, 2)

    def norm(y: torch.Tensor) -> torch.Tensor:
        if not lrn:
            return y
        parts = y.chunk(towers, dim=1)
        return torch.cat([F.local_response_norm(p, 5, alpha=1e-4, beta=0.75, k=2.0) for p in parts], dim=1)

    def conv(name: str, y: torch.Tensor, **kw) -> torch.Tensor:
        layer = getattr(net, name)
        return F.relu(F.conv2d(y, layer.weight, layer.bias, **kw))

    y = F.pad(x, (0, 3, 0, 3))
    y = F.max_pool2d(norm(conv("conv1", y, stride=4)), kernel, stride)
    y = F.max_pool2d(norm(conv("conv2", y, padding=2, groups=towers)), kernel, stride)
    y = conv("conv4", conv("conv3", y, padding=1), padding=1, groups=towers)
    y = torch.flatten(F.max_pool2d(conv("conv5", y, padding=1, groups=towers), kernel, stride), 1)
    y = F.relu(F.linear(y, net.fc6.weight, net.fc6.bias))
    y = F.relu(F.linear(y, net.fc7.weight, net.fc7.bias))
    return F.linear(y, net.fc8.weight, net.fc8.bias)


@pytest.mark.parametrize("towers,lrn,pool", [(2, True, "overlap"), (2, False, "plain"), (1, True, "overlap"),
                                             (1, False, "plain")])
def test_forward_equals_the_functional_reference(towers, lrn, pool):
    torch.manual_seed(0)
    net = build_model("alexnet", 5, init="kaiming", net=NetConfig(towers=towers, lrn=lrn, pool=pool)).eval()
    x = torch.randn(2, 3, 224, 224) * 50
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference_forward(net, x, towers, lrn, pool), rtol=1e-4, atol=1e-4)


def test_no_dropout_is_deterministic_in_training_mode():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224) * 50
    plain = build_model("alexnet", 5, init="kaiming", net=NetConfig(dropout=False))
    with torch.no_grad():
        first, second, evaluated = plain.train()(x), plain(x), plain.eval()(x)
        assert torch.equal(first, second) and torch.equal(first, evaluated)
        paper = build_model("alexnet", 5, init="kaiming").train()
        assert not torch.equal(paper(x), paper(x))  # the default keeps §4.2's dropout


def test_towers_mode_runs_the_ablations_and_refuses_the_one_gpu_net():
    torch.manual_seed(0)
    net = build_model("alexnet", 5, init="kaiming", net=NetConfig(lrn=False, pool="plain")).eval()
    towers = TowerAlexNet.from_alexnet(net, (torch.device("cpu"), torch.device("cpu"))).eval()
    x = torch.randn(2, 3, 224, 224) * 50
    with torch.no_grad():
        torch.testing.assert_close(towers(x), net(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="--towers 1 is the one-GPU net"):
        wrap_model(build_model("alexnet", 5, net=NetConfig(towers=1)), init_parallel("towers", "cpu", ("cpu", "cpu")))
    with pytest.raises(ValueError, match="applies to -a alexnet only"):
        build_model("alexnet_owt", 5, net=NetConfig(lrn=False))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 2, "val": 1}), tmp_path / "lists")
    return root, lists


def run_train(root: Path, lists: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--workers", "1", "-b", "2",
                                     "--lr", "0.001", *map(str, args)])


@pytest.mark.parametrize("args,message", [
    (["--towers", "1", "--parallel", "towers", "--gpus", "cpu,cpu"], "--towers 1 is the one-GPU net"),
    (["-a", "alexnet_owt", "--no-lrn"], "--no-lrn: the paper's ablations apply to -a alexnet"),
    (["--lighting-rescale", "--lighting-std", "0"], "--lighting-std 0 turns off"),
    (["--mean-window", "crop"], "--normalize mean subtracts no mean image"),
    (["--normalize", "image"], "normalize 'image' needs a pca.json with a mean image"),
])
def test_contradictions_are_refused_in_one_line(tiny, tmp_path, args, message):
    result = run_train(*tiny, "--out", tmp_path / "run", *args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "run").exists()


def test_checkpoints_remember_the_network_for_resume_evaluate_and_predict(tiny, tmp_path):
    from model.predict import main as predict_main
    from model.checkpoint import load_checkpoint, model_from

    root, lists = tiny
    out = tmp_path / "run"
    trained = run_train(root, lists, "--out", out, "--towers", "1", "--no-lrn", "--pool", "plain", "--no-dropout",
                        "--epochs", "1", "--max-steps", "1")
    assert trained.exit_code == 0, trained.output
    checkpoint = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert checkpoint["net"] == {"towers": 1, "lrn": False, "pool": "plain", "dropout": False}
    assert checkpoint["state_dict"]["conv1.weight"].shape == (48, 3, 11, 11)

    evaluated = run_train(root, lists, "--out", tmp_path / "e", "-e", "--resume", out / "checkpoint.pth.tar")
    assert evaluated.exit_code == 0 and "(centre, 3 images)" in evaluated.output, evaluated.output
    refused = run_train(root, lists, "--out", tmp_path / "e", "-e", "--resume", out / "checkpoint.pth.tar", "--lrn")
    assert refused.exit_code == 1 and "lrn=False" in refused.output and "drop --lrn" in refused.output
    resumed = run_train(root, lists, "--out", tmp_path / "r", "--resume", out / "checkpoint.pth.tar",
                        "--epochs", "1", "--max-steps", "2")
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(tmp_path / "r" / "checkpoint.pth.tar", weights_only=True)["net"] == checkpoint["net"]

    image = next((root / "val").glob("*/*.JPEG"))
    predicted = CliRunner().invoke(predict_main, [str(out / "checkpoint.pth.tar"), str(image),
                                                  "--classes", str(lists / "classes.tsv")])
    assert predicted.exit_code == 0 and predicted.output.count("%") == 3, predicted.output
    state = load_checkpoint(out / "checkpoint.pth.tar")
    model = model_from(state, out / "checkpoint.pth.tar")
    assert model.conv1.out_channels == 48 and isinstance(model.lrn, torch.nn.Identity)
    assert state["config"]["DataConfig"]["normalize"] == "mean"
