"""`imagenet-tools preview`: run a DALI graph on a few images of a file list and show what it did.

    imagenet-tools preview ROOT lists/train.txt --out preview.png --npz batch.npz
    imagenet-tools preview ROOT lists/val.txt --split ten_crop --images 2 --out tencrop.png

The PNG has one row per image: the original, the paper's stored 256x256 image, then the graph's
outputs (training: --samples augmented draws, with crop corner, flip and alpha above each; val: the
centre crop; ten_crop: the ten views). With --npz the batch is saved as float32 HWC RGB on 0-255 before
normalisation (`images`), with `labels`, `files`, `stored` and, for training, the parameters drawn per
image (`crop_x`, `crop_y`, `flip`, `alpha`): what the tests and an audit check the augmentation against.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from pipeline.config import DataConfig
from pipeline.errors import InputError, user_errors
from pipeline.filelist import read_file_list


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


@click.command(name="preview")
@click.argument("root", type=click.Path(path_type=Path))
@click.argument("file_list", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["train", "val", "ten_crop"]), default="train", show_default=True)
@click.option("--images", "count", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Images from the start of the list (after --start).")
@click.option("--start", type=click.IntRange(0), default=0, show_default=True, help="First line of the list to use.")
@click.option("--samples", type=click.IntRange(1, 16), default=6, show_default=True,
              help="Training draws per image (train only).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("preview.png"), show_default=True)
@click.option("--npz", type=click.Path(path_type=Path), default=None, help="Also save the batch and parameters here.")
@click.option("--pca", type=click.Path(path_type=Path), default=None, help="pca.json (default: published ImageNet values).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@user_errors
def main(root: Path, file_list: Path, split: str, count: int, start: int, samples: int, out: Path,
         npz: Path | None, pca: Path | None, seed: int, device: str) -> None:
    """Run the SPLIT graph on a few images of FILE_LIST (paths relative to ROOT); write a PNG grid."""
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; ROOT is the folder the paths in {file_list} are relative to")
    entries = read_file_list(file_list)[start : start + count]
    if not entries:
        raise InputError(f"{file_list}: --start {start} is past the last of its lines")
    missing = [path for path, _ in entries if not (root / path).is_file()]
    if missing:
        raise InputError(f"{root / missing[0]}: listed in {file_list} but missing; is ROOT right?")
    cfg = DataConfig(root=root, pca=pca, seed=seed, device=device, device_id=0 if device == "gpu" else None)  # type: ignore[arg-type]
    arrays = run_preview(cfg, split, entries, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(root, arrays, split, samples, out)
    click.echo(f"wrote {out} ({len(entries)} images, split {split})")
    if npz is not None:
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz, **arrays)
        click.echo(f"wrote {npz}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
