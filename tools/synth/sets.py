"""The two generated image sets, in ImageNet's ImageFolder layout: the demo's (ten shape-and-pattern classes)
and the benchmark's (ImageNet-like JPEGs whose labels carry no signal). The pictures come from
tools/synth/images.py; `tools/make_demo_data.py` and `tools/make_bench_data.py` are the command lines.
Every image is drawn from its own generator, so a set is the same bytes whatever the number of workers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import InputError
from tools.shared.jobs import run_jobs
from tools.synth.images import DEMO_CLASSES, MAX_CLASSES, class_ids, demo_image, photo_like_image, save_jpeg

JPEG_QUALITY = 90
# Images sent to a worker at once: a few, since each takes tens of ms to draw.
CHUNK = 4

# The demo set. Its recipe (docs/demo.md) was measured with these counts.
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_VAL_PER_CLASS = 10
# One image in GRAYSCALE_EVERY is grayscale (ImageNet has ~2 %; 5 % here so small sets have some),
# chosen by index, staggered across classes, so the share is exact.
GRAYSCALE_EVERY = 20
SPLITS = ("train", "val")


def _write_demo_image(job: tuple) -> int:
    """Draw and save one image; `job` = (path, seed, split index, class index, image index, classes)."""
    path, seed, split_index, class_index, image_index, classes = job
    rng = np.random.default_rng([seed, split_index, class_index, image_index])
    grayscale = (image_index + 7 * class_index) % GRAYSCALE_EVERY == 0
    return save_jpeg(demo_image(rng, class_index, grayscale, classes), path, JPEG_QUALITY)


def make_demo_data(out: Path, classes: int = len(DEMO_CLASSES), train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
                   val_per_class: int = DEFAULT_VAL_PER_CLASS, seed: int = 0, workers: int = 1) -> dict[str, int]:
    """Generate the demo set.

    Args:
        out: destination folder; train/ and val/ are created inside (existing files are overwritten).
        classes: up to ten: the first of the ten demo classes; more (up to MAX_CLASSES, e.g. 1000 to check
            what ImageNet's class count does to training): (shape, pattern, hue) classes (tools/synth/images.py).
        train_per_class, val_per_class: images per class in each split.
        seed: the set's seed; train and val images come from disjoint generator streams.
        workers: processes drawing images (the output does not depend on it).

    Returns:
        Images written per split.

    Raises:
        InputError: a class count outside 1..MAX_CLASSES, a negative image count, or an unwritable folder.
    """
    if not 1 <= classes <= MAX_CLASSES:
        raise InputError(f"--classes {classes}: the demo set has 1 to {MAX_CLASSES} classes")
    if train_per_class < 1 or val_per_class < 0:
        raise InputError("--train-per-class must be >= 1 and --val-per-class >= 0")
    counts = {"train": train_per_class, "val": val_per_class}
    jobs = []
    for split_index, split in enumerate(SPLITS):
        if counts[split] == 0:  # no empty class folders: prepare would refuse them (--val-per-class 0)
            continue
        for class_index, class_id in enumerate(class_ids(classes)):
            folder = Path(out) / split / class_id
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"{folder}: cannot create the folder ({error.strerror}); pick another DIR") from None
            for i in range(counts[split]):
                jobs.append((str(folder / f"{class_id}_{i}.JPEG"), seed, split_index, class_index, i, classes))
    run_jobs(_write_demo_image, jobs, workers, "make-demo-data", "images", CHUNK)
    return {split: counts[split] * classes for split in SPLITS}


# The benchmark set. ImageNet's most common size is 500x375 (or 375x500); most others have a 500 px long side too.
LONG_SIDE_500_SHARE = 0.7
ASPECTS = (4 / 3, 4 / 3, 4 / 3, 3 / 2, 1.0, 5 / 4, 16 / 9)
LANDSCAPE_SHARE = 0.75


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) drawn like ImageNet's: mostly a 500 px long side at 4:3, both orientations."""
    long_side = 500 if rng.random() < LONG_SIDE_500_SHARE else int(rng.integers(300, 801))
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    short_side = max(64, round(long_side / aspect))
    return (long_side, short_side) if rng.random() < LANDSCAPE_SHARE else (short_side, long_side)


def _write_bench_image(job: tuple) -> int:
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
        sizes[split] = run_jobs(_write_bench_image, jobs, workers, f"make-bench-data {split}", "images", CHUNK,
                                 name="make-bench-data")
    return sizes
