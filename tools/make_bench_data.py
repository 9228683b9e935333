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

from pipeline.errors import user_errors
from pipeline.processes import usable_cpus
from pipeline.writable import writable_folder
from tools.synth.sets import JPEG_QUALITY, make_bench_data


@click.command("make-bench-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", required=True, type=int, help="Training images to write.")
@click.option("--val-count", default=0, show_default=True, help="Validation images to write (DIR/val).")
@click.option("--classes", default=10, show_default=True, help="Class folders (labels carry no signal).")
@click.option("--quality", default=JPEG_QUALITY, show_default=True, help="JPEG quality.")
@click.option("--seed", default=0, show_default=True, help="Seed (same seed, same bytes).")
@click.option("--workers", type=click.IntRange(min=1), default=usable_cpus(), show_default=True, help="Processes drawing images.")
@user_errors
def main(out: Path, count: int, val_count: int, classes: int, quality: int, seed: int, workers: int) -> None:
    """Generate ImageNet-like JPEGs (~500x375, quality 90, ~100 KB) under OUT in ImageFolder layout."""
    writable_folder(out, "OUT")
    sizes = make_bench_data(out, count, val_count, classes, seed, workers, quality)
    for split, values in sizes.items():
        click.echo(f"{out}/{split}: {len(values)} images, {sum(values) / len(values) / 1e3:.0f} KB on average")


if __name__ == "__main__":
    main()
