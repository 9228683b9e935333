"""What `imagenet-tools pack` (tools/pack.py) writes: a prepared file tree as pre-shuffled webdataset shards.

The training list is shuffled once (numpy's permutation for --seed: the same seed gives the same shards, byte for
byte) and cut into shards of --shard-size samples (S/imagenet1k-train-NNNN.tar); validation keeps its order
(S/imagenet1k-validation-NNNN.tar). Each sample is KEY.jpg (the file as it is, or prepare's resize of it),
KEY.cls and KEY.json (its path in R, label and class). Beside each shard goes its DALI index (NAME.idx), and
S/manifest.json lists every shard with its samples, bytes and sha256. Each shard is written whole or not at all;
a second run with the same settings keeps the finished shards and writes the rest.
"""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.atomic import write_atomic
from pipeline.errors import InputError
from pipeline.filelist import read_class_table, read_file_list
from pipeline.shards import Member, format_index, split_name
from tools.shared.shard_writer import sha256, write_shard

SPLIT_NAMES = {"train": "train", "val": "validation"}
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _keys(entries: list[tuple[str, int]]) -> list[str]:
    """A key per file: its name without extension, made tar-safe; a repeated one gets its list position."""
    keys, used = [], set()
    for position, (rel, _) in enumerate(entries):
        key = _KEY_UNSAFE.sub("_", rel.rsplit("/", 1)[-1].split(".", 1)[0]) or "file"
        if key in used:  # another file's key: its list position, then a counter, until unused
            base, extra = f"{key}_{position}", 0
            key = base
            while key in used:
                extra += 1
                key = f"{base}_{extra}"
        used.add(key)
        keys.append(key)
    return keys


def _image(root: str, rel: str, resize) -> bytes:
    """The file's bytes, or `resize`'s copy of it: prepare's re-encoder (tools/prepare/reencode.encode with its
    quality and shorter side bound, no stamp), a function of the source path."""
    if resize is None:
        return Path(root, rel).read_bytes()
    try:
        return resize(os.path.join(root, rel))
    except OSError as error:
        # a failed read has an errno; PIL's decode errors (a truncated file, not an image) are OSErrors without one
        if error.errno is not None and not isinstance(error, Image.UnidentifiedImageError):
            raise InputError(f"{Path(root) / rel}: cannot read ({error.strerror or error})") from None
        raise InputError(f"{Path(root) / rel}: does not decode ({str(error)[:120]}); run "
                         "`imagenet-tools prepare --check decode` first") from None
    except Exception as error:  # a decoder error of any type means this image cannot be used
        raise InputError(f"{Path(root) / rel}: does not decode ({str(error)[:120]}); run "
                         "`imagenet-tools prepare --check decode` first") from None


def _write_index(shard: Path) -> None:
    """NAME.idx beside the shard, as DALI's wds2idx writes it (every member, grouped by key)."""
    samples: list[list[Member]] = []
    last = None
    with tarfile.open(shard) as tar:
        for info in tar.getmembers():
            key, ext = split_name(info.name)
            if key != last:
                samples.append([])
                last = key
            samples[-1].append(Member(ext, info.offset_data, info.size, info.name))
    write_atomic(shard.with_suffix(".idx"), format_index(samples))


def pack_shard(job: tuple) -> dict:
    """Write one shard (job: root, shard path, rows (rel, label, key, class id, name), resize function)."""
    root, path, rows, resize = job
    path = Path(path)
    if not path.is_file():
        samples = ((key, _image(root, rel, resize), label,
                    {"filename": rel, "label": label, "class_id": cid, "class_name": name})
                   for rel, label, key, cid, name in rows)
        write_shard(path, samples)
    if not path.with_suffix(".idx").is_file():
        _write_index(path)
    return {"shard": path.name, "samples": len(rows), "bytes": path.stat().st_size, "sha256": sha256(path)}


def plan(lists: Path, root: Path, out: Path, seed: int, shard_size: int, resize=None) -> list[tuple]:
    """The shards to write, as pack_shard's jobs, in order (train shuffled, then validation)."""
    classes = read_class_table(lists / "classes.tsv")
    jobs = []
    for split, name in SPLIT_NAMES.items():
        if not (lists / f"{split}.txt").is_file():
            continue
        entries = read_file_list(lists / f"{split}.txt", len(classes))
        keys = _keys(entries)
        order = np.random.default_rng(seed).permutation(len(entries)) if split == "train" else range(len(entries))
        rows = [(entries[i][0], entries[i][1], keys[i], *classes[entries[i][1]]) for i in order]
        for number, start in enumerate(range(0, len(rows), shard_size)):
            shard = out / f"imagenet1k-{name}-{number:04d}.tar"
            jobs.append((str(root), str(shard), rows[start:start + shard_size], resize))
    if not jobs:
        raise InputError(f"{lists}: no train.txt or val.txt; write them with `imagenet-tools prepare`")
    return jobs
