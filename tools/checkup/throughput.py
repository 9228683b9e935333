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
from pathlib import Path

from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import Outcome, Recorder
from tools.shared.stages import Stages

E2E_OVER_MODEL, DALI_OVER_PIL, TARGET_WORKERS = 0.95, 5.0, 16
HOUR_IMAGES_PER_S = 90 * 1_281_167 / 3600  # 32,029.2


def bench_args(paths: WorkPaths, settings: Settings, out: Path) -> list:
    sizes = settings.sizes
    args = ["--root", paths.bench, "--lists", paths.bench_lists, "--root", paths.bench256, "--lists",
            paths.bench_lists256, "--device", settings.device, "--threads", settings.workers,
            "--batch-size", sizes.bench_batch, "--steps", sizes.bench_steps, "--warmup", max(1, sizes.bench_steps // 6),
            "--json", out]
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
    out = paths.stage_dir("bench") / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    Stages(None, "selftest").tool("bench", "bench", *bench_args(paths, settings, out))
    report = json.loads(out.read_text())
    figures = {"machine": report["machine"], "config": report["config"], "rows": {}}
    lines = []
    for row in report["results"]:
        name = "256" if row["root"] == str(paths.bench256) else "full size"
        judged = targets(row, settings.workers)
        figures["rows"][name] = {"images_per_s": {mode: entry["images_per_s"] for mode, entry in row["modes"].items()},
                                 "wait_fraction": row["modes"].get("e2e", {}).get("wait_fraction"),
                                 "ratios": row["ratios"], "targets": judged}
        lines.append(words(name, judged))
    workers = "" if settings.workers == TARGET_WORKERS else f" (at {settings.workers} workers, not {TARGET_WORKERS})"
    return Outcome("; ".join(lines) + workers, figures)
