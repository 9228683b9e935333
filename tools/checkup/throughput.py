"""The bench stage (selftest --bench): `imagenet-tools bench` in the default training configuration (bf16,
channels_last on a GPU; batch 256) on the data stage's generated files, full size and 256-resized, every
mode (pipeline, model, e2e, and the DataLoader + PIL baseline), and the project's targets judged on it:

- end to end >= 0.95 x model only, on 256-resized files (the input stage costs at most 5 %);
- DALI >= 5 x the DataLoader baseline (pipeline only) at 16 workers;
- end to end >= 32,029 images/s: 90 ImageNet epochs (90 x 1,281,167 images) in an hour.

A missed target is a figure, not a failure: the stage fails only when bench does not run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.atomic import write_atomic
from pipeline.filelist import read_file_list
from pipeline.loader import epoch_batches_needed
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import Outcome, Recorder
from tools.shared.stages import Stages

E2E_OVER_MODEL, DALI_OVER_PIL, TARGET_WORKERS = 0.95, 5.0, 16
HOUR_IMAGES_PER_S = 90 * 1_281_167 / 3600  # 32,029.2


def warmup_steps(settings: Settings) -> int:
    return max(1, settings.sizes.bench_steps // 6)


def epoch_entries(settings: Settings) -> int:
    """Images an epoch of the bench's lists holds: enough batches for a fair measurement (pipeline.loader:
    at least 20, 4 per worker) and for every timed mode's warm-up and steps within one epoch."""
    sizes = settings.sizes
    batches = max(epoch_batches_needed(settings.workers), warmup_steps(settings) + sizes.bench_steps)
    return batches * sizes.bench_batch


def linked_set(root: Path, list_path: Path, folder: Path, entries: int) -> Path:
    """folder/train.txt naming at least `entries` images: the listed files of `root` again and again through
    folder/0, folder/1, ... (each a link to `root`), because a file list names each path once
    (pipeline/filelist.py). The data stage's few hundred files then give as many batches an epoch as a real
    data set; each is read and decoded every time it comes, as a file of its own would be."""
    listed = read_file_list(list_path)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for copy in range(max(1, math.ceil(entries / len(listed)))):
        link = folder / str(copy)
        if not link.is_symlink():
            link.symlink_to(Path(root).resolve(), target_is_directory=True)
        lines += [f"{copy}/{relpath} {label}\n" for relpath, label in listed]
    write_atomic(folder / "train.txt", "".join(lines))
    return folder / "train.txt"


def bench_args(paths: WorkPaths, settings: Settings, out: Path) -> list:
    """bench's arguments on the data stage's files, full size and 256 (as linked_set's longer lists)."""
    sizes, entries = settings.sizes, epoch_entries(settings)
    args = []
    for name, root, lists in (("full", paths.bench, paths.bench_lists), ("256", paths.bench256, paths.bench_lists256)):
        folder = paths.stage_dir("bench") / name
        args += ["--root", folder, "--list", linked_set(root, lists / "train.txt", folder, entries)]
    args += ["--device", settings.device, "--threads", settings.workers, "--batch-size", sizes.bench_batch,
             "--steps", sizes.bench_steps, "--warmup", warmup_steps(settings), "--json", out]
    if settings.device == "gpu":
        args += ["--amp", "bf16", "--channels-last"]
    return args


def targets(row: dict, workers: int) -> dict:
    """Each target of one bench row: the measured value and whether it holds."""
    modes, ratios = row["modes"], row["ratios"]
    e2e = modes.get("e2e", {}).get("images_per_s")
    judged = {
        "e2e_over_model": {"value": ratios.get("e2e_over_model"), "target": E2E_OVER_MODEL},
        "dali_over_pil_pipeline": {"value": ratios.get("dali_over_pil_pipeline"), "target": DALI_OVER_PIL,
                                   "workers": workers, "at_target_workers": workers == TARGET_WORKERS},
        "e2e_images_per_s": {"value": e2e, "target": round(HOUR_IMAGES_PER_S, 1)},
    }
    for entry in judged.values():
        entry["held"] = entry["value"] is not None and entry["value"] >= entry["target"]
    return judged


def words(name: str, judged: dict) -> str:
    """"256: e2e 1,234 img/s (missed), 0.97 x model (held), DALI 6.1 x the DataLoader (held)"."""
    def said(key: str, spec: str, unit: str) -> str:
        entry = judged[key]
        value = "-" if entry["value"] is None else format(entry["value"], spec)
        return f"{value}{unit} ({'held' if entry['held'] else 'missed'})"

    return (f"{name}: e2e {said('e2e_images_per_s', ',.0f', ' img/s')}, {said('e2e_over_model', '.2f', ' x model')}, "
            f"DALI {said('dali_over_pil_pipeline', '.1f', ' x the DataLoader')}")


def bench(record: Recorder, settings: Settings) -> None:
    record.check("bench", run_bench, WorkPaths(Path(settings.work)), settings)


def run_bench(paths: WorkPaths, settings: Settings) -> Outcome:
    # bench rewrites its JSON after every measurement: into --out, so that a stage stopped at its limit (or at
    # the end of --budget) leaves the modes it measured where the selftest's results are.
    out = Path(settings.out or paths.stage_dir("bench")) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    Stages(None, "selftest").tool("bench", "bench", *bench_args(paths, settings, out))
    report = json.loads(out.read_text())
    figures = {"machine": report["machine"], "config": report["config"], "file": str(out), "rows": {}}
    lines = []
    for row in report["results"]:
        name = "256" if Path(row["root"]).name == "256" else "full size"
        judged = targets(row, settings.workers)
        figures["rows"][name] = {"images_per_s": {mode: entry["images_per_s"] for mode, entry in row["modes"].items()},
                                 "wait_fraction": row["modes"].get("e2e", {}).get("wait_fraction"),
                                 "ratios": row["ratios"], "targets": judged}
        lines.append(words(name, judged))
    workers = "" if settings.workers == TARGET_WORKERS else f" (at {settings.workers} workers, not {TARGET_WORKERS})"
    return Outcome("; ".join(lines) + workers, figures)
