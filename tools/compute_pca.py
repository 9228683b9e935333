"""`imagenet-tools compute-pca`: the RGB covariance of the training set and its eigen-decomposition.

The paper's colour augmentation (§4.1) adds eigvec @ (alpha * eigval) to every pixel; everyone copies
fb.resnet.torch's ImageNet constants. This computes them for your own list of images:

    imagenet-tools compute-pca --list out/train.txt --root /data/imagenet --out out/pca.json
    imagenet-tools compute-pca ... --max-images 100000 --seed 0 --workers 8   # a uniform sample
    imagenet-tools compute-pca ... --device cuda                              # DALI nvJPEG + GPU resize
    imagenet-tools compute-pca --check out/pca.json                           # validate a file
    imagenet-tools compute-pca ... --out out/pca.json --overwrite             # replace an existing one

An existing pca.json is replaced only with --overwrite: checkpoints and ablation plans record the sha256 of
the pca.json and mean image they were trained with (model/provenance.py), and refuse other ones.

The pixels are those training sees: pipeline.graphs' DALI decode -> shorter side 256 -> centre 256x256
(`--backend pil`: pipeline.pil_image's PIL equivalent, tools.pca.stats.PREPROCESSING). The sums are
exact integers, so the result does not depend on --workers or the list order. The per-pixel mean of the
stored images (the mean image, §2, for `--normalize image`) goes beside pca.json (pipeline/pca.py). docs/pca.md has the
numbers for Imagenette beside the published ImageNet ones, and the speed measurements.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from pipeline.devices import announce, device_option, resolve_device
from pipeline.errors import InputError, user_errors
from pipeline.pca import load_pca, mean_image_file
from pipeline.processes import usable_cpus
from pipeline.writable import writable_folder
from tools.pca.compute import compute_pca


def _check(path: Path) -> None:
    pca = load_pca(path)
    click.echo(f"{path}: ok; eigval {np.round(pca.eigval, 6).tolist()}, mean {np.round(pca.mean, 4).tolist()}")
    if pca.mean_image is not None:
        levels = pca.mean_image * 255
        low, high = levels.min(axis=(0, 1)), levels.max(axis=(0, 1))
        click.echo(f"mean image {mean_image_file(path).name}: {'x'.join(map(str, levels.shape))}, per channel "
                   f"(R, G, B) {np.round(low, 1).tolist()} to {np.round(high, 1).tolist()} grey levels, "
                   f"std over pixels {np.round(levels.std(axis=(0, 1)), 2).tolist()}")


@click.command(name="compute-pca")
@click.option("--list", "list_path", type=click.Path(path_type=Path), help="train.txt from `prepare`.")
@click.option("--root", type=click.Path(path_type=Path), help="Folder the list's paths are relative to.")
@click.option("--out", type=click.Path(path_type=Path), help="pca.json to write.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Uniform sample of this many.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --max-images sample.")
@click.option("--workers", type=click.IntRange(min=1), default=usable_cpus(), show_default=True,
              help="Processes (PIL) or DALI threads; the result does not depend on it.")
@device_option("The GPU decodes with DALI (nvJPEG) and sums on the GPU.")
@click.option("--backend", type=click.Choice(["dali", "pil"]), default=None,
              help="pil (default on the CPU: 475 vs 415 images/s on 2 cores, docs/pca.md): "
                   "pipeline.pil_image's decode + resize; dali (default on a GPU): the training graph's.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Unreadable images: skip and count them, or stop at the first.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out (and its mean image); runs trained with it will then refuse it.")
@click.option("--check", "check_path", type=click.Path(path_type=Path), default=None,
              help="Only validate an existing pca.json (as training reads it) and print its eigenvalues.")
@user_errors
def main(list_path, root, out, max_images, seed, workers, device, backend, on_error, overwrite, check_path) -> None:
    """Eigen-decomposition of the RGB covariance of a file list's images (pca.json)."""
    if check_path is not None:
        return _check(check_path)
    for name, value in (("--list", list_path), ("--root", root), ("--out", out)):
        if value is None:
            raise InputError(f"{name} is required (or --check FILE to validate a pca.json)")
    if not root.is_dir():
        raise InputError(f"{root}: --root is not a folder; pass the folder the list's paths are relative to")
    if out.is_dir():
        raise InputError(f"{out}: --out is a folder; pass a file name such as {out / 'pca.json'}")
    if out.exists() and not overwrite:  # runs trained with it record its sha256 and would refuse a new one
        raise InputError(f"--out {out} already exists (runs trained with it record its sha256); replace it and its "
                         "mean image with --overwrite, or choose another --out")
    writable_folder(out.parent, "--out", given=out)  # before the computation, not after it
    chosen = resolve_device(device)
    if backend == "pil" and chosen.asked == "auto":  # PIL decodes on the CPU: auto does not mean the GPU here
        chosen = replace(chosen, asked="auto with --backend pil", name="cpu")
    if backend is None:
        backend = "dali" if chosen.cuda else "pil"
    if chosen.cuda and backend == "pil":
        raise InputError(f"--device {device} decodes with DALI on the GPU; drop --backend pil or use --device cpu")
    announce(chosen)
    stats, moments, skipped, rate = compute_pca(list_path, root, out, max_images, seed, workers, chosen.dali, backend,
                                                on_error, device_id=chosen.index)
    skipped_note = f", {len(skipped)} skipped (listed in {out})" if skipped else ""
    click.echo(f"{out}: {moments.n_images} images{skipped_note}, {rate:.1f} images/s; "
               f"eigval {np.round(stats.eigval, 6).tolist()}")


if __name__ == "__main__":
    main()
