"""compute-pca's run: choose the images, sum their moments with a backend, write pca.json (checked as training
reads it). `tools/compute_pca.py` is its command line; docs/pca.md has the numbers.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.atomic import replacing
from pipeline.errors import InputError
from pipeline.filelist import read_file_list
from pipeline.pca import load_pca, mean_image_file, write_mean_image
from pipeline.shard_reader import EncodedImages
from pipeline.version import toolkit_version
from tools.pca.stats import PREPROCESSING, PixelMoments, PixelStatistics, statistics_of
from tools.shared.jobs import Progress

DALI_PREPROCESSING = (
    "DALI decoders.image (device {device}) -> RGB; fn.resize(resize_shorter=256, antialias=True, "
    "INTERP_LINEAR); fn.crop 256x256 at crop_pos 0.5 (pipeline.graphs); pixels / 255 as float64; pooled "
    "over all pixels of all images; population covariance (divide by N)"
)
SIGN_CONVENTION = "each eigvec column has a positive R entry (G if R is ~0, then B)"
# Skipped images listed by name in pca.json (all are counted).
SKIPS_LISTED = 100


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
    images: EncodedImages, items: list[tuple[int, str]], list_path: Path, device: str, backend: str, workers: int,
    on_error: str, device_id: int | None = 0,
) -> tuple[PixelMoments, list[tuple[int, str, str]], float]:
    """Run the chosen backend over the items; returns (moments, skips, images/s)."""
    progress = Progress("compute-pca", len(items), "images")
    try:
        if backend == "pil":
            from tools.pca.pil import run_pil

            moments, skipped = run_pil(images, items, workers, on_error, list_path, progress.update)
        else:
            from tools.pca.dali import run_dali

            moments, skipped = run_dali(images, items, device, workers, on_error, list_path, progress.update,
                                        device_id)
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


def write_pca(document: dict, out: Path, mean_image: np.ndarray | None = None) -> None:
    """Write pca.json atomically (temp file + rename), after checking it with pipeline.pca.load_pca.

    The mean image goes first into its own content-named file beside it (pipeline.pca.write_mean_image);
    the side file of the pca.json this one replaces is deleted once the new pair is in place.
    """
    previous, new = mean_image_file(out), None
    try:
        with replacing(out) as temp:  # the folder is made; a failure leaves no temporary file
            if mean_image is not None:
                document = {**document, "mean_image": write_mean_image(mean_image, out)}
            new = mean_image_file_of(document, out)
            temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            load_pca(temp)  # checked before it replaces anything
    except (InputError, OSError) as error:  # OSError: e.g. the disk filled up during the computation
        if new is not None and new != previous:
            new.unlink(missing_ok=True)
        if isinstance(error, InputError):
            raise InputError(f"{out}: the statistics are unusable, nothing written ({error})") from None
        raise InputError(f"{out}: could not write it ({error.strerror or error}); nothing written") from None
    if previous is not None and previous != new:
        previous.unlink(missing_ok=True)


def mean_image_file_of(document: dict, out: Path) -> Path | None:
    entry = document.get("mean_image")
    return out.parent / entry["file"] if entry else None


def compute_pca(list_path: Path, root: Path, out: Path, max_images: int | None, seed: int, workers: int,
                device: str, backend: str, on_error: str,
                device_id: int | None = 0) -> tuple[PixelStatistics, PixelMoments, list, float]:
    """Sum the moments of a file list's images (or a sample), decompose them, write pca.json at `out`.

    Returns:
        (statistics, moments, skips, images/s).

    Raises:
        InputError: a bad list, no image readable, a bad image with on_error="fail", unusable statistics.
    """
    entries = read_file_list(list_path)
    items = choose_items(entries, max_images, seed)
    # A shard list's samples are found through prepare's index files beside the list (pipeline/shards.py).
    images = EncodedImages(root, [entries[i] for i, _ in items], [list_path.parent])
    moments, skipped, rate = compute_moments(images, items, list_path, device, backend, workers, on_error, device_id)
    if moments.n_images == 0:
        raise InputError(f"{list_path}: none of the {len(items)} images could be read (first: {skipped[0][2]})")
    preprocessing = PREPROCESSING if backend == "pil" else DALI_PREPROCESSING.format(device=device)
    info = {
        "preprocessing": preprocessing, "device": device, "backend": backend,
        "list": str(list_path), "list_sha256": hashlib.sha256(list_path.read_bytes()).hexdigest(),
        "max_images": max_images, "seed": seed,
        "tool": "imagenet-tools compute-pca", "version": toolkit_version(),
    }
    stats = statistics_of(moments)
    write_pca(pca_document(stats, moments, skipped, info), out, stats.mean_image)
    return stats, moments, skipped, rate
