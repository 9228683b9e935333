"""`imagenet-tools compute-pca`: the RGB covariance of the training set and its eigen-decomposition.

The paper's colour augmentation (§4.1) adds eigvec @ (alpha * eigval) to every pixel; everyone copies
fb.resnet.torch's ImageNet constants. This computes them for your own list of images:

    imagenet-tools compute-pca --list out/train.txt --root /data/imagenet --out out/pca.json
    imagenet-tools compute-pca ... --max-images 100000 --seed 0 --workers 8   # a uniform sample
    imagenet-tools compute-pca ... --device gpu                               # DALI nvJPEG + GPU resize
    imagenet-tools compute-pca --check out/pca.json                           # validate a file

The pixels are those training sees: pipeline.graphs' DALI decode -> shorter side 256 -> centre 256x256
(`--backend pil`: pipeline.pil_loader's PIL equivalent, tools.pca_stats.PREPROCESSING). The sums are
exact integers, so the result does not depend on --workers or the list order. docs/pca.md has the
numbers for Imagenette beside the published ImageNet ones, and the speed measurements.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from pipeline.errors import InputError, user_errors
from pipeline.filelist import read_file_list
from pipeline.pca import load_pca
from pipeline.writable import writable_folder
from tools.pca_stats import PREPROCESSING, PixelMoments, PixelStatistics, statistics_of

DALI_PREPROCESSING = (
    "DALI decoders.image (device {device}) -> RGB; fn.resize(resize_shorter=256, antialias=True, "
    "INTERP_LINEAR); fn.crop 256x256 at crop_pos 0.5 (pipeline.graphs); pixels / 255 as float64; pooled "
    "over all pixels of all images; population covariance (divide by N)"
)
SIGN_CONVENTION = "each eigvec column has a positive R entry (G if R is ~0, then B)"
# Skipped images listed by name in pca.json (all are counted).
SKIPS_LISTED = 100


class Progress:
    """A stderr progress line with images/s: rewritten in place on a terminal, every 10 s otherwise."""

    def __init__(self, total: int, label: str = "compute-pca") -> None:
        self.total, self.label = total, label
        self.done = self.skipped = 0
        self.start = self.last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, skipped: int) -> None:
        self.done += done
        self.skipped += skipped
        now = time.monotonic()
        if now - self.last >= (0.5 if self.tty else 10.0):
            self.last = now
            self._print(end="\r" if self.tty else "\n")

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-9)

    def finish(self) -> None:
        self._print(end="\n")

    def _print(self, end: str) -> None:
        line = f"{self.label}: {self.done}/{self.total} images, {self.rate():.1f} images/s"
        click.echo(line + (f", {self.skipped} skipped" if self.skipped else "") + "   ", err=True, nl=False)
        click.echo(end, err=True, nl=False)


def choose_items(entries: list[tuple[str, int]], max_images: int | None, seed: int) -> list[tuple[int, str]]:
    """(list index, path) of the images to use: all, or a uniform sample without replacement.

    Args:
        entries: the file list's (path, label) pairs.
        max_images: sample size; None or >= len(entries) takes every image.
        seed: the sample's seed (numpy.random.default_rng).

    Returns:
        The chosen images in list order.
    """
    indices = range(len(entries))
    if max_images is not None and max_images < len(entries):
        chosen = np.random.default_rng(seed).choice(len(entries), size=max_images, replace=False)
        indices = sorted(int(i) for i in chosen)
    return [(i, entries[i][0]) for i in indices]


def compute_moments(
    root: Path, items: list[tuple[int, str]], list_path: Path, device: str, backend: str, workers: int,
    on_error: str,
) -> tuple[PixelMoments, list[tuple[int, str, str]], float]:
    """Run the chosen backend over the items; returns (moments, skips, images/s)."""
    progress = Progress(len(items))
    try:
        if backend == "pil":
            from tools.pca_pil import run_pil

            moments, skipped = run_pil(root, items, workers, on_error, list_path, progress)
        else:
            from tools.pca_dali import run_dali

            moments, skipped = run_dali(root, items, device, workers, on_error, list_path, progress)
    finally:
        progress.finish()  # also before an error, so that its line starts on a line of its own
    return moments, skipped, progress.rate()


def pca_document(stats: PixelStatistics, moments: PixelMoments, skipped: list, info: dict) -> dict:
    """The pca.json object (pipeline.pca.load_pca reads eigval, eigvec, mean, std, scale)."""
    return {
        "eigval": stats.eigval.tolist(),
        "eigvec": stats.eigvec.tolist(),
        "mean": stats.mean.tolist(),
        "std": stats.std.tolist(),
        "covariance": stats.covariance.tolist(),
        "scale": "unit",
        "eigvec_layout": "columns are components, rows are R, G, B",
        "sign_convention": SIGN_CONVENTION,
        "n_images": moments.n_images,
        "n_pixels": moments.n_pixels,
        "n_skipped": len(skipped),
        "skipped": [f"{path}: {reason}" for _, path, reason in skipped[:SKIPS_LISTED]],
        **info,
    }


def write_pca(document: dict, out: Path) -> None:
    """Write pca.json atomically (temp file + rename), after checking it with pipeline.pca.load_pca."""
    temp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        load_pca(temp)
        os.replace(temp, out)
    except InputError as error:
        temp.unlink()
        raise InputError(f"{out}: the statistics are unusable, nothing written ({error})") from None
    except OSError as error:  # e.g. the disk filled up during the computation
        temp.unlink(missing_ok=True)
        raise InputError(f"{out}: could not write it ({error.strerror or error}); nothing written") from None


def _check(path: Path) -> None:
    pca = load_pca(path)
    click.echo(f"{path}: ok; eigval {np.round(pca.eigval, 6).tolist()}, mean {np.round(pca.mean, 4).tolist()}")


@click.command(name="compute-pca")
@click.option("--list", "list_path", type=click.Path(path_type=Path), help="train.txt from `prepare`.")
@click.option("--root", type=click.Path(path_type=Path), help="Folder the list's paths are relative to.")
@click.option("--out", type=click.Path(path_type=Path), help="pca.json to write.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Uniform sample of this many.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --max-images sample.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
              help="Processes (PIL) or DALI threads; the result does not depend on it.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--backend", type=click.Choice(["dali", "pil"]), default=None,
              help="pil (default with --device cpu: 475 vs 415 images/s on 2 cores, docs/pca.md): "
                   "pipeline.pil_loader's decode + resize; dali (default with --device gpu): the training graph's.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Unreadable images: skip and count them, or stop at the first.")
@click.option("--check", "check_path", type=click.Path(path_type=Path), default=None,
              help="Only validate an existing pca.json (as training reads it) and print its eigenvalues.")
@user_errors
def main(list_path, root, out, max_images, seed, workers, device, backend, on_error, check_path) -> None:
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
    writable_folder(out.parent, "--out", given=out)  # before the computation, not after it
    if backend is None:
        backend = "dali" if device == "gpu" else "pil"
    if device == "gpu" and backend == "pil":
        raise InputError("--device gpu decodes with DALI; drop --backend pil or use --device cpu")
    if device == "gpu":
        _require_cuda()
    entries = read_file_list(list_path)
    items = choose_items(entries, max_images, seed)
    moments, skipped, rate = compute_moments(root, items, list_path, device, backend, workers, on_error)
    if moments.n_images == 0:
        raise InputError(f"{list_path}: none of the {len(items)} images could be read (first: {skipped[0][2]})")
    preprocessing = PREPROCESSING if backend == "pil" else DALI_PREPROCESSING.format(device=device)
    info = {
        "preprocessing": preprocessing, "device": device, "backend": backend,
        "list": str(list_path), "list_sha256": hashlib.sha256(list_path.read_bytes()).hexdigest(),
        "max_images": max_images, "seed": seed,
        "tool": "imagenet-tools compute-pca", "version": importlib.metadata.version("alexnet-dali"),
    }
    stats = statistics_of(moments)
    write_pca(pca_document(stats, moments, skipped, info), out)
    skipped_note = f", {len(skipped)} skipped (listed in {out})" if skipped else ""
    click.echo(f"{out}: {moments.n_images} images{skipped_note}, {rate:.1f} images/s; "
               f"eigval {np.round(stats.eigval, 6).tolist()}")


def _require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise InputError("--device gpu: no CUDA device here; use --device cpu")


if __name__ == "__main__":
    main()
