"""An ablation run: the baseline, then each variant, trained and evaluated one after another by `model.train`.

Each variant has its own run folder OUT/<variant>/ (model.train's checkpoint.pth.tar, metrics.jsonl) and,
once evaluated, OUT/<variant>/ablation_result.json. Its state is read from there, so the same command run
again after a kill goes on where the last one stopped:

    result file             -> done: neither trained nor evaluated again
    checkpoint at its budget -> trained: evaluated only
    checkpoint short of it   -> `model.train --resume OUT/<variant>` finishes the training, then evaluated
    no checkpoint            -> trained from the start
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from model.checkpoint import CHECKPOINT_NAME, load_checkpoint
from model.run_log import METRICS_NAME
from pipeline.devices import Device, announce
from pipeline.errors import InputError
from pipeline.writable import writable_folder
from tools.ablation.plan import Plan, check_inputs, claim_out, write_json
from tools.ablation.report import write_report
from tools.ablation.variants import BASELINE_VARIANT, Variant
from tools.shared.stages import Stages, parse_evaluation

RESULT_NAME = "ablation_result.json"
AGAIN = "run the same command again to continue (finished variants are kept)"


def run_ablation(plan: Plan, variants: tuple[Variant, ...], stages: Stages) -> list[dict]:
    """Train and evaluate the baseline and `variants` (those done before are skipped).

    Returns:
        One result per run, the baseline first (see `evaluate_variant`).
    """
    runs = (BASELINE_VARIANT, *variants)
    results = []
    for index, variant in enumerate(runs, 1):
        tag = f"[{index}/{len(runs)}] {variant.name}"
        result = read_result(plan.run_folder(variant))
        if result is not None:
            centre = result["evaluation"]["centre"]
            click.echo(f"\n== {tag}: done before (centre top-1 error {centre['top1_err']:.2f} %), kept", err=True)
        else:
            train_variant(plan, variant, stages, tag)
            result = evaluate_variant(plan, variant, stages, tag)
        results.append(result)
    return results


def read_result(folder: Path) -> dict | None:
    """A variant's ablation_result.json, or None where there is none (an unreadable one is said and redone)."""
    path = folder / RESULT_NAME
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        for view in ("centre", "10-crop"):
            float(result["evaluation"][view]["top1_err"]), float(result["evaluation"][view]["top5_err"])
        return result
    except (OSError, ValueError, KeyError, TypeError) as error:
        click.echo(f"{path}: unreadable ({error}); evaluating this variant again", err=True)
        return None


def budget_reached(state: dict, epochs: int, max_steps: int | None) -> bool:
    """Whether a checkpoint's run has trained all it was asked to (model.train's --epochs / --max-steps)."""
    if max_steps is not None and state["step"] >= max_steps:
        return True
    return state["epoch"] >= epochs and state.get("epoch_step", 0) == 0


def position(state: dict) -> str:
    return f"epoch {state['epoch']}, {state.get('epoch_step', 0)} batches into it, step {state['step']}"


def train_variant(plan: Plan, variant: Variant, stages: Stages, tag: str) -> None:
    """Train `variant` to the plan's budget: from the start, or on from its checkpoint.

    Raises:
        InputError: the training failed or stopped before its budget.
    """
    checkpoint = plan.run_folder(variant) / CHECKPOINT_NAME
    max_steps = plan.given.get("max_steps")
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        if budget_reached(state, plan.epochs, max_steps):
            click.echo(f"\n== {tag}: trained before ({position(state)}), not trained again", err=True)
            return
        stages.module(f"{tag}: train, continued from {position(state)}", "model.train",
                      *plan.train_args(variant, resume=True))
    else:
        stages.module(f"{tag}: train", "model.train", *plan.train_args(variant, resume=False))
    state = load_checkpoint(checkpoint)
    if not budget_reached(state, plan.epochs, max_steps):  # e.g. model.train stopped by a signal of its own
        raise InputError(f"{variant.name}: the training stopped at {position(state)}, short of --epochs "
                         f"{plan.epochs}{f' / --max-steps {max_steps}' if max_steps else ''}; {AGAIN}")


def evaluate_variant(plan: Plan, variant: Variant, stages: Stages, tag: str) -> dict:
    """`model.train -e --ten-crop` of the variant's last checkpoint; writes and returns its result:
    {"variant", "flags", "evaluation": {"centre"|"10-crop": {images, loss, top1_err, top5_err}}, "epoch",
    "step", "train_top1_err", "train_top5_err" (the last epoch line's, in training mode)}."""
    folder = plan.run_folder(variant)
    output = stages.module(f"{tag}: evaluate (centre and 10 crops)", "model.train", *plan.eval_args(variant))
    evaluation = parse_evaluation(output, stages.log.name)
    if "10-crop" not in evaluation:
        raise InputError(f"{variant.name}: the evaluation printed no '10-crop' result line; see {stages.log.name}")
    state = load_checkpoint(folder / CHECKPOINT_NAME)
    last = last_metrics(folder)
    result = {"variant": variant.name, "flags": list(variant.flags), "evaluation": evaluation,
              "epoch": state["epoch"], "step": state["step"],
              "train_top1_err": last.get("train_top1_err"), "train_top5_err": last.get("train_top5_err")}
    write_json(folder / RESULT_NAME, result)
    return result


def last_metrics(folder: Path) -> dict:
    """The last line of a run's metrics.jsonl ({} if there is none)."""
    path = folder / METRICS_NAME
    lines = path.read_text(encoding="utf-8").split("\n") if path.is_file() else []
    lines = [line for line in lines if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def ablate(plan: Plan, variants: tuple[Variant, ...], device: Device | None = None) -> dict:
    """The whole ablation: check the inputs and OUT, train and evaluate every run not done yet, write the report.

    `device` (plan.device resolved) is announced once the inputs and OUT are checked.

    Raises:
        InputError: bad input, an --out with another ablation's settings, or a run that failed (one line).
    """
    check_inputs(plan)
    writable_folder(plan.out, "--out")
    claim_out(plan)
    if device is not None:
        announce(device)
    stages = Stages(plan.out / "ablation.log", "ablation", hint=AGAIN, append=True)
    try:
        results = run_ablation(plan, variants, stages)
    except KeyboardInterrupt:  # between stages (a stage reports its own)
        raise InputError(f"stopped by Ctrl-C; {AGAIN}") from None
    finally:
        stages.close()
    return write_report(plan, results, plan.train_args(BASELINE_VARIANT, resume=False))
