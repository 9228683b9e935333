"""What a split's DALI graph makes of a few images: run once with its parameters exposed, drawn as a grid.

Each row: the original file, the stored 256x256 image (with the training crops outlined on it), then the
graph's views as the network receives them, before normalisation (training: random 224 crop, flip, PCA
lighting, with the parameters drawn above each; val: the centre crop; ten_crop: the ten views). The views
come from the graph itself (pipeline.graphs.build_pipeline(..., expose=True)), not from a re-implementation.
`imagenet-tools preview` draws it for any split (and saves the batch with --npz); `imagenet-tools visualize
augment` draws it for training images spread over the classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DataConfig
from pipeline.filelist import read_file_list
from pipeline.shard_reader import EncodedImages
from tools.shared.figures import pyplot, save_figure

# §6's ten views in pipeline.constants.TEN_CROP_POSITIONS' order.
TEN_CROP_TITLES = tuple(f"{corner}{' flipped' if mirrored else ''}" for mirrored in (0, 1)
                        for corner in ("top-left", "top-right", "bottom-left", "bottom-right", "centre"))
AUGMENT_TITLE = "training samples from the DALI training graph (before normalisation)"


def run_exposed(cfg: DataConfig, split: str, entries: list[tuple[str, int]], samples: int) -> dict[str, np.ndarray]:
    """Run the split's graph once over `entries` (each repeated `samples` times for train), in order.

    Returns:
        The graph's exposed outputs as NumPy arrays ("raw" renamed "images"), plus "files".
    """
    from pipeline.dali_loader import corrupt_image_error
    from pipeline.graphs import as_numpy, build_pipeline
    from pipeline.loader import check_config

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


def _drawn(arrays: dict[str, np.ndarray], k: int) -> tuple[int, int, int, str]:
    """Sample k's crop corner, flip and alpha as drawn by the training graph."""
    x, y, flip = (int(np.ravel(arrays[name][k])[0]) for name in ("crop_x", "crop_y", "flip"))
    return x, y, flip, ", ".join(f"{a:+.2f}" for a in np.ravel(arrays["alpha"][k]))


def _row_titles(arrays: dict[str, np.ndarray], split: str, index: int, count: int) -> list[str]:
    if split == "train":
        return [f"x={x} y={y} flip={flip}\nα=({alpha})"
                for x, y, flip, alpha in (_drawn(arrays, k) for k in range(index * count, (index + 1) * count))]
    return list(TEN_CROP_TITLES) if split == "ten_crop" else ["centre 224"]


def draw_grid(images: EncodedImages, arrays: dict[str, np.ndarray], split: str, samples: int, out: Path,
              title: str | None = None) -> Path:
    """One row per image: original, stored 256x256, then the graph's views (clipped to 0-255 for display).

    Args:
        images: the listed files or shard samples (the originals are read from it).
        arrays: run_exposed's output.
        split, samples: as given to run_exposed.
        out: the PNG to write.
        title: a heading over the grid.

    Returns:
        out.
    """
    from matplotlib.patches import Rectangle
    from PIL import Image

    from pipeline.pil_image import upright_rgb

    plt = pyplot()
    per_image = samples if split == "train" else 1
    rows = len(arrays["files"]) // per_image
    views = [arrays["images"][r * per_image : (r + 1) * per_image] for r in range(rows)]
    if split == "ten_crop":
        views = [v[0] for v in views]
    columns = 2 + len(views[0])
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.6 * rows), squeeze=False)
    for r in range(rows):
        file = arrays["files"][r * per_image]
        with Image.open(images.open(str(file))) as original:
            panels = [np.asarray(upright_rgb(original)), arrays["stored"][r * per_image]]  # as DALI shows it
        panels += [np.clip(v, 0, 255).astype(np.uint8) for v in views[r]]
        titles = [f"{Path(file).name}\n{panels[0].shape[1]}x{panels[0].shape[0]}", "stored 256x256"]
        titles += _row_titles(arrays, split, r, per_image)
        colours = ["black", "black"] + [f"C{k}" if split == "train" else "black" for k in range(len(views[r]))]
        for axis, panel, text, colour in zip(axes[r], panels, titles, colours):
            axis.imshow(panel)
            axis.set_title(text, fontsize=7, color=colour)
            axis.axis("off")
        if split == "train":  # each sample's crop window on the stored image, in the sample's colour
            crop = views[r].shape[1]
            for k in range(per_image):
                x, y, _, _ = _drawn(arrays, r * per_image + k)
                axes[r, 1].add_patch(Rectangle((x, y), crop, crop, fill=False, color=f"C{k}", lw=1))
    if title:
        figure.suptitle(title, fontsize=9)
    return save_figure(figure, out, dpi=80)


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


def draw_augmentations(root: Path, lists: Path, out_png: Path, pca: Path | None = None, images: int = 4,
                       samples: int = 4, seed: int = 0) -> Path:
    """The grid for `images` training images (spread over classes) and `samples` training samples each.

    Args:
        root, lists: the image root and prepare's lists folder (train.txt is used).
        out_png: picture to write.
        pca: pca.json for the lighting (default: published ImageNet values).
        images, samples: rows, and training samples per row.
        seed: which images, and the graph's seed.

    Returns:
        out_png.
    """
    train_list = Path(lists) / "train.txt"
    entries = pick(read_file_list(train_list), images, seed)
    # train_list: a shard list's samples are found through the index files beside it.
    cfg = DataConfig(root=Path(root), train_list=train_list, pca=pca, device="cpu", num_threads=1, seed=seed)
    arrays = run_exposed(cfg, "train", entries, samples)
    originals = EncodedImages(root, entries, [Path(lists)])
    return draw_grid(originals, arrays, "train", samples, out_png, AUGMENT_TITLE)
