"""Per-class accuracy and the confusion matrix of a checkpoint on the validation list (centre crops).

Images go through the validation view of the PIL reference path (shorter side 256, centre 256x256, centre 224,
the run's normalisation), the model in eval mode, as neighbours.py does; top-1 over the whole list equals
`model.train -e`'s centre-crop figure up to the PIL/DALI resize difference (docs/pipeline.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint, model_from
from model.provenance import check_checkpoint
from pipeline.atomic import write_atomic
from pipeline.constants import CROP_SIZE, STORED_SIZE
from pipeline.errors import InputError
from pipeline.filelist import read_class_table, read_file_list
from pipeline.lighting import colour_stats
from pipeline.pil_image import crop_anchor
from pipeline.pil_loader import normalised
from pipeline.shard_reader import EncodedImages
from tools.shared.figures import pyplot, save_figure
from tools.shared.jobs import Progress
from tools.viz.neighbours import centre_crops


@torch.no_grad()
def predictions(model: torch.nn.Module, images: EncodedImages, paths: list[str], stats,
                batch_size: int = 64) -> np.ndarray:
    """Top-1 class of each image's centre crop (files or shard samples), `batch_size` images at a time."""
    offset = crop_anchor(STORED_SIZE, CROP_SIZE, 0.5)
    out, progress = [], Progress("validation images", len(paths), "images")
    for start in range(0, len(paths), batch_size):
        crops = centre_crops(images, paths[start:start + batch_size]).astype(np.float32)
        batch = normalised(crops, stats, CROP_SIZE, [(offset, offset, False)] * len(crops))
        out.append(model(batch).argmax(1).numpy())
        progress.update(len(crops))
    progress.finish()
    return np.concatenate(out)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[i, j]: images of class i predicted as j."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def draw_confusion(checkpoint: Path, root: Path, lists: Path, out_png: Path, pca: Path | None = None,
                   normalize: str | None = None) -> tuple[Path, Path]:
    """confusion.png (rows: true class, columns: predicted, each row in % of its images) and confusion.json
    (the counts, each class's accuracy, the overall top-1 error) beside it. Returns both paths."""
    lists = Path(lists)
    classes = read_class_table(lists / "classes.tsv")
    if not (lists / "val.txt").is_file():
        raise InputError(f"--lists {lists} has no val.txt (prepare found no validation set): there is nothing to "
                         "score; give the lists of a tree with val/ images")
    state = load_checkpoint(checkpoint, num_classes=len(classes))
    data = state.get("config", {}).get("DataConfig", {}) if isinstance(state.get("config"), dict) else {}
    # The statistics the run was trained with, unless --pca names others; checked like -e checks them.
    pca = Path(pca) if pca else (Path(data["pca"]) if data.get("pca") else None)
    check_checkpoint(state, Path(checkpoint), str(checkpoint), pca, classes, lists / "classes.tsv", accept=False)
    model = model_from(state, checkpoint)
    stats = colour_stats(pca, normalize or data.get("normalize", "mean"), mean_window=data.get("mean_window", "centre"))
    val = read_file_list(lists / "val.txt")
    labels = np.array([label for _, label in val])
    images = EncodedImages(root, val, [lists])
    counts = confusion_matrix(labels, predictions(model, images, [p for p, _ in val], stats), len(classes))
    totals = counts.sum(1)
    accuracy = np.where(totals > 0, np.diag(counts) / np.maximum(totals, 1), np.nan)
    present = totals > 0
    names = [name for _, name in classes]
    summary = {"checkpoint": str(checkpoint), "images": int(totals.sum()),
               "top1_err": round(100.0 * (1 - np.trace(counts) / max(totals.sum(), 1)), 3),
               "classes": [{"index": i, "id": cid, "name": name, "images": int(totals[i]),
                            "accuracy": None if not present[i] else round(100.0 * float(accuracy[i]), 2)}
                           for i, (cid, name) in enumerate(classes)],
               "counts": counts.tolist()}
    out_json = Path(out_png).with_suffix(".json")
    write_atomic(out_json, json.dumps(summary, indent=1) + "\n")
    shown = np.flatnonzero(present)[:50]  # a readable picture: at most 50 classes (the JSON has them all)
    share = 100.0 * counts[np.ix_(shown, shown)] / np.maximum(totals[shown, None], 1)
    size = 2 + 0.45 * len(shown)
    figure, ax = pyplot().subplots(figsize=(size + 2, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(shown)), [names[i][:18] for i in shown], rotation=90, fontsize=7)
    ax.set_yticks(range(len(shown)), [f"{names[i][:18]} {100 * accuracy[i]:.0f}%" for i in shown], fontsize=7)
    for (row, column), value in np.ndenumerate(share):
        if value >= 1:
            ax.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if value > 50 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (its accuracy)")
    ax.set_title(f"validation, centre crop: top-1 error {summary['top1_err']:.2f} % on {summary['images']} images",
                 fontsize=9)
    figure.colorbar(image, ax=ax, label="% of the row's images")
    return save_figure(figure, out_png, dpi=100), out_json
