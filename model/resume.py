"""What a run resumed (or evaluated) from a checkpoint takes from it, and what the command line may change.

A checkpoint records the run's settings (its "config": the four dataclasses as plain dicts). Which flags
were typed on the command line is in RunConfig.given; a flag left out takes the checkpoint's value.

- KEPT (--resume): these decide which images, augmentations, inputs and initial network the remaining
  steps see, so a resumed run takes them from the checkpoint; another value given on the command line
  is refused, since the run would no longer continue exactly (start a new run for that).
- CHANGED (--resume): the optimiser's and the schedule's settings; a new value on the command line is
  applied from the resumed step on, and announced.
- EVALUATION (-e): what shapes the validation input; taken from the checkpoint, a conflicting flag refused.

Checkpoints without a config (written before it was stored) are resumed with the command line's settings.
The pca.json and class table are also checked by content (model/provenance.py).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from model.optim import decays_biases
from model.provenance import STATISTICS_KEY
from pipeline.errors import InputError


@dataclass(frozen=True)
class Setting:
    """One flag and the config field it sets.

    Attributes:
        flag: click's parameter name (what RunConfig.given holds).
        label: the flag as typed.
        config: the dataclass it lives in (the key in the checkpoint's "config").
        field: the dataclass field.
    """

    flag: str
    label: str
    config: str
    field: str


BACKEND = Setting("dali", "--dali/--no-dali", "DataConfig", "backend")
KEPT = (
    Setting("batch_size", "-b", "DataConfig", "batch_size"),
    Setting("seed", "--seed", "RunConfig", "seed"),
    Setting("seed", "--seed", "DataConfig", "seed"),
    BACKEND,
    Setting("normalize", "--normalize", "DataConfig", "normalize"),
    Setting("pca", "--pca", "DataConfig", "pca"),
    Setting("crop", "--crop", "DataConfig", "crop"),
    Setting("mean_window", "--mean-window", "DataConfig", "mean_window"),
    Setting("lighting_std", "--lighting-std", "DataConfig", "pca_alpha_std"),
    Setting("lighting_scale", "--lighting-scale", "DataConfig", "lighting_scale"),
    Setting("lighting_rescale", "--lighting-rescale", "DataConfig", "lighting_rescale"),
    Setting("schedule", "--schedule", "ScheduleConfig", "kind"),
    Setting("init", "--init", "RunConfig", "init"),
    Setting("bias_one", "--bias-one", "RunConfig", "bias_one"),
)
# The PIL DataLoader seeds each worker, so the worker count decides the augmentations (DALI's do not
# depend on its thread count): kept only for --no-dali runs.
PIL_WORKERS = Setting("workers", "--workers", "DataConfig", "num_threads")
CHANGED = (
    Setting("lr", "--lr", "OptimConfig", "lr"),
    Setting("momentum", "--momentum", "OptimConfig", "momentum"),
    Setting("wd", "--wd", "OptimConfig", "weight_decay"),
    Setting("patience", "--patience", "ScheduleConfig", "patience"),
    Setting("step_size", "--step-size", "ScheduleConfig", "step_size"),
    Setting("epochs", "--epochs", "ScheduleConfig", "epochs"),
    Setting("lr_warmup_epochs", "--lr-warmup-epochs", "ScheduleConfig", "warmup_epochs"),
)
EVALUATION = tuple(s for s in KEPT if s.field in ("normalize", "pca", "crop", "mean_window"))
PATH_FIELDS = ("pca",)


def _recorded(checkpoint: dict, setting: Setting):
    """(True, value) if the checkpoint recorded the setting, else (False, None); paths as Path."""
    config = checkpoint.get("config")
    section = config.get(setting.config) if isinstance(config, dict) else None
    if not isinstance(section, dict) or setting.field not in section:
        return False, None
    value = section[setting.field]
    if setting.field in PATH_FIELDS and value is not None:
        value = Path(value)
    return True, value


def _same(setting: Setting, a, b) -> bool:
    """Equal values; two pca.json paths are the same setting when they name the same file or equal files."""
    if setting.field in PATH_FIELDS and a is not None and b is not None:
        if os.path.abspath(a) == os.path.abspath(b):
            return True
        try:
            return Path(a).read_bytes() == Path(b).read_bytes()
        except OSError:
            return not Path(a).exists()  # the recorded file is gone: a copy elsewhere is accepted
    return a == b


def _shown(setting: Setting, value) -> str:
    if setting.flag == "dali":
        return "--dali" if value == "dali" else "--no-dali"
    if isinstance(value, bool):  # an on/off flag such as --lighting-rescale
        return f"{setting.label} {'on' if value else 'off'}"
    return f"{setting.label} {'(default)' if value is None else value}"


def _take(settings: tuple[Setting, ...], checkpoint: dict, configs: dict, given: tuple[str, ...],
          refuse: tuple[str, str] | None) -> tuple[dict, list[str]]:
    """Set each setting the command line left out to the checkpoint's value; with `refuse` (the message's
    start and end), a given value that differs is an error. Returns the new configs and the adopted
    settings that differ from the command line's defaults, as flags."""
    kept = []
    for setting in settings:
        recorded, value = _recorded(checkpoint, setting)
        current = getattr(configs[setting.config], setting.field)
        if not recorded or _same(setting, value, current):
            continue
        if setting.flag in given:
            # A checkpoint that records its statistics' sha256 judges another --pca by content, after this
            # (model/provenance.py: refused unless --accept-pca-change).
            if refuse is not None and not (setting.field in PATH_FIELDS and STATISTICS_KEY in checkpoint):
                raise InputError(f"{refuse[0]}: the run was trained with {_shown(setting, value)}; "
                                 f"{_shown(setting, current)} {refuse[1]}")
            continue
        if setting.field in PATH_FIELDS and value is not None and not value.exists():
            raise InputError(f"the checkpoint was trained with {_shown(setting, value)}, which is gone; "
                             f"pass {setting.label} with the path of a copy")
        configs[setting.config] = replace(configs[setting.config], **{setting.field: value})
        if _shown(setting, value) not in kept:
            kept.append(_shown(setting, value))
    return configs, kept


def resume_settings(checkpoint: dict, data, optim, schedule, run) -> tuple[tuple, list[str]]:
    """The configs a resumed run trains with (see the module docstring).

    Returns:
        ((data, optim, schedule, run), the settings taken from the checkpoint, as flags).

    Raises:
        InputError: a KEPT flag given with another value than the checkpoint's.
    """
    configs = {type(c).__name__: c for c in (data, optim, schedule, run)}
    refuse = (f"--resume {run.resume}", "would not continue it exactly; drop the flag (--resume keeps the "
              "checkpoint's), or start a new run with another --out")
    kept_settings = KEPT + ((PIL_WORKERS,) if _recorded(checkpoint, BACKEND)[1] == "pil" else ())
    configs, kept = _take(kept_settings, checkpoint, configs, run.given, refuse)
    configs, _ = _take(CHANGED, checkpoint, configs, run.given, None)
    return tuple(configs[name] for name in ("DataConfig", "OptimConfig", "ScheduleConfig", "RunConfig")), kept


def evaluation_settings(checkpoint: dict, data, run):
    """The DataConfig -e evaluates with: the checkpoint's input settings (normalisation, pca.json, crop).

    Raises:
        InputError: one of them given on the command line with another value.
    """
    refuse = (f"-e --resume {run.resume}", "would feed it other inputs than it was trained on; drop the flag "
              "(-e uses the checkpoint's)")
    configs, _ = _take(EVALUATION, checkpoint, {"DataConfig": data}, run.given, refuse)
    return configs["DataConfig"]


def apply_changes(checkpoint: dict, optimizer: torch.optim.Optimizer, scheduler, optim, schedule,
                  run) -> list[str]:
    """Apply the CHANGED flags given with a new value to the restored optimiser and schedule.

    Returns:
        One line per change, for the user.
    """
    notes = []
    for setting in CHANGED:
        recorded, value = _recorded(checkpoint, setting)
        new = getattr(optim if setting.config == "OptimConfig" else schedule, setting.field)
        if setting.flag not in run.given or not recorded or value == new:
            continue
        if setting.flag == "lr":
            old = optimizer.param_groups[0]["lr"]
            _scale_lr(optimizer, scheduler, new / old)
            notes.append(f"--lr {new}: learning rate {old:.4g} -> {new:.4g} from here on (the run started at {value})")
            continue
        if setting.flag == "momentum":
            for group in optimizer.param_groups:
                group["momentum"] = new
        elif setting.flag == "wd":  # the weights' group; biases stay undecayed unless the run decays them
            groups = optimizer.param_groups
            for group in groups if decays_biases(optimizer.state_dict()) else groups[:1]:
                group["weight_decay"] = new
        elif setting.flag == "patience" and hasattr(scheduler, "patience"):
            scheduler.patience = new - 1  # as make_scheduler sets it
        elif setting.flag == "step_size" and hasattr(scheduler, "step_size"):
            scheduler.step_size = new
        notes.append(f"{setting.label} {new} (the run had {value})")
    return notes


def _scale_lr(optimizer: torch.optim.Optimizer, scheduler, factor: float) -> None:
    """Multiply the current rate by `factor`, and the schedule's bounds with it (the drops left stay)."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
    if hasattr(scheduler, "min_lrs"):
        scheduler.min_lrs = [lr * factor for lr in scheduler.min_lrs]
        scheduler.eps *= factor
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def announce(checkpoint_path: Path, position, kept: list[str], changes: list[str]) -> None:
    """Say on stderr where the run goes on from (`position`: model.run.Position), which settings came from
    the checkpoint, and what changed."""
    within = f", batch {position.epoch_step} of it done" if position.epoch_step else ""
    print(f"resumed from {checkpoint_path}: epoch {position.epoch}{within} (step {position.step})"
          + (f"; kept the run's {', '.join(kept)}" if kept else ""), file=sys.stderr)
    for change in changes:
        print(f"resume: {change}", file=sys.stderr)
