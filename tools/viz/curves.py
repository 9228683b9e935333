"""Learning curves from RUNDIR/metrics.jsonl: loss and top-1/top-5 error per epoch, with the lr drops."""
from __future__ import annotations

import json
from pathlib import Path

from model.run_log import METRICS_NAME
from pipeline.errors import InputError
from tools.shared.figures import pyplot, save_figure


def read_metrics(path: Path) -> list[dict]:
    """Read metrics.jsonl (a run dir or the file itself): one dict per epoch, in file order.

    Raises:
        InputError: no file, a line that is not JSON or has no "epoch", or an empty file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        raise InputError(f"{path}: no metrics file; give the RUNDIR of a `python -m model.train --out RUNDIR` run")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{number}: not a JSON line; was the file cut short? remove the line") from None
            if not isinstance(record, dict) or "epoch" not in record:
                raise InputError(f"{path}:{number}: a metrics line needs an 'epoch' key")
            records.append(record)
    if not records:
        raise InputError(f"{path}: no epoch recorded yet; run at least one epoch")
    return records


def lr_drops(records: list[dict]) -> list[int]:
    """Epochs whose learning rate is lower than the previous epoch's."""
    drops = []
    for before, after in zip(records, records[1:]):
        if before.get("lr") is not None and after.get("lr") is not None and after["lr"] < before["lr"]:
            drops.append(after["epoch"])
    return drops


def _series(records: list[dict], key: str) -> tuple[list, list]:
    """(epochs, values) of `key`, leaving out epochs where it is missing or null."""
    pairs = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def draw_curves(metrics: Path, out_png: Path) -> Path:
    """Plot loss (left) and error rates (right) against the epoch; dashed lines where the lr drops.

    Args:
        metrics: RUNDIR or RUNDIR/metrics.jsonl.
        out_png: picture to write.

    Returns:
        out_png.
    """
    records = read_metrics(metrics)
    figure, (loss_axes, error_axes) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("train_loss", "C0-"), ("val_loss", "C1-")):
        epochs, values = _series(records, key)
        if values:
            loss_axes.plot(epochs, values, style, marker="o", ms=3, label=key.replace("_", " "))
    curves = (("train_top1_err", "C0-"), ("train_top5_err", "C0:"), ("val_top1_err", "C1-"),
              ("val_top5_err", "C1:"), ("val10_top1_err", "C2-"), ("val10_top5_err", "C2:"))
    for key, style in curves:
        epochs, values = _series(records, key)
        if values:
            label = key.replace("val10", "val 10-crop").replace("_err", "").replace("_", " ")
            error_axes.plot(epochs, values, style, marker="o", ms=3, label=label)
    for axes, title, unit in ((loss_axes, "loss", "cross-entropy"), (error_axes, "error", "error (%)")):
        for epoch in lr_drops(records):
            axes.axvline(epoch - 0.5, color="grey", ls="--", lw=1)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel(unit)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    if lr_drops(records):
        error_axes.text(0.01, 0.01, "dashed: learning rate / 10", transform=error_axes.transAxes, fontsize=8)
    error_axes.set_ylim(bottom=0)
    return save_figure(figure, out_png, dpi=100)
