"""A run's pictures, all drawn at once, and a Markdown report of its numbers (from metrics.jsonl and an optional
evaluation JSON) that links them."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.atomic import write_atomic
from pipeline.errors import InputError
from tools.viz.curves import draw_curves, read_metrics
from tools.viz.kernels import draw_kernels
from tools.viz.neighbours import draw_neighbours
from tools.viz.run_folder import find_checkpoint, run_folder
from tools.viz.views import draw_augmentations

ROWS = (
    ("val_top1_err", "validation top-1 error, centre crop (%)"),
    ("val_top5_err", "validation top-5 error, centre crop (%)"),
    ("val10_top1_err", "validation top-1 error, 10 crops (%)"),
    ("val10_top5_err", "validation top-5 error, 10 crops (%)"),
    ("train_loss", "training loss"),
    ("train_top1_err", "training top-1 error (%)"),
    ("images_per_s", "training images/s"),
    ("data_wait_frac", "share of step time waiting for data"),
)


def make_pictures(run: Path, root: Path, lists: Path, pca: Path | None, normalize: str | None, folder: Path,
                  max_train: int = 1000) -> dict[str, Path]:
    """Draw all pictures of a run into `folder`.

    Returns:
        caption -> PNG path, in report order.
    """
    checkpoint = find_checkpoint(run)
    return {
        "Training samples (random 224 crops, flips, PCA lighting)":
            draw_augmentations(root, lists, folder / "augment.png", pca),
        "Learning curves": draw_curves(run_folder(run), folder / "curves.png"),
        "conv1 kernels (Figure 3: tower 1 above, tower 2 below)": draw_kernels(checkpoint, folder / "conv1_kernels.png"),
        "Nearest neighbours in fc7 space (Figure 4)":
            draw_neighbours(checkpoint, root, lists, folder / "neighbours.png", pca, normalize, max_train=max_train),
    }


def _fmt(value) -> str:
    """Numbers with 2 decimals (3 for fractions), '-' for a missing value."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def write_report(run_dir: Path, out_md: Path, pictures: dict[str, Path], extra: dict | None = None,
                 title: str = "Run report") -> Path:
    """Write the report.

    Args:
        run_dir: the run folder (metrics.jsonl inside).
        out_md: Markdown file to write; pictures are linked relative to it.
        pictures: caption -> PNG path.
        extra: more numbers to list (e.g. the final 10-crop evaluation, wall time), name -> value.
        title: the first heading.

    Returns:
        out_md.
    """
    records = read_metrics(run_dir)
    last = records[-1]
    best = min((r for r in records if r.get("val_top1_err") is not None),
               key=lambda r: r["val_top1_err"], default=None)
    lines = [f"# {title}", "", f"Run folder: `{run_dir}`; {len(records)} epochs recorded.", "",
             f"| | last epoch ({last['epoch']}) | best epoch ({best['epoch'] if best else '-'}) |",
             "|---|---|---|"]
    for key, label in ROWS:
        lines.append(f"| {label} | {_fmt(last.get(key))} | {_fmt(best.get(key) if best else None)} |")
    lr_values = [r.get("lr") for r in records]
    rates = ", ".join("-" if v is None else f"{v:g}" for v in lr_values)
    lines += ["", f"Learning rates by epoch: {rates}."]
    total = sum(r.get("time_s") or 0.0 for r in records)
    lines += [f"Training time (sum of epochs' time_s): {total:.0f} s.", ""]
    if extra:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in extra.items()] + [""]
    out_md = Path(out_md)
    for caption, path in pictures.items():
        link = os.path.relpath(Path(path), out_md.parent)
        lines += [f"## {caption}", "", f"![{caption}]({link})", ""]
    try:
        write_atomic(out_md, "\n".join(lines))
    except OSError as error:
        raise InputError(f"{out_md}: cannot write the report ({error.strerror})") from None
    return out_md


def read_json(path: Path) -> dict:
    """A JSON object from a file (e.g. an evaluation summary), with a one-line error."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read a JSON object ({error})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object")
    return value
