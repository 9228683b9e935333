"""The training stage, as a user runs it (`python -m model.train --dali`, each run its own process) on the
shapes set: the loss must go down, `-e --ten-crop` must evaluate the checkpoint, and a run stopped mid-epoch
and resumed must end where the run that never stopped ends (bit for bit on the CPU; on a GPU cuDNN's
autotuned kernels need not be deterministic, so the difference is reported).

The recipe is the demo's (He initialisation, inputs divided by their std), which leaves the initial plateau
within a few steps (the paper's N(0, 0.01) start would need thousands), with the learning rate scaled to the
small batches: 0.001 per 4 images (at batch 4, 0.003 already made the loss go up again on 2 cores).
"""
from __future__ import annotations

import json
from pathlib import Path

from model.checkpoint import CHECKPOINT_NAME
from model.run_log import METRICS_NAME
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, Outcome, Recorder
from tools.shared.stages import Stages, parse_evaluation

LR_PER_IMAGE = 0.001 / 4
# On a GPU a resumed run may differ from the uninterrupted one by kernel nondeterminism: this much, relative.
GPU_RESUME_BOUND = 1e-2


class Runs:
    """The training runs of the stage and the flags they share."""

    def __init__(self, paths: WorkPaths, settings: Settings) -> None:
        self.folder = paths.stage_dir("train")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pca = self.folder / "pca.json"
        self.settings = settings
        self.device = "cuda" if settings.device == "gpu" else "cpu"
        self.data = ["--root", paths.shapes256, "--lists", paths.shapes_lists, "--device", self.device,
                     "--workers", settings.workers]
        sizes = settings.sizes
        self.steps_per_epoch = sizes.classes * sizes.train_per_class // sizes.batch
        self.total_steps = self.steps_per_epoch * sizes.epochs
        self.recipe = ["--pca", self.pca, "-a", "alexnet", "--epochs", sizes.epochs, "-b", sizes.batch,
                       "--lr", LR_PER_IMAGE * sizes.batch,
                       "--normalize", "meanstd", "--init", "kaiming", "--schedule", "step", "--step-size", 30,
                       "--seed", 0, "-p", 1, "--overwrite"]
        self.runner = Stages(None, "selftest")
        self.paths = paths


def colour_statistics(runs: Runs) -> Outcome:
    runs.runner.tool("compute-pca", "compute-pca", "--list", runs.paths.shapes_lists / "train.txt", "--root",
                     runs.paths.shapes256, "--out", runs.pca, "--workers", runs.settings.workers, "--overwrite")
    return Outcome("", {"eigval": json.loads(runs.pca.read_text())["eigval"]})


def learns(runs: Runs) -> Outcome:
    """An uninterrupted run; its epochs' training loss must go down."""
    out = runs.folder / "whole"
    runs.runner.module("train", "model.train", *runs.data, *runs.recipe, "--out", out)
    epochs = [json.loads(line) for line in (out / METRICS_NAME).read_text().splitlines() if line.strip()]
    losses = [e["train_loss"] for e in epochs]
    figures = {"train_loss": losses, "val_loss": [e["val_loss"] for e in epochs],
               "val_top1_err": [e["val_top1_err"] for e in epochs], "steps": runs.total_steps,
               "images_per_s": [e["images_per_s"] for e in epochs]}
    chance = 100 * (1 - 1 / runs.settings.sizes.classes)
    summary = (f"train loss {losses[0]:.2f} -> {losses[-1]:.2f} in {figures['steps']} steps, val top-1 err "
               f"{figures['val_top1_err'][-1]:.0f} % (chance {chance:.0f} %)")
    if len(epochs) != runs.settings.sizes.epochs or None in losses or not losses[-1] < losses[0]:
        raise CheckFailed(f"the training loss did not go down over {len(epochs)} epochs: {losses}", figures, summary)
    return Outcome(summary, figures)


def ten_crop(runs: Runs) -> Outcome:
    checkpoint = runs.folder / "whole" / CHECKPOINT_NAME
    output = runs.runner.module("evaluate", "model.train", *runs.data, "-b", runs.settings.sizes.batch,
                                "--out", runs.folder / "evaluate", "-e", "--resume", checkpoint, "--ten-crop")
    results = parse_evaluation(output, "selftest.log")
    if "10-crop" not in results:
        raise CheckFailed("-e --ten-crop printed no 10-crop line", results)
    centre, ten = results["centre"], results["10-crop"]
    return Outcome(f"-e: top-1 err {centre['top1_err']:.0f} % centre, {ten['top1_err']:.0f} % 10-crop "
                   f"({centre['images']} images)", results)


def resumes(runs: Runs) -> Outcome:
    """Stopped one step into the second epoch, resumed: the weights of the uninterrupted run."""
    import torch

    out, stop = runs.folder / "resumed", runs.steps_per_epoch + 1
    runs.runner.module("train, stopped", "model.train", *runs.data, *runs.recipe, "--out", out, "--max-steps", stop)
    runs.runner.module("train, resumed", "model.train", *runs.data, "--out", out, "--resume", out / CHECKPOINT_NAME)
    whole = torch.load(runs.folder / "whole" / CHECKPOINT_NAME, weights_only=True)["state_dict"]
    resumed_checkpoint = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    resumed = resumed_checkpoint["state_dict"]
    joined = [torch.cat([state[k].flatten().double() for k in whole]) for state in (resumed, whole)]
    figures = {"stopped_after_steps": stop, "steps": [resumed_checkpoint["step"], runs.total_steps],
               "identical": all(torch.equal(resumed[k], v) for k, v in whole.items()),
               "weights_rel_diff": ((joined[0] - joined[1]).norm() / joined[1].norm()).item()}
    same = "bit-identical weights" if figures["identical"] else f"weights {figures['weights_rel_diff']:.1e} apart (L2, relative)"
    summary = f"stopped at step {stop}, resumed: {same}"
    bound = 0.0 if runs.device == "cpu" else GPU_RESUME_BOUND
    if resumed_checkpoint["step"] != runs.total_steps or not (figures["identical"] or figures["weights_rel_diff"] <= bound):
        raise CheckFailed(f"the resumed run ended at step {resumed_checkpoint['step']} of {runs.total_steps} with "
                          f"{same}", figures, summary)
    return Outcome(summary, figures)


def train(record: Recorder, settings: Settings) -> None:
    runs = Runs(WorkPaths(Path(settings.work)), settings)
    record.check("pca of the training set", colour_statistics, runs)
    record.check("loss goes down", learns, runs)
    if (runs.folder / "whole" / CHECKPOINT_NAME).is_file():  # also when the loss did not go down
        record.check("-e --ten-crop", ten_crop, runs)
    record.check("--resume", resumes, runs)
    for checkpoint in runs.folder.rglob("*.pth.tar"):  # 0.45 GB each, of no use once compared
        checkpoint.unlink()
