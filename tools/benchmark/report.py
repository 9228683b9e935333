"""What `imagenet-tools bench` writes: the machine, the results as JSON, a table and a bar chart."""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import torch

from tools.benchmark.modes import Timing
from tools.shared.figures import pyplot, save_figure
from pipeline.processes import usable_cpus

# The five measurements, in the order they run and are shown. "pipeline"/"e2e" use the DALI loader,
# "pil-*" the PyTorch DataLoader + PIL baseline with the same number of workers.
MODES = ("pipeline", "model", "e2e", "pil-pipeline", "pil-e2e")
MODE_TITLES = {
    "pipeline": "DALI pipeline only",
    "model": "model only (synthetic batch on the device)",
    "e2e": "end to end, DALI",
    "pil-pipeline": "DataLoader + PIL pipeline only",
    "pil-e2e": "end to end, DataLoader + PIL",
}
# (ratio name, numerator mode, denominator mode)
RATIOS = (
    ("e2e_over_model", "e2e", "model"),
    ("dali_over_pil_pipeline", "pipeline", "pil-pipeline"),
    ("dali_over_pil_e2e", "e2e", "pil-e2e"),
)
# ILSVRC-2012 training images (shared PAPER.md §2): what "90 epochs" means in hours_for_90_epochs.
IMAGENET_TRAIN_IMAGES = 1_281_167
PAPER_EPOCHS = 90


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU, GPU and library versions of this machine, for the JSON."""
    try:
        import nvidia.dali

        dali_version = nvidia.dali.__version__
    except ImportError:
        dali_version = None
    import PIL

    cpu_model = None
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "dali": dali_version,
        "pillow": PIL.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu_name": None,
        "gpu_count": 0,
        # Other processes compete for the CPUs (DALI threads, DataLoader workers, a CPU model step).
        "load_average": load_average(),
    }
    if device.type == "cuda":
        info.update(gpu_name=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                    cuda=torch.version.cuda)
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def row_result(setting: dict[str, Any], timings: dict[str, Timing]) -> dict[str, Any]:
    """One sweep point as JSON: its setting, each mode's numbers, and the ratios between modes.

    Args:
        setting: the sweep point (data, threads, batch_size, ...), copied as is.
        timings: mode -> Timing, for the modes that ran.

    Returns:
        {**setting, "modes": {mode: {...}}, "ratios": {...}}; a ratio is None when a mode is missing.
    """
    modes = {}
    for mode in MODES:
        if mode not in timings:
            continue
        timing = timings[mode]
        entry = {"images": timing.images, "seconds": _digits(timing.seconds),
                 "images_per_s": _digits(timing.images_per_s)}
        if timing.runs:
            entry["runs_images_per_s"] = [_digits(value) for value in timing.runs]
        if timing.wait_fraction is not None:
            entry["wait_fraction"] = _digits(timing.wait_fraction)
            entry["hours_for_90_epochs"] = _digits(PAPER_EPOCHS * IMAGENET_TRAIN_IMAGES / timing.images_per_s / 3600)
        modes[mode] = entry
    ratios = {}
    for name, top, bottom in RATIOS:
        have = top in timings and bottom in timings
        ratios[name] = _digits(timings[top].images_per_s / timings[bottom].images_per_s) if have else None
    return {**setting, "modes": modes, "ratios": ratios}


def _digits(value: float) -> float:
    """Six significant digits: enough for any measurement, short in the JSON, also for values << 1."""
    return float(f"{value:.6g}")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one line per sweep point, images/s per mode, wait fraction and ratios."""
    head = ["data", "thr", "batch", "hw", "amp", *MODES, "wait", "e2e/model", "dali/pil", "e2e dali/pil"]
    lines = [head]
    for row in rows:
        modes, ratios = row["modes"], row["ratios"]
        wait = modes.get("e2e", {}).get("wait_fraction")
        lines.append([
            row["data"], str(row["threads"]), str(row["batch_size"]), _number(row["hw_decoder_load"], 2), row["amp"],
            *(_number(modes.get(mode, {}).get("images_per_s")) for mode in MODES),
            "-" if wait is None else f"{100 * wait:.1f}%",
            *(_number(ratios[name], 2) for name, _, _ in RATIOS),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


SHORT_KEYS = {"data": "", "threads": "thr=", "batch_size": "batch=", "hw_decoder_load": "hw=", "amp": "amp="}


def row_label(row: dict[str, Any], varying: Sequence[str]) -> str:
    """A short label, one line per field that varies across the rows (e.g. `thr=2` over `batch=64`)."""
    parts = [f"{SHORT_KEYS[key]}{row[key]}" for key in varying]
    return "\n".join(parts) or row["data"]


def draw_chart(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """A grouped bar chart: one group per sweep point, one bar per mode (images/s), written as PNG; returns the file written."""
    plt = pyplot()
    varying = [key for key in SHORT_KEYS if len({str(row[key]) for row in rows}) > 1]
    modes = [mode for mode in MODES if any(mode in row["modes"] for row in rows)]
    width = 0.8 / max(len(modes), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) * max(len(modes), 1) * 0.5), 4.5))
    for index, mode in enumerate(modes):
        values = [row["modes"].get(mode, {}).get("images_per_s", 0.0) for row in rows]
        positions = [group + (index - (len(modes) - 1) / 2) * width for group in range(len(rows))]
        bars = axes.bar(positions, values, width, label=MODE_TITLES[mode])
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    axes.set_xticks(range(len(rows)), [row_label(row, varying) for row in rows], fontsize=8)
    axes.set_ylabel("images / s")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7)
    return save_figure(figure, path, dpi=120)
