"""One batch of a DALI graph with its parameters exposed, and how far it is from NumPy's version of §2, §4.1
and §6 applied to the graph's own stored 256x256 images (crop, flip, lighting, normalisation: exact up to
float rounding, whatever the device decoded)."""
from __future__ import annotations

import numpy as np

from pipeline.config import DataConfig
from pipeline.constants import CROP_SIZE, STORED_SIZE, TEN_CROP_POSITIONS
from pipeline.graphs import as_numpy, build_pipeline
from pipeline.lighting import colour_stats, lighting_offset
from pipeline.splits import split_entries
from tools.checkup.record import CheckFailed

# float32 arithmetic on 0-255 values (the graphs' tests use the same bound).
EXACT_BOUND = 2e-3
SPLITS = ("train", "val", "ten_crop")


def run_graph(cfg: DataConfig, split: str) -> dict[str, np.ndarray]:
    """The first batch of `split` in list order (no shuffle: a CPU and a GPU graph see the same files)."""
    entries = split_entries(cfg, split)  # type: ignore[arg-type]
    pipe, names = build_pipeline(cfg, split, entries=entries[: cfg.batch_size], shuffle=False, expose=True)
    pipe.build()
    outputs = {name: as_numpy(out) for name, out in zip(names, pipe.run())}
    del pipe
    return outputs


def crop(stored: np.ndarray, x: int, y: int, flip: bool) -> np.ndarray:
    view = stored[y : y + CROP_SIZE, x : x + CROP_SIZE].astype(np.float64)
    return view[:, ::-1] if flip else view


def corner(position: float) -> int:
    """crop_pos in [0, 1] -> the pixel DALI crops at (round half away from zero, as pipeline/graphs.py)."""
    return int(np.floor(position * (STORED_SIZE - CROP_SIZE) + 0.5))


def expected_raw(out: dict[str, np.ndarray], split: str, cfg: DataConfig, stored: np.ndarray | None = None) -> np.ndarray:
    """NumPy's crops (and lighting) of `stored` (default: the graph's own) with the graph's drawn parameters."""
    stored = out["stored"] if stored is None else stored
    stats = colour_stats(cfg.pca, cfg.normalize, cfg.lighting_scale, cfg.mean_window)
    views = []
    for i in range(len(stored)):
        if split == "train":
            offset = lighting_offset(stats, out["alpha"][i].astype(np.float64))
            views.append(crop(stored[i], int(out["crop_x"][i]), int(out["crop_y"][i]), bool(out["flip"][i])) + offset)
        elif split == "val":
            views.append(crop(stored[i], corner(0.5), corner(0.5), False))
        else:
            views.append(np.stack([crop(stored[i], corner(x), corner(y), bool(m)) for x, y, m in TEN_CROP_POSITIONS]))
    return np.stack(views)


def normalised(raw: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """(raw - mean) / std in the graph's layout (channels first for NCHW)."""
    stats = colour_stats(cfg.pca, cfg.normalize, cfg.lighting_scale, cfg.mean_window)
    images = (raw - stats.mean) / stats.std
    return np.moveaxis(images, -1, -3) if cfg.layout == "NCHW" else images


def against_numpy(out: dict[str, np.ndarray], split: str, cfg: DataConfig) -> dict:
    """Shapes, ranges, and the largest difference of the crops and the normalised images from NumPy's."""
    raw = expected_raw(out, split, cfg)
    images = out["images"].astype(np.float64)
    figures = {"images_shape": list(images.shape), "images_dtype": str(out["images"].dtype),
               "images_range": [float(images.min()), float(images.max())],
               "raw_max_abs_diff": float(np.abs(out["raw"] - raw).max()),
               "images_max_abs_diff": float(np.abs(images - normalised(raw, cfg)).max())}
    views = (10,) if split == "ten_crop" else ()
    channels = (3, CROP_SIZE, CROP_SIZE) if cfg.layout == "NCHW" else (CROP_SIZE, CROP_SIZE, 3)
    if images.shape != (cfg.batch_size, *views, *channels):
        raise CheckFailed(f"{split}: images of shape {images.shape}, expected {(cfg.batch_size, *views, *channels)}",
                          figures)
    worst = max(figures["raw_max_abs_diff"], figures["images_max_abs_diff"])
    if not np.isfinite(images).all() or worst > EXACT_BOUND:
        raise CheckFailed(f"{split}: differs from NumPy's crops/flips/lighting by {worst:.3g} "
                          f"(bound {EXACT_BOUND})", figures)
    return figures


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    """max and mean |a - b| (grey levels for images on 0-255)."""
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max_abs_diff": float(delta.max()), "mean_abs_diff": float(delta.mean())}
