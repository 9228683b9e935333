"""What a training run needs besides the data, as frozen dataclasses built once from the CLI.

One dataclass per concern (PAPER.md §5 for the numbers): the optimiser, the learning-rate schedule,
and the run itself (devices, precision, where files go). They are passed explicitly, never global;
`as_primitives` turns them into the plain dict a checkpoint stores (weights_only=True can load it).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# §5: SGD, batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 for all layers.
PAPER_LR = 0.01
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 5e-4
PAPER_BATCH_SIZE = 128
PAPER_EPOCHS = 90
# §5: the learning rate was divided by 10 when the validation error stopped improving, three times.
LR_DROP_FACTOR = 0.1
MAX_LR_DROPS = 3
# pytorch/examples imagenet: lr x 0.1 every 30 epochs (the --schedule step alternative).
STEP_SIZE_EPOCHS = 30

SCHEDULES = ("plateau", "step")
AMP_MODES = ("off", "bf16", "fp16")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum and weight decay (§5).

    Attributes:
        lr: initial learning rate.
        momentum: momentum of the update v <- m v - wd lr w - lr dL/dw.
        weight_decay: L2 coefficient of the weights.
        decay_biases: also decay the biases (--wd-biases); the authors' code does not (model/optim.py).
    """

    lr: float = PAPER_LR
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY
    decay_biases: bool = False


@dataclass(frozen=True)
class ScheduleConfig:
    """How the learning rate falls.

    Attributes:
        kind: "plateau" (the paper: lr/10 when val top-1 error has not improved for `patience` epochs,
            at most `max_drops` times) or "step" (lr/10 every `step_size` epochs).
        epochs: epochs to train.
        patience: plateau only: epochs without improvement before a drop.
        max_drops: plateau only: how many drops at most.
        step_size: step only: epochs between drops.
        warmup_epochs: the rate rises linearly from lr / W to lr over the first W = warmup_epochs x steps
            per epoch updates (model/warmup.py); 0: none (the paper).
    """

    kind: Literal["plateau", "step"] = "plateau"
    epochs: int = PAPER_EPOCHS
    patience: int = 3
    max_drops: int = MAX_LR_DROPS
    step_size: int = STEP_SIZE_EPOCHS
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    """Everything else about one run.

    Attributes:
        arch: "alexnet" (the paper's) or "alexnet_owt" (torchvision's layout); None: the resumed
            checkpoint's, else "alexnet".
        out: the run folder (checkpoint.pth.tar, model_best.pth.tar, metrics.jsonl).
        classes: classes.tsv (its row count is the number of classes).
        device: "cpu", "cuda" or "cuda:N".
        amp: "off", "bf16" (autocast) or "fp16" (autocast + GradScaler).
        channels_last: NHWC memory format for the model and its inputs.
        compile: torch.compile the model.
        seed: seeds torch, the data order and the augmentations; epoch e uses seed + e.
        print_freq: a progress line every this many steps.
        max_steps: stop after this many optimiser steps in total (None: run all epochs).
        checkpoint_every: also write checkpoint.pth.tar every N steps inside an epoch (None: per epoch only).
        resume: checkpoint to continue from (or, with evaluate, to evaluate).
        evaluate: evaluate `resume` on the validation list and exit.
        ten_crop: also report 10-crop validation error (§6).
        bias_one: the constant bias of conv2, conv4, conv5, fc6, fc7 at init (the paper's 1.0 is
            `--bias-one 1`; the default is Caffe's 0.1: model/alexnet.py DEFAULT_BIAS_ONE).
        init: "paper" (§5: N(0, 0.01), constant biases) or "kaiming" (model/alexnet.py INITS).
        parallel: "none", "towers" or "ddp" (model/parallel.py).
        gpus: the two towers' devices for parallel="towers".
        towers, lrn, pool, dropout: the paper's ablations (model.alexnet.NetConfig, model/variants.py);
            None: the checkpoint's with --resume or -e, else the paper's (2, True, "overlap", True).
        overwrite: a new run may replace the run that `out` holds (its checkpoints and metrics).
        accept_pca_change: --resume/-e go on with other colour statistics than the checkpoint records
            (model/provenance.py); refused otherwise.
        reread: --resume mid-epoch reads the epoch's trained batches again and drops them, rather than
            restoring the DALI reader state the checkpoint stores (model/reader_state.py).
        given: the flags typed on the command line (click parameter names); with `resume` the others
            take the checkpoint's values (model/resume.py).
    """

    arch: str | None = None
    out: Path = Path("runs/alexnet")
    classes: Path | None = None
    device: str = "cpu"
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    print_freq: int = 10
    max_steps: int | None = None
    checkpoint_every: int | None = None
    resume: Path | None = None
    evaluate: bool = False
    ten_crop: bool = False
    bias_one: float = 0.1
    init: Literal["paper", "kaiming"] = "paper"
    parallel: Literal["none", "towers", "ddp"] = "none"
    gpus: tuple[str, ...] | None = None
    towers: int | None = None
    lrn: bool | None = None
    pool: Literal["overlap", "plain"] | None = None
    dropout: bool | None = None
    overwrite: bool = False
    accept_pca_change: bool = False
    reread: bool = False
    given: tuple[str, ...] = ()


def as_primitives(*configs: object) -> dict[str, dict]:
    """The configs as nested dicts of str/int/float/bool/None/list (what a weights_only checkpoint may hold).

    Args:
        configs: dataclass instances (DataConfig, OptimConfig, ScheduleConfig, RunConfig).

    Returns:
        {class name: {field: value}} with Paths as absolute strings (a checkpoint is used from other
        folders: predict finds the run's pca.json from anywhere) and tuples as lists.
    """

    def plain(value):
        if isinstance(value, Path):
            return os.path.abspath(value)
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        return value

    return {
        type(config).__name__: {field.name: plain(getattr(config, field.name)) for field in dataclasses.fields(config)}
        for config in configs
    }
