"""The augmentation grid: what the training graph makes of a few images (pipeline.graphs, DALI on the CPU).

Each row: the original file, the stored 256x256 image with the crop windows drawn on it, then training
samples (random 224 crop, flip, PCA lighting) as the network receives them, before normalisation. The
samples come from the training graph itself (build_pipeline(..., expose=True)), so the picture shows
exactly what training does, not a re-implementation of it.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.config import DataConfig  # noqa: E402
from pipeline.constants import CROP_SIZE  # noqa: E402
from pipeline.filelist import read_file_list  # noqa: E402
from pipeline.graphs import as_numpy, build_pipeline  # noqa: E402
from tools.viz.neighbours import pick  # noqa: E402
from tools.shared.figures import save_figure


def training_samples(root: Path, entries: list[tuple[str, int]], samples: int, pca: Path | None,
                     seed: int) -> dict[str, np.ndarray]:
    """Run the CPU training graph on each entry `samples` times.

    Returns:
        The exposed outputs (stored, raw, crop_x, crop_y, flip, alpha), first axis = entry * samples.
    """
    repeated = [entry for entry in entries for _ in range(samples)]
    cfg = DataConfig(root=Path(root), pca=pca, batch_size=len(repeated), device="cpu", num_threads=1, seed=seed)
    pipe, names = build_pipeline(cfg, "train", entries=repeated, shuffle=False, expose=True)
    pipe.build()
    outputs = dict(zip(names, pipe.run()))
    return {name: as_numpy(outputs[name]) for name in ("stored", "raw", "crop_x", "crop_y", "flip", "alpha")}


def draw_augmentations(root: Path, lists: Path, out_png: Path, pca: Path | None = None, images: int = 4,
                       samples: int = 4, seed: int = 0) -> Path:
    """Draw the grid for `images` training images (spread over classes) and `samples` samples each.

    Args:
        root, lists: the image root and prepare's lists folder (train.txt is used).
        out_png: picture to write.
        pca: pca.json for the lighting (default: published ImageNet values).
        images, samples: rows, and training samples per row.
        seed: which images, and the graph's seed.

    Returns:
        out_png.
    """
    entries = pick(read_file_list(Path(lists) / "train.txt"), images, seed)
    out = training_samples(root, entries, samples, pca, seed)
    figure, axes = plt.subplots(len(entries), samples + 2, figsize=(1.9 * (samples + 2), 2.0 * len(entries)),
                                squeeze=False)
    for row, (relpath, label) in enumerate(entries):
        with Image.open(Path(root) / relpath) as original:
            axes[row, 0].imshow(original.convert("RGB"))
            axes[row, 0].set_title(f"original {original.size[0]}x{original.size[1]}", fontsize=7)
        first = row * samples
        axes[row, 1].imshow(out["stored"][first])
        axes[row, 1].set_title("stored 256x256 + crops", fontsize=7)
        for k in range(samples):
            i = first + k
            x, y = int(out["crop_x"][i].ravel()[0]), int(out["crop_y"][i].ravel()[0])
            axes[row, 1].add_patch(Rectangle((x, y), CROP_SIZE, CROP_SIZE, fill=False, color=f"C{k}", lw=1))
            sample = np.clip(out["raw"][i], 0, 255).astype(np.uint8)
            axes[row, 2 + k].imshow(sample)
            flip = " flip" if int(out["flip"][i].ravel()[0]) else ""
            alpha = ",".join(f"{a:+.2f}" for a in out["alpha"][i].ravel())
            axes[row, 2 + k].set_title(f"({x},{y}){flip}\nα={alpha}", fontsize=6, color=f"C{k}")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    figure.suptitle("training samples from the DALI training graph (before normalisation)", fontsize=9)
    return save_figure(figure, out_png, dpi=90)
