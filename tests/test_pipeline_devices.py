"""One --device for every command (pipeline/devices.py): auto|cpu|cuda|cuda:N, default auto (CUDA when torch
sees a GPU), gpu read as cuda, the choice printed first. Every command's default is run here on a "machine"
with and without CUDA (torch.cuda.is_available patched), up to the call that would start its work."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pipeline import devices
from pipeline.errors import InputError
from tests.conftest import write_image_tree, write_lists

COMMANDS = ("model.train", "model.predict", "compute-pca", "preview", "bench", "ablate", "demo", "selftest")


class Started(InputError):
    """Raised where a command's real work would start (the dry path's end)."""


@pytest.fixture
def machine(monkeypatch, request):
    """A machine with one CUDA device (param True) or none, as torch sees it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: request.param)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if request.param else 0)
    return request.param


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("devices") / "tree"
    return root, write_lists(root, write_image_tree(root, {"train": 1, "val": 1}, seed=1), root.parent / "lists")


def stop_at(monkeypatch, target: str, seen: dict, pick) -> None:
    """Replace `target` (module:attribute) by a function that records what `pick` takes from its arguments."""
    module, name = target.split(":")

    def started(*args, **kwargs):
        seen.update(pick(*args, **kwargs))
        raise Started("started")

    monkeypatch.setattr(f"{module}.{name}", started)


def dry_run(name: str, monkeypatch, data, tmp_path) -> tuple[dict, str]:
    """Run command `name` with its default --device until its work would start; (what it passed on, stderr)."""
    root, lists = data
    seen: dict = {}
    if name == "model.train":
        from model.train import main
        stop_at(monkeypatch, "model.train:open_session", seen, lambda data_cfg, optim, schedule, run: {"device": run.device})
        args = ["--root", root, "--lists", lists, "--out", tmp_path / "run"]
    elif name == "model.predict":
        from model.predict import main

        class Net:
            def to(self, device):
                seen["device"] = str(device)
                raise Started("started")

        monkeypatch.setattr("model.predict.load_checkpoint", lambda path, num_classes: {"config": {}})
        monkeypatch.setattr("model.predict.model_from", lambda state, path: Net())
        args = ["ckpt.pth.tar", "a.JPEG", "--classes", lists / "classes.tsv"]
    elif name == "compute-pca":
        from tools.compute_pca import main
        stop_at(monkeypatch, "tools.compute_pca:compute_pca", seen,
                lambda *a, device_id, **k: {"device": a[6], "backend": a[7], "device_id": device_id})
        args = ["--list", lists / "train.txt", "--root", root, "--out", tmp_path / "pca.json"]
    elif name == "preview":
        from tools.preview import main
        stop_at(monkeypatch, "tools.preview:run_exposed", seen, lambda cfg, *a: {"device": cfg.device, "device_id": cfg.device_id})
        args = [root, lists / "train.txt", "--out", tmp_path / "p.png"]
    elif name == "bench":
        from tools.bench import main
        stop_at(monkeypatch, "tools.bench:run_bench", seen, lambda options, **k: {"device": options.device})
        args = ["--root", root, "--lists", lists, "--batch-size", "1"]
    elif name == "ablate":
        from tools.ablate import main
        stop_at(monkeypatch, "tools.ablation.run:run_ablation", seen, lambda plan, *a: {"device": plan.device})
        args = ["--root", root, "--lists", lists, "--out", tmp_path / "abl", "--epochs", "1"]
    elif name == "demo":
        from tools.demo import main

        class Stages:
            def __init__(self, *args, **kwargs):
                pass

            def tool(self, stage, command, *args):
                seen["device"] = args[args.index("--device") + 1] if "--device" in args else None
                if stage == "pca":
                    raise Started("started")

            def close(self):
                pass

        monkeypatch.setattr("tools.demo_run.run.Stages", Stages)
        args = ["--out", tmp_path / "demo"]
    else:
        from tools.selftest import main
        stop_at(monkeypatch, "tools.checkup.run:run_stage", seen, lambda spec, runner, settings, *a: {"device": settings.device})
        args = ["--out", tmp_path / "st", "--quick"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1 and "Error: started" in result.output, result.output
    return seen, result.stderr


@pytest.mark.parametrize("machine", [False, True], indirect=True, ids=["no-cuda", "cuda"])
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_defaults_to_auto_and_says_where_it_runs(name, machine, monkeypatch, data, tmp_path):
    seen, stderr = dry_run(name, monkeypatch, data, tmp_path)
    said = "auto: torch sees 1 CUDA device" if machine else "auto: torch sees no CUDA device"
    assert stderr.splitlines()[0] == f"device: {'cuda' if machine else 'cpu'} ({said})"
    # What each command passes on: torch's name, or DALI's ("gpu" with device_id 0) for a graph.
    expected = {
        "compute-pca": {"device": "gpu", "backend": "dali", "device_id": 0} if machine else
                       {"device": "cpu", "backend": "pil", "device_id": None},
        "preview": {"device": "gpu", "device_id": 0} if machine else {"device": "cpu", "device_id": None},
        "model.predict": {"device": "cuda" if machine else "cpu"},
        "selftest": {"device": "gpu" if machine else "cpu"},
    }.get(name, {"device": "cuda" if machine else "cpu"})
    assert seen == expected


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_offers_the_same_device_option(name):
    import importlib

    module = {"model.train": "model.train", "model.predict": "model.predict"}.get(name, f"tools.{name.replace('-', '_')}")
    command = importlib.import_module(module).main
    [option] = [p for p in command.params if p.name == "device"]
    assert option.default == "auto" and option.help.startswith(devices.DEVICE_HELP)


@pytest.mark.parametrize("machine", [True], indirect=True)
@pytest.mark.parametrize("asked, name, index, line", [
    ("gpu", "cuda", 0, "device: cuda (--device gpu)"),
    ("GPU:0", "cuda:0", 0, "device: cuda:0 (--device GPU:0)"),
    ("cuda", "cuda", 0, "device: cuda (--device cuda)"),
    ("cpu", "cpu", None, "device: cpu (--device cpu)"),
    ("auto", "cuda", 0, "device: cuda (auto: torch sees 1 CUDA device)"),
])
def test_names_and_synonyms(machine, asked, name, index, line):
    device = devices.resolve_device(asked)
    assert (device.name, device.index, device.line()) == (name, index, line)
    assert device.dali == ("cpu" if name == "cpu" else "gpu")


@pytest.mark.parametrize("machine", [False], indirect=True)
@pytest.mark.parametrize("asked, words", [
    ("tpu", "unknown device 'tpu': use auto, cpu, cuda or cuda:N"),
    ("cuda", "--device cuda: torch sees no CUDA device here; use --device cpu or auto"),
    ("gpu:1", "--device gpu:1: torch sees no CUDA device here"),
])
def test_bad_or_missing_devices_are_one_line(machine, asked, words):
    with pytest.raises(InputError, match="^" + words.replace("(", r"\(")):
        devices.resolve_device(asked)


@pytest.mark.parametrize("machine", [True], indirect=True)
def test_a_gpu_index_past_the_last_is_refused(machine):
    with pytest.raises(InputError, match=r"--device cuda:1: torch sees only 1 CUDA device \(cuda:0 to cuda:0\)"):
        devices.resolve_device("cuda:1")


def test_only_rank_0_announces(monkeypatch, capsys):
    device = devices.Device("cpu", "cpu", 0)
    monkeypatch.setenv("RANK", "1")
    devices.announce(device)
    monkeypatch.setenv("RANK", "0")
    devices.announce(device)
    assert capsys.readouterr().err == "device: cpu (--device cpu)\n"
