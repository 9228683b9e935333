"""Small webdataset shards as the hub's timm/imagenet-1k-wds lays them out, generated: KEY.jpg + KEY.cls (ASCII
digits) + KEY.json per sample, named imagenet1k-train-NNNN.tar / imagenet1k-validation-NN.tar. The samples and
labels each test expects are returned from here, independently of the code under test."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg(seed: int, width: int = 40, height: int = 32) -> bytes:
    """A small RGB JPEG whose colour depends on `seed`."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, (40 + 37 * seed) % 256)], -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def wnid(label: int) -> str:
    return f"n{10_000_000 + label:08d}"


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """A tar of (key, {ext: bytes}) samples, members in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def sample(key: str, label: int, seed: int, name: str | None = None) -> tuple[str, dict[str, bytes]]:
    """A complete sample: image, label, metadata (filename carrying the WNID for train keys)."""
    meta = {"filename": name or f"{key}.JPEG", "label": label, "class_name": f"class {label}"}
    return key, {"jpg": jpeg(seed), "cls": str(label).encode(), "json": json.dumps(meta).encode()}


def write_shards(root: Path, train_tars: int = 2, per_tar: int = 6, val_tars: int = 1, labels: int = 3,
                 label_offset: int = 0) -> dict[str, list[tuple[str, int]]]:
    """Train and validation tars under ROOT; returns split -> [(list path, label)] in tar order.

    Train sample i of tar t is `n<wnid>_<t><i>` with label (t * per_tar + i) % labels + label_offset.
    """
    expected: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for t in range(train_tars):
        rows = []
        for i in range(per_tar):
            label = (t * per_tar + i) % labels + label_offset
            key = f"{wnid(label)}_{t}{i:03d}"
            rows.append(sample(key, label, seed=t * per_tar + i))
            expected["train"].append((f"imagenet1k-train-{t:04d}.tar:{key}", label))
        write_tar(root / f"imagenet1k-train-{t:04d}.tar", rows)
    for t in range(val_tars):
        rows = []
        for i in range(per_tar):
            label = i % labels + label_offset
            key = f"ILSVRC2012_val_{t * per_tar + i + 1:08d}"
            rows.append(sample(key, label, seed=100 + i, name=f"{key}.JPEG"))
            expected["val"].append((f"imagenet1k-validation-{t:02d}.tar:{key}", label))
        write_tar(root / f"imagenet1k-validation-{t:02d}.tar", rows)
    return expected


def read_list(path: Path) -> list[tuple[str, int]]:
    """A list file's (path, label) rows, parsed here by hand."""
    rows = []
    for line in Path(path).read_text().splitlines():
        where, _, label = line.rpartition(" ")
        rows.append((where, int(label)))
    return rows


def as_files(shards: Path, rows: list[tuple[str, int]], files: Path, list_path: Path) -> list[tuple[str, int]]:
    """The .jpg of each listed shard sample copied out (read with tarfile) to FILES/<key>.JPEG, and a file list
    of them in the same order at list_path; returns its (path, label) rows."""
    files.mkdir(parents=True, exist_ok=True)
    out = []
    for where, label in rows:
        shard, key = where.split(":")
        with tarfile.open(shards / shard) as tar:
            (files / f"{key}.JPEG").write_bytes(tar.extractfile(f"{key}.jpg").read())
        out.append((f"{key}.JPEG", label))
    list_path.write_text("".join(f"{path} {label}\n" for path, label in out))
    return out


def prepared_shards(base: Path, **layout) -> dict[str, list[tuple[str, int]]]:
    """write_shards(BASE/wds, **layout), then `imagenet-tools prepare BASE/wds --out BASE/lists`."""
    from click.testing import CliRunner

    from tools.prepare_imagenet import main as prepare_main

    expected = write_shards(base / "wds", **layout)
    result = CliRunner().invoke(prepare_main, [str(base / "wds"), "--out", str(base / "lists"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return expected
