"""`imagenet-tools make-bench-data DIR --count N`: ImageNet-like JPEGs for throughput benchmarks.

    imagenet-tools make-bench-data /tmp/bench --count 2000            # 10 classes, all cores
    imagenet-tools make-bench-data /tmp/bench --count 50000 --classes 100 --workers 16

Writes DIR/train/<class id>/<class id>_<i>.JPEG (ImageFolder layout; `--val-count` adds DIR/val/). What
matters for a decoder is matched to ImageNet: sizes spread around 500x375 (both orientations), baseline
JPEG at quality 90 with 4:2:0 chroma, and textured content so files weigh ~100 KB like real photos (flat
colours would decode several times faster than photos and flatter the pipeline). Labels carry no signal.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from pipeline.errors import InputError, user_errors
from tools.shared.jobs import run_jobs, usable_cpus
from tools.synth.images import photo_like_image, save_jpeg

JPEG_QUALITY = 90
# Images sent to a worker at once: a few, since each takes tens of ms to draw.
CHUNK = 4
# ImageNet's most common size is 500x375 (or 375x500); most others have a 500 px long side too.
LONG_SIDE_500_SHARE = 0.7
ASPECTS = (4 / 3, 4 / 3, 4 / 3, 3 / 2, 1.0, 5 / 4, 16 / 9)
LANDSCAPE_SHARE = 0.75


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) drawn like ImageNet's: mostly a 500 px long side at 4:3, both orientations."""
    long_side = 500 if rng.random() < LONG_SIDE_500_SHARE else int(rng.integers(300, 801))
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    short_side = max(64, round(long_side / aspect))
    return (long_side, short_side) if rng.random() < LANDSCAPE_SHARE else (short_side, long_side)


def _write_one(job: tuple) -> int:
    """Draw and save one image; `job` = (path, seed, split index, image index, quality)."""
    path, seed, split_index, image_index, quality = job
    rng = np.random.default_rng([seed, split_index, image_index])
    width, height = image_size(rng)
    return save_jpeg(photo_like_image(rng, width, height), path, quality)


def make_bench_data(out: Path, count: int, val_count: int = 0, classes: int = 10, seed: int = 0,
                    workers: int = 1, quality: int = JPEG_QUALITY) -> dict[str, list[int]]:
    """Generate `count` training (and `val_count` validation) JPEGs, spread round-robin over `classes`.

    Args:
        out: destination folder (train/ and val/ inside).
        count, val_count: images in each split.
        classes: class folders per split (named n00000000, n00000001, ... like WordNet ids).
        seed: the set's seed (same seed, same bytes, whatever `workers`).
        workers: processes.
        quality: JPEG quality.

    Returns:
        File sizes in bytes per split.

    Raises:
        InputError: non-positive count or classes, quality outside 1-100, an unwritable folder.
    """
    if count < 1 or val_count < 0 or classes < 1:
        raise InputError("--count and --classes must be >= 1, --val-count >= 0")
    if not 1 <= quality <= 100:
        raise InputError(f"--quality {quality}: a JPEG quality is 1-100")
    sizes: dict[str, list[int]] = {}
    for split_index, (split, n) in enumerate((("train", count), ("val", val_count))):
        if n == 0:
            continue
        jobs = []
        for i in range(n):
            folder = Path(out) / split / f"n{i % classes:08d}"
            if i < classes:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise InputError(f"{folder}: cannot create the folder ({error.strerror}); pick another DIR") from None
            jobs.append((str(folder / f"{folder.name}_{i}.JPEG"), seed, split_index, i, quality))
        sizes[split] = run_jobs(_write_one, jobs, workers, f"make-bench-data {split}", "images", CHUNK,
                                 name="make-bench-data")
    return sizes


@click.command("make-bench-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", required=True, type=int, help="Training images to write.")
@click.option("--val-count", default=0, show_default=True, help="Validation images to write (DIR/val).")
@click.option("--classes", default=10, show_default=True, help="Class folders (labels carry no signal).")
@click.option("--quality", default=JPEG_QUALITY, show_default=True, help="JPEG quality.")
@click.option("--seed", default=0, show_default=True, help="Seed (same seed, same bytes).")
@click.option("--workers", default=usable_cpus(), show_default=True, help="Processes drawing images.")
@user_errors
def main(out: Path, count: int, val_count: int, classes: int, quality: int, seed: int, workers: int) -> None:
    """Generate ImageNet-like JPEGs (~500x375, quality 90, ~100 KB) under OUT in ImageFolder layout."""
    sizes = make_bench_data(out, count, val_count, classes, seed, workers, quality)
    for split, values in sizes.items():
        click.echo(f"{out}/{split}: {len(values)} images, {sum(values) / len(values) / 1e3:.0f} KB on average")


if __name__ == "__main__":
    main()
