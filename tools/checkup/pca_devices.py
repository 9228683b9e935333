"""The pca stages: compute-pca (as a user runs it) with its two CPU backends, and on the GPU, compared.

The bounds are those of tests/test_tools_pca.py's GPU test: the decoders and resamplers differ by a grey
level here and there, which moves the mean by < 2e-3 and the covariance by < 5e-4 (pixels on [0, 1]).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, NotApplicable, Outcome, Recorder
from tools.shared.stages import Stages

MEAN_BOUND = 2e-3
COVARIANCE_BOUND = 5e-4


def list_root(lists: Path) -> Path:
    """The folder a prepare output's lists are relative to (its summary.json says)."""
    return Path(json.loads((lists / "summary.json").read_text())["lists_relative_to"])


def compute(runner: Stages, lists: Path, out: Path, workers: int, device: str, backend: str) -> dict:
    runner.tool(f"compute-pca {device} {backend}", "compute-pca", "--list", lists / "train.txt", "--root",
                list_root(lists), "--out", out, "--workers", workers, "--device", device, "--backend", backend,
                "--overwrite")  # the selftest's own file
    return json.loads(out.read_text())


def compare(a: dict, b: dict, what: str) -> Outcome:
    """Differences of two pca.json documents (b is the reference)."""
    figures = {
        "images": [a["n_images"], b["n_images"]],
        "eigval": [a["eigval"], b["eigval"]],
        "eigval_max_rel_diff": float(np.max(np.abs(np.subtract(a["eigval"], b["eigval"])) / np.abs(b["eigval"]))),
        "mean_max_abs_diff": float(np.max(np.abs(np.subtract(a["mean"], b["mean"])))),
        "covariance_max_abs_diff": float(np.max(np.abs(np.subtract(a["covariance"], b["covariance"])))),
    }
    if figures["eigval_max_rel_diff"] == figures["mean_max_abs_diff"] == figures["covariance_max_abs_diff"] == 0:
        summary = f"{what}: identical"
    else:
        summary = (f"{what}: eigenvalues {figures['eigval_max_rel_diff']:.1e} apart (relative), mean "
                   f"{figures['mean_max_abs_diff'] * 255:.3f} grey levels")
    if a["n_images"] != b["n_images"]:
        raise CheckFailed(f"{what}: {a['n_images']} vs {b['n_images']} images", figures, summary)
    if figures["mean_max_abs_diff"] > MEAN_BOUND or figures["covariance_max_abs_diff"] > COVARIANCE_BOUND:
        raise CheckFailed(f"{what}: mean differs by {figures['mean_max_abs_diff']:.2e} (bound {MEAN_BOUND}), "
                          f"covariance by {figures['covariance_max_abs_diff']:.2e} (bound {COVARIANCE_BOUND})",
                          figures, summary)
    return Outcome(summary, figures)


def backends(runner: Stages, paths: WorkPaths, settings: Settings, lists: Path, name: str) -> Outcome:
    """On 256-resized files both backends decode with libjpeg-turbo and skip the resize (expect 0); on
    full-size files their resamplers differ."""
    out = paths.stage_dir("pca-cpu")
    out.mkdir(parents=True, exist_ok=True)
    pil = compute(runner, lists, out / f"{name}_pil.json", settings.workers, "cpu", "pil")
    dali = compute(runner, lists, out / f"{name}_dali.json", settings.workers, "cpu", "dali")
    return compare(dali, pil, f"DALI vs PIL ({name})")


def devices(runner: Stages, paths: WorkPaths, settings: Settings, lists: Path, name: str) -> Outcome:
    if not settings.cuda:
        raise NotApplicable("no CUDA device")
    out = paths.stage_dir("pca-gpu")
    out.mkdir(parents=True, exist_ok=True)
    cpu = compute(runner, lists, out / f"{name}_cpu.json", settings.workers, "cpu", "dali")
    gpu = compute(runner, lists, out / f"{name}_gpu.json", settings.workers, "gpu", "dali")
    return compare(gpu, cpu, f"GPU vs CPU ({name})")


def pca_cpu(record: Recorder, settings: Settings) -> None:
    paths, runner = WorkPaths(Path(settings.work)), Stages(None, "selftest")
    record.check("dali vs pil, 256", backends, runner, paths, settings, paths.bench_lists256, "256")
    record.check("dali vs pil, full size", backends, runner, paths, settings, paths.bench_lists, "full size")


def pca_gpu(record: Recorder, settings: Settings) -> None:
    paths, runner = WorkPaths(Path(settings.work)), Stages(None, "selftest")
    record.check("gpu vs cpu, 256", devices, runner, paths, settings, paths.bench_lists256, "256")
    record.check("gpu vs cpu, full size", devices, runner, paths, settings, paths.bench_lists, "full size")
