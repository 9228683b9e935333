"""How mixed DALI's training batches are on shards: the share of same-class neighbours in a batch, for
pre-shuffled and for class-sorted tars, at a few shuffle-buffer sizes, against a perfect shuffle.

    python -m tools.shard_mixing --out mixing.json                  # 10 classes x 200 samples, 64x64 JPEGs

Only the reader runs (fn.readers.webdataset with the training options, pipeline/shard_reader.py): the labels of
one epoch of a fresh loader, as model.run builds one per epoch (seed + epoch), over a few seeds. A neighbour pair
is two consecutive samples of one batch; a perfect shuffle gives them the same class with probability
sum_c p_c^2 (0.1 for 10 equal classes). docs/pipeline.md has the numbers.
"""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import click
import numpy as np
from PIL import Image

from pipeline.atomic import write_atomic
from pipeline.errors import user_errors
from pipeline.shard_reader import SHUFFLE_BUFFER, dali_source, read_shards
from pipeline.filelist import read_file_list


def tiny_jpeg(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 120, 150)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_tars(folder: Path, labels: list[int], shard_size: int) -> None:
    """Training tars holding samples with `labels` in this order, `shard_size` a tar (index files by prepare)."""
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    image = tiny_jpeg()
    for start in range(0, len(labels), shard_size):
        with tarfile.open(folder / f"imagenet1k-train-{start // shard_size:04d}.tar", "w") as tar:
            for position in range(start, min(start + shard_size, len(labels))):
                label = labels[position]
                key = f"n{10_000_000 + label:08d}_{position:06d}"
                for ext, data in (("jpg", image), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def prepared(folder: Path, out: Path) -> Path:
    """`imagenet-tools prepare FOLDER --out OUT`; the train list's path."""
    from click.testing import CliRunner

    from tools.prepare_imagenet import main as prepare_main

    result = CliRunner().invoke(prepare_main, [str(folder), "--out", str(out), "--workers", "1"])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return out / "train.txt"


def epoch_labels(root: Path, train_list: Path, buffer: int, batch_size: int, seed: int) -> np.ndarray:
    """(batches, batch_size) labels of the first epoch of a training reader (N // batch_size full batches)."""
    from nvidia.dali import pipeline_def

    entries = read_file_list(train_list, None)
    paths, index_files, _ = dali_source(entries, [train_list.parent])

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None, seed=seed)
    def labels_only():
        _, labels = read_shards(root, paths, index_files, True, seed, 0, 1, "Reader", buffer=buffer)
        return labels

    pipe = labels_only()
    pipe.build()
    return np.stack([np.array(pipe.run()[0].as_tensor()).reshape(-1) for _ in range(len(entries) // batch_size)])


def same_class_share(batches: np.ndarray) -> float:
    """Share of consecutive pairs inside a batch whose two samples have the same label."""
    return float((batches[:, 1:] == batches[:, :-1]).mean())


def measure(root: Path, train_list: Path, buffers: list[int], batch_size: int, seeds: list[int]) -> list[dict]:
    """Per buffer: the same-class share, mean (and range) over the seeds."""
    rows = []
    for buffer in buffers:
        shares = [same_class_share(epoch_labels(root, train_list, buffer, batch_size, seed)) for seed in seeds]
        rows.append(dict(buffer=buffer, same_class=float(np.mean(shares)), same_class_min=float(np.min(shares)),
                         same_class_max=float(np.max(shares))))
    return rows


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
            train_list = prepared(Path(scratch, name, "wds"), Path(scratch, name, "lists"))
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
