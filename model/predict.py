"""Classify images with a trained checkpoint: the top-5 classes, their names and probabilities.

    python -m model.predict runs/a1/model_best.pth.tar photo1.jpg photo2.jpg --classes lists/classes.tsv

The checkpoint's class table and statistics are checked first (model/provenance.py): other classes in --classes
are refused, naming the first that differs; another pca.json or mean image than the run's is refused unless
--accept-pca-change.

Preprocessing is validation's, by construction: the PIL baseline's stored image, centre crop and
normalisation (shorter side 256, centre 256x256, centre 224 crop, the normalisation the checkpoint was
trained with).
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from model.checkpoint import load_checkpoint, model_from
from model.provenance import ACCEPT_FLAG, check_checkpoint
from pipeline.constants import CROP_SIZE, NORMALIZATIONS, STORED_SIZE
from pipeline.devices import announce, device_option, resolve_device
from pipeline.errors import InputError, user_errors
from pipeline.filelist import read_class_table
from pipeline.lighting import colour_stats
from pipeline.pil_image import centre_crop, crop_anchor, stored_image
from pipeline.pil_loader import normalised

TOP = 5


def predict(model: torch.nn.Module, images: list[Path], normalize: str, pca: Path | None, device: torch.device,
            top: int = TOP, mean_window: str = "centre") -> list[tuple[list[int], list[float]]]:
    """Top-`top` class indices and softmax probabilities for each image.

    Args:
        model: a network in eval mode on `device`.
        images: image files (any format PIL reads).
        normalize, pca: the training run's normalisation ("image"/"mean"/"meanstd") and pca.json (None: defaults).
        device: where the model is.
        top: how many classes per image.
        mean_window: the run's window of the mean image (normalize "image"; the centre view takes the same
            window in both readings).

    Returns:
        One (indices, probabilities) pair per image, most likely first.
    """
    stats = colour_stats(pca, normalize, mean_window=mean_window)
    centre = crop_anchor(STORED_SIZE, CROP_SIZE)
    results = []
    with torch.no_grad():
        for path in images:
            view = centre_crop(stored_image(Path(path)), CROP_SIZE).astype(np.float32)
            tensor = normalised(view, stats, CROP_SIZE, [(centre, centre, False)])
            probs = torch.softmax(model(tensor[None].to(device)).float(), dim=1)[0]
            values, indices = probs.topk(min(top, probs.numel()))
            results.append((indices.tolist(), values.tolist()))
    return results


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--classes", type=click.Path(), required=True, help="classes.tsv of the lists it was trained on.")
@device_option()
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=None,
              help="Override the checkpoint's normalisation (it is read from the checkpoint).")
@click.option("--pca", type=click.Path(), default=None, help="Override the checkpoint's pca.json (its mean).")
@click.option(ACCEPT_FLAG, "accept_pca_change", is_flag=True,
              help="Go on with other statistics than the pca.json and mean image the checkpoint records.")
@user_errors
def main(checkpoint: str, images: tuple[str, ...], classes: str, device: str, normalize: str | None,
         pca: str | None, accept_pca_change: bool) -> None:
    """Print the top-5 classes of each IMAGE according to CHECKPOINT."""
    chosen = resolve_device(device)
    announce(chosen)  # the command's first line: where it runs
    table = read_class_table(Path(classes))
    state = load_checkpoint(Path(checkpoint), num_classes=len(table))
    data_config = state.get("config", {}).get("DataConfig", {}) if isinstance(state.get("config"), dict) else {}
    normalize = normalize or data_config.get("normalize", "mean")
    pca_path = Path(pca) if pca else (Path(data_config["pca"]) if data_config.get("pca") else None)
    if pca_path is not None and not pca_path.is_file():
        raise InputError(f"{pca_path}: the checkpoint was trained with this pca.json (its mean); pass --pca PATH")
    check_checkpoint(state, Path(checkpoint), checkpoint, pca_path, table, Path(classes), accept_pca_change)
    torch_device = torch.device(chosen.name)
    model = model_from(state, Path(checkpoint)).to(torch_device)
    window = data_config.get("mean_window", "centre")
    failed = 0
    for image in images:  # one bad file is reported and skipped; the others are still classified
        try:
            check_image_file(Path(image))
            [(indices, probs)] = predict(model, [Path(image)], normalize, pca_path, torch_device, mean_window=window)
        except InputError as error:
            if len(images) == 1:
                raise
            failed += 1
            click.echo(f"Error: {error}", err=True)
            continue
        print(image)
        for index, prob in zip(indices, probs):
            wnid, name = table[index]
            print(f"  {prob:7.2%}  {index:4d}  {wnid}  {name}")
    if failed:
        raise InputError(f"{failed} of {len(images)} images could not be classified (each is named above)")


def check_image_file(path: Path) -> None:
    """InputError unless `path` is a file (a folder or a missing path each get their own words)."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file; give the image files (e.g. {path}/*.JPEG)")
    if not path.is_file():
        raise InputError(f"{path}: no such image file")


if __name__ == "__main__":
    main()
