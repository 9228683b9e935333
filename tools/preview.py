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
from pipeline.devices import announce, device_option, resolve_device
from pipeline.errors import InputError, user_errors
from pipeline.filelist import read_file_list
from pipeline.shard_reader import EncodedImages
from pipeline.splits import SPLITS
from pipeline.writable import writable_file
from tools.viz.views import draw_grid, run_exposed


@click.command(name="preview")
@click.argument("root", type=click.Path(path_type=Path))
@click.argument("file_list", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@click.option("--images", "count", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Images from the start of the list (after --start).")
@click.option("--start", type=click.IntRange(0), default=0, show_default=True, help="First line of the list to use.")
@click.option("--samples", type=click.IntRange(1, 16), default=6, show_default=True,
              help="Training draws per image (train only).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("preview.png"), show_default=True)
@click.option("--npz", type=click.Path(path_type=Path), default=None, help="Also save the batch and parameters here.")
@click.option("--pca", type=click.Path(path_type=Path), default=None, help="pca.json (default: published ImageNet values).")
@click.option("--seed", type=int, default=0, show_default=True)
@device_option("The GPU runs the graph's GPU operators (nvJPEG).")
@user_errors
def main(root: Path, file_list: Path, split: str, count: int, start: int, samples: int, out: Path,
         npz: Path | None, pca: Path | None, seed: int, device: str) -> None:
    """Run the SPLIT graph on a few images of FILE_LIST (paths, or shard samples, relative to ROOT); write a PNG
    grid."""
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; ROOT is the folder the paths in {file_list} are relative to")
    writable_file(out, "--out")  # before the graph runs, not after
    if npz is not None:
        writable_file(npz, "--npz")
    entries = read_file_list(file_list)[start : start + count]
    if not entries:
        raise InputError(f"{file_list}: --start {start} is past the last of its lines")
    images = EncodedImages(root, entries, [file_list.parent])  # a shard list: through the index files beside it
    missing = images.missing([path for path, _ in entries])
    if missing:
        raise InputError(f"{root / missing[0]}: listed in {file_list} but missing; is ROOT right?")
    chosen = resolve_device(device)
    announce(chosen)
    # train_list only says where a shard list's index files are; the graph reads `entries`.
    cfg = DataConfig(root=root, train_list=file_list, pca=pca, seed=seed, device=chosen.dali,  # type: ignore[arg-type]
                     device_id=chosen.index)
    arrays = run_exposed(cfg, split, entries, samples)
    draw_grid(images, arrays, split, samples, out)
    click.echo(f"wrote {out} ({len(entries)} images, split {split})")
    if npz is not None:
        np.savez(npz, **arrays)
        click.echo(f"wrote {npz}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
