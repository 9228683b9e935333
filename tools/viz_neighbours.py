"""Nearest neighbours as in the paper's Figure 4: validation images beside the training images whose fc7
vectors (the last hidden layer, after ReLU) are closest in Euclidean distance.

Images go through the validation preprocessing of the pipeline (shorter side 256, centre 256x256, centre
224 crop, normalisation with the run's mean/std), the model is in eval mode (no dropout).
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.alexnet import build_model  # noqa: E402
from model.variants import net_of_checkpoint  # noqa: E402
from pipeline.constants import CROP_SIZE, STORED_SIZE  # noqa: E402
from pipeline.errors import InputError  # noqa: E402
from pipeline.filelist import read_class_table, read_file_list  # noqa: E402
from pipeline.lighting import colour_stats, subtracted_mean  # noqa: E402
from pipeline.pil_image import crop_anchor, stored_image  # noqa: E402
from tools.plotting import save_figure

NEIGHBOURS = 6


def load_model(checkpoint: Path) -> tuple[torch.nn.Module, dict]:
    """The network of a model.train checkpoint (keys arch, num_classes, state_dict, net), in eval mode on CPU,
    and the DataConfig the run recorded (empty for checkpoints without one)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint; give a run's checkpoint.pth.tar or model_best.pth.tar")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(state["arch"], int(state["num_classes"]), net=net_of_checkpoint(state))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise InputError(f"{path}: not a model.train checkpoint with arch, num_classes and state_dict ({error})") from None
    except InputError as error:  # an unusable "net" entry: name the file
        raise InputError(f"{path}: {error}") from None
    except Exception as error:  # unpickling failures come in several types
        raise InputError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    config = state.get("config")
    return model.eval(), (config.get("DataConfig", {}) if isinstance(config, dict) else {})


def centre_crops(root: Path, relpaths: list[str]) -> np.ndarray:
    """The validation view of each image: uint8 (n, 224, 224, 3)."""
    offset = crop_anchor(STORED_SIZE, CROP_SIZE, 0.5)
    return np.stack([stored_image(Path(root) / p)[offset:offset + CROP_SIZE, offset:offset + CROP_SIZE]
                     for p in relpaths])


@torch.no_grad()
def fc7_vectors(model: torch.nn.Module, crops: np.ndarray, mean: np.ndarray, std: np.ndarray,
                batch_size: int = 32) -> np.ndarray:
    """fc7 activations (n, 4096) of uint8 crops, normalised as (x - mean) / std on the 0-255 scale."""
    features = []
    for start in range(0, len(crops), batch_size):
        batch = (crops[start:start + batch_size].astype(np.float32) - mean) / std
        tensor = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        features.append(model.fc7_features(tensor).numpy())
        sys.stderr.write(f"\rfc7 features: {min(start + batch_size, len(crops))}/{len(crops)}")
    sys.stderr.write("\n")
    return np.concatenate(features)


def nearest(queries: np.ndarray, database: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Indices (n_queries, k) of the k database rows nearest to each query (Euclidean), nearest first."""
    # |q - d|^2 = |q|^2 - 2 q.d + |d|^2, in float64 so that ties and near-ties sort stably.
    q, d = queries.astype(np.float64), database.astype(np.float64)
    distances = (q ** 2).sum(1)[:, None] - 2 * q @ d.T + (d ** 2).sum(1)[None, :]
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def pick(entries: list[tuple[str, int]], count: int, seed: int) -> list[tuple[str, int]]:
    """`count` entries spread over the classes (round-robin over labels, random within a label)."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list] = {}
    for entry in entries:
        by_label.setdefault(entry[1], []).append(entry)
    pools = [list(rng.permutation(len(v))) for v in by_label.values()]
    chosen, labels = [], list(by_label)
    while len(chosen) < min(count, len(entries)):
        for label, pool in zip(labels, pools):
            if pool and len(chosen) < count:
                chosen.append(by_label[label][pool.pop()])
    return chosen


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
    model, data = load_model(checkpoint)
    train = read_file_list(lists / "train.txt")
    val = pick(read_file_list(lists / "val.txt"), queries, seed)
    if len(train) > max_train:
        train = [train[i] for i in sorted(np.random.default_rng(seed).permutation(len(train))[:max_train])]
    names = dict(enumerate(c for c, _ in read_class_table(lists / "classes.tsv"))) \
        if (lists / "classes.tsv").is_file() else {}
    stats = colour_stats(pca, normalize or data.get("normalize", "mean"), mean_window=data.get("mean_window", "centre"))
    offset = crop_anchor(STORED_SIZE, CROP_SIZE, 0.5)
    mean = subtracted_mean(stats, CROP_SIZE, offset, offset, False)  # the centre view's (3,) or (224, 224, 3) mean
    train_crops = centre_crops(root, [p for p, _ in train])
    val_crops = centre_crops(root, [p for p, _ in val])
    index = nearest(fc7_vectors(model, val_crops, mean, stats.std), fc7_vectors(model, train_crops, mean, stats.std))
    k = index.shape[1]
    figure, axes = plt.subplots(len(val), k + 1, figsize=(1.6 * (k + 1), 1.75 * len(val)), squeeze=False)
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
