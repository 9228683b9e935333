"""Nearest neighbours as in the paper's Figure 4: validation images beside the training images whose fc7
vectors (the last hidden layer, after ReLU) are closest in Euclidean distance.

Images go through the validation preprocessing of the pipeline (shorter side 256, centre 256x256, centre
224 crop, normalisation with the run's mean/std), the model is in eval mode (no dropout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint, model_from
from pipeline.constants import CROP_SIZE, STORED_SIZE
from pipeline.filelist import read_class_table, read_file_list
from pipeline.lighting import ColourStats, colour_stats
from pipeline.pil_image import centre_crop, crop_anchor
from pipeline.pil_loader import normalised
from pipeline.shard_reader import EncodedImages
from tools.shared.figures import pyplot, save_figure
from tools.shared.jobs import Progress
from tools.viz.views import pick

NEIGHBOURS = 6


def centre_crops(images: EncodedImages, relpaths: list[str]) -> np.ndarray:
    """The validation view of each image (a file or a shard sample): uint8 (n, 224, 224, 3)."""
    return np.stack([centre_crop(images.stored(p), CROP_SIZE) for p in relpaths])


@torch.no_grad()
def fc7_vectors(model: torch.nn.Module, crops: np.ndarray, stats: ColourStats, batch_size: int = 32) -> np.ndarray:
    """fc7 activations (n, 4096) of uint8 centre crops, normalised as the pipeline does ((x - mean) / std, 0-255
    scale; the centre view's window of the mean image with normalize "image")."""
    offset = crop_anchor(STORED_SIZE, CROP_SIZE, 0.5)
    centre = (offset, offset, False)
    features, progress = [], Progress("fc7 features", len(crops), "images")
    for start in range(0, len(crops), batch_size):
        chunk = crops[start:start + batch_size].astype(np.float32)
        batch = normalised(chunk, stats, CROP_SIZE, [centre] * len(chunk))
        features.append(model.fc7_features(batch).numpy())
        progress.update(len(features[-1]))
    progress.finish()
    return np.concatenate(features)


def nearest(queries: np.ndarray, database: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Indices (n_queries, k) of the k database rows nearest to each query (Euclidean), nearest first."""
    # |q - d|^2 = |q|^2 - 2 q.d + |d|^2, in float64 so that ties and near-ties sort stably.
    q, d = queries.astype(np.float64), database.astype(np.float64)
    distances = (q ** 2).sum(1)[:, None] - 2 * q @ d.T + (d ** 2).sum(1)[None, :]
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def draw_neighbours(checkpoint: Path, root: Path, lists: Path, out_png: Path, pca: Path | None = None,
                    normalize: str | None = None, queries: int = 5, max_train: int = 1000, seed: int = 0) -> Path:
    """Figure 4: each row a validation image, then its NEIGHBOURS nearest training images in fc7 space.

    Args:
        checkpoint: a model.train checkpoint.
        root, lists: the image root and the folder with train.txt / val.txt (and classes.tsv) of the run.
        out_png: picture to write.
        pca, normalize: the run's pca.json and normalisation (None: the checkpoint's, else "mean").
        queries: validation images shown.
        max_train: training images searched (a random subset when the list is longer; fc7 costs a forward pass).
        seed: which images.

    Returns:
        out_png.
    """
    lists = Path(lists)
    state = load_checkpoint(checkpoint)
    model = model_from(state, checkpoint)
    config = state.get("config")
    data = config.get("DataConfig", {}) if isinstance(config, dict) else {}
    train = read_file_list(lists / "train.txt")
    val = pick(read_file_list(lists / "val.txt"), queries, seed)
    if len(train) > max_train:
        train = [train[i] for i in sorted(np.random.default_rng(seed).permutation(len(train))[:max_train])]
    names = dict(enumerate(c for c, _ in read_class_table(lists / "classes.tsv"))) \
        if (lists / "classes.tsv").is_file() else {}
    stats = colour_stats(pca, normalize or data.get("normalize", "mean"), mean_window=data.get("mean_window", "centre"))
    train_crops = centre_crops(EncodedImages(root, train, [lists]), [p for p, _ in train])
    val_crops = centre_crops(EncodedImages(root, val, [lists]), [p for p, _ in val])
    index = nearest(fc7_vectors(model, val_crops, stats), fc7_vectors(model, train_crops, stats))
    k = index.shape[1]
    figure, axes = pyplot().subplots(len(val), k + 1, figsize=(1.6 * (k + 1), 1.75 * len(val)), squeeze=False)
    for row, (query, label) in enumerate(val):
        cells = [(val_crops[row], label, "red")] + [(train_crops[j], train[j][1], "none") for j in index[row]]
        for column, (crop, cls, edge) in enumerate(cells):
            ax = axes[row, column]
            ax.imshow(crop)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(edge)
                spine.set_linewidth(3 if edge != "none" else 0)
            mark = "" if column == 0 else (" ✓" if cls == label else " ✗")
            ax.set_title(f"{names.get(cls, cls)}{mark}"[:22], fontsize=7)
    figure.suptitle("validation image (red) and its 6 nearest training images in fc7 space", fontsize=9)
    return save_figure(figure, out_png, dpi=90)
