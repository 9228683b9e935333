"""The paper's ablations as switches of `model.train`: which network and optimiser a run trains.

    --towers 1        §3.2 footnote's one-GPU net (paper: +1.7 / +1.2 % top-1 / top-5 error)
    --no-lrn          §3.3 no local response normalisation (+1.4 / +1.2 %)
    --pool plain      §3.4 2x2 stride 2 pooling instead of 3x3 stride 2 (+0.4 / +0.3 %)
    --no-dropout      §4.2 no dropout in fc6, fc7 ("substantial overfitting")
    --lighting-std 0  §4.1 no PCA lighting (over 1 % top-1)

The network switches are stored in every checkpoint (key "net"), so --resume, -e, model.predict and
`imagenet-tools visualize` rebuild the network a run trained; a flag that contradicts the checkpoint is
refused in one line, as is a combination that contradicts itself (`check_switches`).
"""
from __future__ import annotations

import dataclasses

from model.alexnet import NetConfig
from model.config import OptimConfig, RunConfig
from model.optim import decays_biases
from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.lighting import colour_stats

NET_FIELDS = tuple(field.name for field in dataclasses.fields(NetConfig))


def flag(name: str, value) -> str:
    """The model.train flag that sets a NetConfig field to `value`."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name} {value}"


def requested_net(run: RunConfig) -> dict:
    """The network switches given on the command line (RunConfig fields that are not None)."""
    return {name: getattr(run, name) for name in NET_FIELDS if getattr(run, name, None) is not None}


def net_entry(net: NetConfig) -> dict:
    """What a checkpoint stores under "net" (primitives only, for weights_only loading)."""
    return dataclasses.asdict(net)


def net_of_checkpoint(state: dict) -> NetConfig:
    """The network a checkpoint was trained as; checkpoints without "net" (older ones) are the paper's.

    Raises:
        InputError: a "net" entry that is not a valid NetConfig.
    """
    entry = state.get("net") or {}
    try:
        net = NetConfig(**{name: entry[name] for name in NET_FIELDS if name in entry})
        net.check()
    except (TypeError, ValueError) as error:
        raise InputError(f"checkpoint has an unusable 'net' entry {entry!r} ({error})") from None
    return net


def resolve_net(run: RunConfig, checkpoint: dict | None) -> NetConfig:
    """The network to build: the checkpoint's with --resume/-e (a switch that contradicts it is refused),
    else the paper's with the switches given."""
    requested = requested_net(run)
    if checkpoint is None:
        return NetConfig(**requested)
    saved = net_of_checkpoint(checkpoint)
    conflicts = [name for name, value in requested.items() if getattr(saved, name) != value]
    if conflicts:
        have = ", ".join(f"{name}={getattr(saved, name)!r}" for name in conflicts)
        raise InputError(f"{run.resume}: the checkpoint's network has {have}; a resumed or evaluated run keeps "
                         f"its checkpoint's network: drop {', '.join(flag(n, requested[n]) for n in conflicts)}")
    return saved


def resolve_decay_biases(optim: OptimConfig, checkpoint: dict | None, run: RunConfig) -> bool:
    """Whether biases are decayed: --wd-biases, or with --resume what the checkpoint's optimizer did (its
    parameter groups must match; one group: biases decayed, as every checkpoint before --wd-biases)."""
    if checkpoint is None or run.evaluate:
        return optim.decay_biases
    saved = decays_biases(checkpoint["optimizer"])
    if optim.decay_biases and not saved:
        raise InputError(f"{run.resume}: this run was trained without weight decay on biases; a resumed run "
                         "keeps its optimizer: drop --wd-biases")
    return saved


def check_switches(data: DataConfig, run: RunConfig) -> None:
    """Refuse, in one line, switches that contradict each other or have no effect."""
    given = requested_net(run)
    if run.towers == 1 and run.parallel == "towers":
        raise InputError("--towers 1 is the one-GPU net, --parallel towers splits the two-tower net over two "
                         "devices: drop one of them (--parallel ddp runs the one-GPU net on several GPUs)")
    if given and run.arch == "alexnet_owt":
        raise InputError(f"{', '.join(flag(n, v) for n, v in given.items())}: the paper's ablations "
                         "apply to -a alexnet; alexnet_owt is torchvision's fixed layout")
    # The PCA file, and a mean image if normalize is "image": checked before the run writes anything.
    colour_stats(data.pca, data.normalize, data.lighting_scale, data.mean_window)
    if data.lighting_rescale and data.pca_alpha_std == 0:
        raise InputError("--lighting-rescale divides by (1 + --lighting-std) for the colour noise, which "
                         "--lighting-std 0 turns off: drop one of them")
