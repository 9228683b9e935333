"""Batch mixing on shards (what `imagenet-tools shard-mixing` measures): tiny tars, their labels per batch."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.shard_reader import dali_source, read_shards
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
