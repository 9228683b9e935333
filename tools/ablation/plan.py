"""What every run of an ablation shares: data, budget and `model.train`'s flags; the commands of each variant.

The flags an ablation passes on are `model.train`'s own click options (types, ranges and help come from
there, so they cannot drift apart). Two kinds:
- RESULT_FLAGS decide what a run learns (batch, rates, schedule, seed, data pipeline, init, budget): they
  are the same for every variant, recorded in OUT/ablation_plan.json, and a later command on the same --out
  must not change them (its finished variants would no longer be comparable);
- RUN_FLAGS only say how it runs (device, threads, precision, progress, mid-epoch checkpoints) and may
  differ between the commands that continue an ablation.
A flag the user does not give is not passed: `model.train`'s default applies (the paper's recipe).
The plan also records the sha256 of the pca.json and mean image (model/provenance.py): a later command whose
--pca holds other statistics is refused unless --accept-pca-change (a copy elsewhere with the same bytes is fine).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from model.checkpoint import CHECKPOINT_NAME
from model.provenance import ACCEPT_FLAG, STATISTICS_KEY, statistics_change, statistics_entry
from model.train import main as train_command
from pipeline.errors import InputError
from pipeline.atomic import write_atomic
from tools.ablation.variants import BASELINE_VARIANT, VARIANTS, Variant

RESULT_FLAGS = ("batch_size", "lr", "momentum", "wd", "wd_biases", "schedule", "step_size", "patience", "seed",
                "dali", "normalize", "mean_window", "lighting_scale", "init", "bias_one", "max_steps")
RUN_FLAGS = ("workers", "amp", "channels_last", "print_freq", "checkpoint_every")
PLAN_NAME = "ablation_plan.json"


def train_option(name: str) -> click.Option:
    """`model.train`'s click option `name`."""
    return next(param for param in train_command.params if param.name == name)


def flag_args(name: str, value) -> list[str]:
    """The `model.train` arguments that set option `name` to `value` ([] for an unset flag)."""
    option = train_option(name)
    if option.is_flag:
        if option.secondary_opts:  # --dali/--no-dali
            return [option.opts[-1] if value else option.secondary_opts[-1]]
        return [option.opts[-1]] if value else []
    return [option.opts[-1], str(value)]


def effective(name: str, value):
    """The value `model.train` runs with: `value` if given, else its default (a flag: off; None: its own rule)."""
    if value is not None:
        return value
    default = train_option(name).default
    if train_option(name).is_flag and not isinstance(default, bool):
        return False
    return default if isinstance(default, (bool, int, float, str)) else None


@dataclass(frozen=True)
class Plan:
    """One ablation: the data, the budget and the flags every variant trains with.

    `given`: the RESULT_FLAGS and RUN_FLAGS the user gave (name -> value), passed on as they are.
    `accept_pca_change`: go on with other statistics than the plan records (passed on to model.train).
    """

    root: Path
    lists: Path
    pca: Path | None
    out: Path
    epochs: int
    device: str
    given: dict = field(default_factory=dict)
    accept_pca_change: bool = False

    def run_folder(self, variant: Variant) -> Path:
        return self.out / variant.name

    def train_args(self, variant: Variant, resume: bool) -> list[str]:
        """`python -m model.train` arguments of `variant` (continuing its run folder's checkpoint if `resume`)."""
        folder = self.run_folder(variant)
        args = self._data_args() + ["--out", str(folder), "--epochs", str(self.epochs), "--device", self.device]
        for name in RESULT_FLAGS + RUN_FLAGS:
            if self.given.get(name) is not None:
                args += flag_args(name, self.given[name])
        args += list(variant.flags)
        return args + (["--resume", str(folder)] + self._accept() if resume else [])

    def eval_args(self, variant: Variant) -> list[str]:
        """`-e --ten-crop` of the variant's last checkpoint; the network and the input normalisation come from it."""
        folder = self.run_folder(variant)
        args = self._data_args() + ["--out", str(folder), "-e", "--resume", str(folder / CHECKPOINT_NAME),
                                    "--ten-crop", "--device", self.device]
        for name in ("batch_size", "workers", "print_freq", "dali"):  # scored through the pipeline it trained on
            if self.given.get(name) is not None:
                args += flag_args(name, self.given[name])
        return args + self._accept()

    def _accept(self) -> list[str]:
        return [ACCEPT_FLAG] if self.accept_pca_change else []

    def _data_args(self) -> list[str]:
        args = ["--root", str(self.root), "--lists", str(self.lists)]
        return args + (["--pca", str(self.pca)] if self.pca is not None else [])

    def record(self) -> dict:
        """What must stay the same for every variant (ablation_plan.json): data (with the statistics' sha256),
        budget, RESULT_FLAGS."""
        data = {"root": os.path.abspath(self.root), "lists": os.path.abspath(self.lists),
                "pca": os.path.abspath(self.pca) if self.pca is not None else None,
                STATISTICS_KEY: statistics_entry(self.pca), "epochs": self.epochs}
        return {**data, **{name: effective(name, self.given.get(name)) for name in RESULT_FLAGS}}


def check_inputs(plan: Plan) -> None:
    """The lists and the PCA file exist: checked before the first of many trainings starts.

    Raises:
        InputError: one line naming what is missing.
    """
    for name in ("train.txt", "val.txt", "classes.tsv"):
        if not (plan.lists / name).is_file():
            raise InputError(f"--lists {plan.lists}: no {name}; write the lists with "
                             f"`imagenet-tools prepare ROOT --out {plan.lists}`")
    if plan.pca is not None and not plan.pca.is_file():
        raise InputError(f"--pca {plan.pca}: no such file; write it with `imagenet-tools compute-pca`")


def claim_out(plan: Plan) -> None:
    """Record the plan in OUT/ablation_plan.json, or check it against the one there. The plan binds once a
    run has a checkpoint; before that (e.g. the first run failed at once on a bad flag) it is replaced.

    Raises:
        InputError: OUT holds runs of an ablation with other settings, or runs without a plan.
    """
    path = plan.out / PLAN_NAME
    wanted = plan.record()
    runs = [v.name for v in (BASELINE_VARIANT, *VARIANTS) if (plan.run_folder(v) / CHECKPOINT_NAME).exists()]
    if runs and not path.is_file():
        raise InputError(f"--out {plan.out} holds runs ({', '.join(runs)}) but no {PLAN_NAME}, so their "
                         "settings are unknown; choose another --out")
    if runs:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: unreadable ({error}); choose another --out") from None
        judged_by_content = check_statistics(plan, path, saved, wanted)
        for name, value in wanted.items():
            if name in judged_by_content:
                continue
            if saved.get(name) != value:
                raise InputError(f"--out {plan.out} holds an ablation run with {describe(name, saved.get(name))}; "
                                 f"this command has {describe(name, value)}; every variant must train with the "
                                 "same: use the same, or choose another --out")
    write_json(path, wanted)


def check_statistics(plan: Plan, path: Path, saved: dict, wanted: dict) -> tuple[str, ...]:
    """Compare the statistics of the plan at `path` with this command's; returns the record's names that this
    judged (a plan without the sha256, written before they were recorded, is accepted with a note).

    Raises:
        InputError: other statistics, without --accept-pca-change.
    """
    recorded = saved.get(STATISTICS_KEY)
    if not isinstance(recorded, dict):
        click.echo(f"note: {path} was written before ablation plans recorded the sha256 of their pca.json: "
                   "not checked", err=True)
        return (STATISTICS_KEY,)
    change = statistics_change(recorded, wanted[STATISTICS_KEY])
    if change is not None and not plan.accept_pca_change:
        raise InputError(f"--out {plan.out} holds an ablation run with {change}; pass --pca with the file it was "
                         f"trained with, or {ACCEPT_FLAG} to go on with these")
    if change is not None:
        click.echo(f"note: --out {plan.out}: {ACCEPT_FLAG}: going on with {change}", err=True)
    return ("pca", STATISTICS_KEY)


def describe(name: str, value) -> str:
    """A recorded setting as the user types it: "--batch-size 32", "--no-dali", "--max-steps unset"."""
    if name in ("root", "lists", "pca", "epochs"):
        return f"--{name} {value if value is not None else 'unset'}"
    option = train_option(name)
    if value is None:
        return f"{option.opts[-1]} unset"
    if option.is_flag:
        return " ".join(flag_args(name, value)) or f"no {option.opts[-1]}"
    return f"{option.opts[-1]} {value}"


def write_json(path: Path, data: dict) -> None:
    """Write `data` as JSON atomically (a temp file renamed): a reader sees the old file or the new one."""
    write_atomic(path, json.dumps(data, indent=1) + "\n")
