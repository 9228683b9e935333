"""What a split's DALI graph makes of a few images: run once with its parameters exposed, drawn as a grid.

`imagenet-tools preview` shows it for any split (and saves the batch with --npz); the views come from the
graph itself (pipeline.graphs.build_pipeline(..., expose=True)), not from a re-implementation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DataConfig


def run_preview(cfg: DataConfig, split: str, entries: list[tuple[str, int]], samples: int) -> dict[str, np.ndarray]:
    """Run the split's graph once over `entries` (each repeated `samples` times for train), in order.

    Returns:
        The graph's exposed outputs as NumPy arrays ("raw" renamed "images"), plus "files".
    """
    from pipeline.graphs import as_numpy, build_pipeline

    from pipeline.loader import check_config, corrupt_image_error

    check_config(cfg)
    repeats = samples if split == "train" else 1
    batch = [entry for entry in entries for _ in range(repeats)]
    cfg = DataConfig(**{**cfg.__dict__, "batch_size": len(batch)})
    pipe, names = build_pipeline(cfg, split, entries=batch, shuffle=False, expose=True)  # type: ignore[arg-type]
    try:
        pipe.build()
        outputs = dict(zip(names, pipe.run()))
    except RuntimeError as error:
        raise corrupt_image_error(error, cfg.root, batch) from None
    arrays = {name: as_numpy(value) for name, value in outputs.items() if name != "images"}
    arrays["images"] = arrays.pop("raw").astype(np.float32)
    arrays["labels"] = arrays["labels"].reshape(-1).astype(np.int64)
    arrays["files"] = np.array([path for path, _ in batch])
    return arrays


def _row_titles(arrays: dict[str, np.ndarray], split: str, index: int, count: int) -> list[str]:
    if split == "train":
        titles = []
        for k in range(index * count, (index + 1) * count):
            alpha = ", ".join(f"{a:+.2f}" for a in arrays["alpha"][k])
            titles.append(f"x={arrays['crop_x'][k]} y={arrays['crop_y'][k]} flip={arrays['flip'][k]}\nα=({alpha})")
        return titles
    if split == "ten_crop":
        return ["top-left", "top-right", "bottom-left", "bottom-right", "centre"] * 1 + [
            f"{name} flipped" for name in ("top-left", "top-right", "bottom-left", "bottom-right", "centre")]
    return ["centre 224"]


def draw_grid(root: Path, arrays: dict[str, np.ndarray], split: str, samples: int, out: Path) -> None:
    """One row per image: original, stored 256x256, then the graph's views (clipped to 0-255 for display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    per_image = samples if split == "train" else 1
    rows = len(arrays["files"]) // per_image
    views = [arrays["images"][r * per_image : (r + 1) * per_image] for r in range(rows)]
    if split == "ten_crop":
        views = [v[0] for v in views]
    columns = 2 + len(views[0])
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
    for r in range(rows):
        file = arrays["files"][r * per_image]
        with Image.open(root / file) as original:
            panels = [np.asarray(original.convert("RGB")), arrays["stored"][r * per_image]]
        panels += [np.clip(v, 0, 255).astype(np.uint8) for v in views[r]]
        titles = [f"{Path(file).name}\n{panels[0].shape[1]}x{panels[0].shape[0]}", "stored 256x256"]
        titles += _row_titles(arrays, split, r, per_image)
        for axis, panel, title in zip(axes[r], panels, titles):
            axis.imshow(panel)
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
