"""`imagenet-tools make-demo-data DIR`: the demo's generated image set, in ImageNet's ImageFolder layout.

    imagenet-tools make-demo-data demo/data                      # 10 classes, the demo's default counts
    imagenet-tools make-demo-data demo/data --train-per-class 200 --val-per-class 50 --seed 1

Writes DIR/train/<class id>/<class id>_<i>.JPEG and DIR/val/<class id>/... Each class is a shape filled with
its own pattern (tools/synth_images.py DEMO_CLASSES) at a random size, position, rotation and colours, on a
textured background; images are 300-700 px per side and a few are grayscale, as in ImageNet. The same seed
gives the same bytes, whatever --workers.
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from pipeline.errors import InputError, user_errors
from tools.shared.jobs import run_jobs, usable_cpus
from tools.synth.images import DEMO_CLASSES, class_ids, demo_image, save_jpeg

# The demo's recipe (docs/demo.md) was measured with these counts.
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_VAL_PER_CLASS = 10
# One image in GRAYSCALE_EVERY is grayscale (ImageNet has ~2 %; 5 % here so small sets have some),
# chosen by index, staggered across classes, so the share is exact.
GRAYSCALE_EVERY = 20
JPEG_QUALITY = 90
# Images sent to a worker at once: a few, since each takes tens of ms to draw.
CHUNK = 4
SPLITS = ("train", "val")


def _write_one(job: tuple) -> int:
    """Draw and save one image; `job` = (path, seed, split index, class index, image index)."""
    path, seed, split_index, class_index, image_index = job
    rng = np.random.default_rng([seed, split_index, class_index, image_index])
    grayscale = (image_index + 7 * class_index) % GRAYSCALE_EVERY == 0
    return save_jpeg(demo_image(rng, class_index, grayscale), path, JPEG_QUALITY)


def make_demo_data(out: Path, classes: int = len(DEMO_CLASSES), train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
                   val_per_class: int = DEFAULT_VAL_PER_CLASS, seed: int = 0, workers: int = 1) -> dict[str, int]:
    """Generate the demo set.

    Args:
        out: destination folder; train/ and val/ are created inside (existing files are overwritten).
        classes: how many of the ten classes, taken in order.
        train_per_class, val_per_class: images per class in each split.
        seed: the set's seed; train and val images come from disjoint generator streams.
        workers: processes drawing images (the output does not depend on it).

    Returns:
        Images written per split.

    Raises:
        InputError: a class count outside 1..10, a negative image count, or an unwritable folder.
    """
    if not 1 <= classes <= len(DEMO_CLASSES):
        raise InputError(f"--classes {classes}: the demo set has 1 to {len(DEMO_CLASSES)} classes")
    if train_per_class < 1 or val_per_class < 0:
        raise InputError("--train-per-class must be >= 1 and --val-per-class >= 0")
    counts = {"train": train_per_class, "val": val_per_class}
    jobs = []
    for split_index, split in enumerate(SPLITS):
        for class_index, class_id in enumerate(class_ids()[:classes]):
            folder = Path(out) / split / class_id
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"{folder}: cannot create the folder ({error.strerror}); pick another DIR") from None
            for i in range(counts[split]):
                jobs.append((str(folder / f"{class_id}_{i}.JPEG"), seed, split_index, class_index, i))
    run_jobs(_write_one, jobs, workers, "make-demo-data", "images", CHUNK)
    return {split: counts[split] * classes for split in SPLITS}


@click.command("make-demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", default=len(DEMO_CLASSES), show_default=True, help="Number of classes (1-10).")
@click.option("--train-per-class", default=DEFAULT_TRAIN_PER_CLASS, show_default=True, help="Training images per class.")
@click.option("--val-per-class", default=DEFAULT_VAL_PER_CLASS, show_default=True, help="Validation images per class.")
@click.option("--seed", default=0, show_default=True, help="Seed of the whole set (same seed, same bytes).")
@click.option("--workers", default=usable_cpus(), show_default=True, help="Processes drawing images.")
@user_errors
def main(out: Path, classes: int, train_per_class: int, val_per_class: int, seed: int, workers: int) -> None:
    """Generate the demo's image set (10 shape-and-pattern classes) in ImageNet's layout under OUT."""
    written = make_demo_data(out, classes, train_per_class, val_per_class, seed, workers)
    click.echo(f"{out}: {written['train']} training and {written['val']} validation images in {classes} classes")


if __name__ == "__main__":
    main()
