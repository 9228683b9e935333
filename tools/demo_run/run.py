"""The demo's run: every stage of the toolkit on generated data, each as its own process, as a user would type it.

`tools/demo.py` is its command line (`imagenet-tools demo`); docs/demo.md explains the recipe and shows a real run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from model.checkpoint import CHECKPOINT_NAME
from pipeline.atomic import write_atomic
from pipeline.devices import announce, resolve_device
from pipeline.errors import InputError
from tools.shared.stages import Stages, parse_evaluation

# The demo's recipe (docs/demo.md has the measurements behind it). The network is the paper's `alexnet`
# (towers, LRN, dropout, 224 crops, the paper's SGD with momentum 0.9 and weight decay 5e-4); what differs
# is the start and the schedule: He initialisation with unit-scale inputs leaves the initial plateau within
# ~30 steps, where the paper's N(0, 0.01) needs far more steps than 10 minutes on 2 cores allow.
DEMO_RECIPE = {
    "classes": 10, "train_per_class": 60, "val_per_class": 10, "epochs": 12, "batch_size": 32, "lr": 0.01,
    "momentum": 0.9, "normalize": "meanstd", "init": "kaiming", "schedule": "step", "step_size": 9,
}


def training_args(recipe: dict, root: Path, lists: Path, pca: Path, run: Path, device: str, workers: int,
                  max_steps: int | None) -> list[str]:
    """The `python -m model.train` flags of the demo run."""
    args = ["--root", root, "--lists", lists, "--pca", pca, "--out", run, "-a", "alexnet",
            "--epochs", recipe["epochs"], "-b", recipe["batch_size"], "--lr", recipe["lr"],
            "--momentum", recipe["momentum"], "--normalize", recipe["normalize"], "--init", recipe["init"],
            "--schedule", recipe["schedule"], "--step-size", recipe["step_size"], "--device", device,
            "--workers", workers, "--dali", "-p", 5, "--overwrite"]  # a demo run again replaces its own run
    if max_steps:
        args += ["--max-steps", max_steps]
    return [str(a) for a in args]


def run_demo(out: Path, device: str = "auto", workers: int = 2, max_steps: int | None = None,
             max_train_neighbours: int = 300, **overrides) -> dict:
    """Run every stage; see the module docstring.

    Args:
        out: the demo's folder (data/, data256/, lists/, pca.json, run/, demo.log).
        device: "auto", "cpu", "cuda" or "cuda:N" (pipeline/devices.py).
        workers: DALI threads and worker processes.
        max_steps: stop training after this many steps (smoke tests).
        max_train_neighbours: training images searched for the Figure 4 picture.
        overrides: DEMO_RECIPE entries to change (train_per_class, epochs, lr, ...).

    Returns:
        The summary also written to DIR/run/final_eval.json.
    """
    unknown = set(overrides) - set(DEMO_RECIPE)
    if unknown:
        raise InputError(f"unknown demo settings: {', '.join(sorted(unknown))}")
    recipe = {**DEMO_RECIPE, **{k: v for k, v in overrides.items() if v is not None}}
    out = Path(out)
    chosen = resolve_device(device)  # refused before any folder is made
    device = chosen.name
    out.mkdir(parents=True, exist_ok=True)
    data, resized, lists, pca, run = out / "data", out / "data256", out / "lists", out / "pca.json", out / "run"
    start = time.monotonic()
    stages = Stages(out / "demo.log", "demo")
    announce(chosen)
    try:
        stages.tool("data", "make-demo-data", data, "--classes", recipe["classes"], "--train-per-class", recipe["train_per_class"],
                    "--val-per-class", recipe["val_per_class"], "--workers", workers)
        stages.tool("prepare", "prepare", data, "--out", lists, "--resize", 256, "--resized-root", resized,
                    "--workers", workers)
        stages.tool("pca", "compute-pca", "--list", lists / "train.txt", "--root", resized, "--out", pca,
                    "--workers", workers, "--device", device,
                    "--overwrite")  # a demo run again replaces its own pca.json
        stages.module("train", "model.train", *training_args(recipe, resized, lists, pca, run, device, workers,
                                                             max_steps))
        checkpoint = run / CHECKPOINT_NAME
        output = stages.module("10-crop", "model.train", "--root", resized, "--lists", lists, "--pca", pca,
                               "--out", run, "-a", "alexnet", "-e", "--resume", checkpoint, "--ten-crop",
                               "--normalize", recipe["normalize"], "--device", device, "--workers", workers,
                               "-b", recipe["batch_size"])
        results = parse_evaluation(output, stages.log.name)
        summary = {"device": device, "recipe": recipe, "evaluation": results,
                   "stage_seconds": {k: round(v, 1) for k, v in stages.times.items()}}
        numbers = {f"{view} top-1 accuracy (%)": round(100 - r["top1_err"], 2) for view, r in results.items()}
        numbers.update({f"{view} top-5 accuracy (%)": round(100 - r["top5_err"], 2) for view, r in results.items()})
        write_atomic(run / "final_eval.json", json.dumps(numbers, indent=1))
        stages.tool("pictures", "visualize", "report", run, "--root", resized, "--lists", lists, "--pca", pca,
                    "--normalize", recipe["normalize"], "--extra", run / "final_eval.json",
                    "--max-train", max_train_neighbours)
    finally:
        stages.close()
    summary["wall_s"] = round(time.monotonic() - start, 1)
    summary["stage_seconds"] = {k: round(v, 1) for k, v in stages.times.items()}
    write_atomic(run / "demo_summary.json", json.dumps(summary, indent=1))
    return summary


def summary_lines(summary: dict, out: Path) -> list[str]:
    """The demo's last words: accuracy per view, wall time per stage, where the report is."""
    lines = []
    for view, r in summary["evaluation"].items():
        name = "centre crop" if view == "centre" else "10 crops   "
        lines.append(f"validation, {name} ({r['images']} images): top-1 accuracy {100 - r['top1_err']:.1f} %, "
                     f"top-5 accuracy {100 - r['top5_err']:.1f} %")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items())
    lines.append(f"wall time {summary['wall_s']:.0f} s on {summary['device']} ({stages})")
    lines.append(f"report: {out / 'run' / 'report.md'}")
    return lines
