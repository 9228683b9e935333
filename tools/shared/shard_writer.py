"""Writing webdataset shards: one tar per call, whole or not at all (a temporary name, then a rename), so that
a run killed mid-shard leaves the finished shards and no half of one; `prepare` (parquet) and `pack` use it.

A sample is written as KEY.jpg (the image as it is), KEY.cls (the label as ASCII digits) and KEY.json, the
members timm/imagenet-1k-wds has.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Iterable

from pipeline.atomic import replacing

# (key, JPEG bytes, label, metadata for KEY.json)
Sample = tuple[str, bytes, int, dict]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: the same samples give the same bytes
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: Iterable[Sample]) -> dict:
    """Write one shard atomically.

    Returns:
        {"shard": name, "samples": count, "bytes": size, "sha256": hex digest} of the tar written.
    """
    path = Path(path)
    count = 0
    with replacing(path) as temp:
        with tarfile.open(temp, "w", format=tarfile.GNU_FORMAT) as tar:
            for key, data, label, meta in samples:
                _add(tar, f"{key}.jpg", data)
                _add(tar, f"{key}.cls", str(int(label)).encode("ascii"))
                _add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"))
                count += 1
        digest = sha256(temp)
        size = temp.stat().st_size
    return {"shard": path.name, "samples": count, "bytes": size, "sha256": digest}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
