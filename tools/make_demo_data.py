"""`imagenet-tools make-demo-data DIR`: the demo's generated image set, in ImageNet's ImageFolder layout.

    imagenet-tools make-demo-data demo/data                      # 10 classes, the demo's default counts
    imagenet-tools make-demo-data demo/data --train-per-class 200 --val-per-class 50 --seed 1
    imagenet-tools make-demo-data /tmp/demo1000 --classes 1000 --train-per-class 20 --val-per-class 2

Writes DIR/train/<class id>/<class id>_<i>.JPEG and DIR/val/<class id>/... Each class is a shape filled with
its own pattern (tools/synth/images.py DEMO_CLASSES) at a random size, position, rotation and colours, on a
textured background (more than 10 classes: every shape with every pattern, in 12 hues, up to 1080
classes); images are 300-700 px per side and a few are grayscale, as in ImageNet. The same seed
gives the same bytes, whatever --workers.
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.errors import user_errors
from pipeline.processes import usable_cpus
from pipeline.writable import writable_folder
from tools.synth.images import DEMO_CLASSES, MAX_CLASSES
from tools.synth.sets import DEFAULT_TRAIN_PER_CLASS, DEFAULT_VAL_PER_CLASS, make_demo_data


@click.command("make-demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", default=len(DEMO_CLASSES), show_default=True, type=click.IntRange(1, MAX_CLASSES),
              help=f"Number of classes: 1-10 take the demo's ten; 11 to {MAX_CLASSES} (e.g. ImageNet's 1000) "
                   "make another set of shape x pattern x hue classes, to see how training starts with many classes.")
@click.option("--train-per-class", default=DEFAULT_TRAIN_PER_CLASS, show_default=True, help="Training images per class.")
@click.option("--val-per-class", default=DEFAULT_VAL_PER_CLASS, show_default=True, help="Validation images per class.")
@click.option("--seed", default=0, show_default=True, help="Seed of the whole set (same seed, same bytes).")
@click.option("--workers", type=click.IntRange(min=1), default=usable_cpus(), show_default=True, help="Processes drawing images.")
@user_errors
def main(out: Path, classes: int, train_per_class: int, val_per_class: int, seed: int, workers: int) -> None:
    """Generate the demo's image set (10 shape-and-pattern classes, or up to 1080) in ImageNet's layout under OUT."""
    writable_folder(out, "OUT")
    written = make_demo_data(out, classes, train_per_class, val_per_class, seed, workers)
    click.echo(f"{out}: {written['train']} training and {written['val']} validation images in {classes} classes")


if __name__ == "__main__":
    main()
