"""How mixed DALI's training batches are on shards: the share of same-class neighbours in a batch, for
pre-shuffled and for class-sorted tars, at a few shuffle-buffer sizes, against a perfect shuffle.

    imagenet-tools shard-mixing --out mixing.json                 # 10 classes x 200 samples, 64x64 JPEGs

Only the reader runs (fn.readers.webdataset with the training options, pipeline/shard_reader.py): the labels of
one epoch of a fresh loader, as model.run builds one per epoch (seed + epoch), over a few seeds. A neighbour pair
is two consecutive samples of one batch; a perfect shuffle gives them the same class with probability
sum_c p_c^2 (0.1 for 10 equal classes). docs/pipeline.md has the numbers.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np

from pipeline.atomic import write_atomic
from pipeline.errors import user_errors
from pipeline.shard_reader import SHUFFLE_BUFFER
from tools.packing.mixing import measure, write_tars

def _prepared(folder: Path, out: Path) -> Path:
    """`imagenet-tools prepare FOLDER --out OUT`; the train list's path."""
    from click.testing import CliRunner

    from tools.prepare_imagenet import main as prepare_main

    result = CliRunner().invoke(prepare_main, [str(folder), "--out", str(out), "--workers", "1"])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return out / "train.txt"


@click.command()
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--per-class", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--shard-size", type=click.IntRange(min=1), default=100, show_default=True, help="Samples a tar.")
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--buffers", default=f"1,64,256,{SHUFFLE_BUFFER},4096", show_default=True, help="initial_fill sizes.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Epochs (seeds) averaged.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the numbers as JSON here.")
@user_errors
def main(classes: int, per_class: int, shard_size: int, batch_size: int, buffers: str, seeds: int,
         out: Path | None) -> None:
    """Print the same-class neighbour share of training batches for pre-shuffled and class-sorted shards."""
    sorted_labels = [label for label in range(classes) for _ in range(per_class)]
    orders = {"pre-shuffled": [sorted_labels[i] for i in np.random.default_rng(0).permutation(len(sorted_labels))],
              "class-sorted": sorted_labels}
    perfect = float(sum((per_class / len(sorted_labels)) ** 2 for _ in range(classes)))
    report = dict(classes=classes, per_class=per_class, shard_size=shard_size, batch_size=batch_size,
                  perfect_shuffle=perfect, results={})
    print(f"{classes} classes x {per_class} samples, {shard_size} a tar, batch {batch_size}; "
          f"perfect shuffle: {perfect:.3f} of neighbours share a class")
    with tempfile.TemporaryDirectory(prefix="shard-mixing-") as scratch:
        for name, labels in orders.items():
            write_tars(Path(scratch, name, "wds"), labels, shard_size)
            train_list = _prepared(Path(scratch, name, "wds"), Path(scratch, name, "lists"))
            rows = measure(Path(scratch, name, "wds"), train_list, [int(b) for b in buffers.split(",")],
                           batch_size, list(range(seeds)))
            report["results"][name] = rows
            for row in rows:
                print(f"{name:>12}  buffer {row['buffer']:>5}: same-class neighbours {row['same_class']:.3f} "
                      f"({row['same_class_min']:.3f}-{row['same_class_max']:.3f})")
    if out is not None:
        write_atomic(out, json.dumps(report, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
