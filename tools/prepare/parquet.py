"""`prepare` on the Hugging Face hub's parquet files (ILSVRC/imagenet-1k: data/train-00000-of-00294.parquet,
validation-*, test-*; columns image {bytes, path} and label int64, -1 on the test split).

DALI has no parquet reader, so each parquet file becomes one webdataset shard (KEY.jpg, KEY.cls, KEY.json)
under OUT/shards (or --shards-out), read a row group at a time (memory stays at one row group, ~100 MB), each
shard written atomically: a killed run keeps its finished shards and the next run goes on from there. The
shards are then prepared as any shard folder (tools/prepare/shards.py): the lists are relative to the shard
folder, which is the --root of every later command. Why shards rather than 1.3 M extracted files: docs/prepare.md.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from pipeline.atomic import write_atomic
from pipeline.errors import InputError
from pipeline.writable import writable_folder
from tools.prepare.reencode import NO_SPACE
from tools.prepare.shards import _files, prepare_shards
from tools.shared.shard_writer import write_shard

PARQUET_NAME = re.compile(r"^(?P<split>train|validation|test)-(?P<number>\d+)-of-\d+\.parquet$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Beside each shard, the rows its conversion skipped (file:row, why), so a later run that keeps the shard
# reports them again. A shard without that record (converted by an earlier version, or a stop between the two
# writes) is kept, not converted again (hours for the hub's 300 files), and named with what to do.


def skipped_path(shard: Path) -> Path:
    return shard.with_name(f".{shard.stem}.skipped.tsv")


def _read_skipped(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line]  # type: ignore[misc]


def looks_like_parquet(root: Path) -> bool:
    """Whether ROOT holds the hub's parquet files (ROOT/data/*.parquet or ROOT/*.parquet)."""
    return any(PARQUET_NAME.match(rel.rsplit("/", 1)[-1]) for rel in _files(root) if rel.endswith(".parquet"))


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading parquet files needs pyarrow: pip install 'alexnet-dali[hub]' (or pip install "
                         "pyarrow)") from None
    return pq


def _key(path: str, row: int, used: set[str]) -> str:
    """A sample key from the image's original name (its stem, made tar- and list-safe), unique in its shard."""
    stem = path.rsplit("/", 1)[-1].split(".", 1)[0] if path else ""
    key = _KEY_UNSAFE.sub("_", stem) or f"row{row:07d}"
    if key in used:
        key = f"{key}_row{row:07d}"
    used.add(key)
    return key


def _samples(pq, path: Path, skipped: list):
    """The rows of one parquet file as shard samples, a row group at a time; rows without image bytes or with
    label -1 go to `skipped` (name, why)."""
    handle = pq.ParquetFile(path)
    used: set[str] = set()
    row = 0
    for group in range(handle.num_row_groups):
        table = handle.read_row_group(group, columns=["image", "label"])
        images, labels = table.column("image").to_pylist(), table.column("label").to_pylist()
        for image, label in zip(images, labels):
            name = (image or {}).get("path") or ""
            data = (image or {}).get("bytes")
            if label is None or label < 0:
                skipped.append((f"{path.name}:row{row}", f"label {label} (no label)"))
            elif not data:
                skipped.append((f"{path.name}:row{row}", "no image bytes"))
            else:
                yield _key(name, row, used), data, int(label), {"filename": name, "label": int(label)}
            row += 1
        del table, images, labels


def convert(root: Path, shards: Path) -> tuple[list, list]:
    """Each train/validation parquet file under ROOT into a shard under `shards` (kept if already there).

    Returns:
        (rejected, ignored): (file or file:row, why) rows for prepare's reports.
    """
    pq = _pyarrow()
    rejected, ignored = [], []
    files = [rel for rel in _files(root) if PARQUET_NAME.match(rel.rsplit("/", 1)[-1])]
    todo = []
    for rel in files:
        match = PARQUET_NAME.match(rel.rsplit("/", 1)[-1])
        if match["split"] == "test":
            ignored.append((rel, "test split (label -1: no labels)"))
        else:
            todo.append((rel, shards / f"hub-{match['split']}-{match['number']}.tar"))
    if not todo:
        raise InputError(f"{root}: no train or validation parquet files (train-00000-of-00294.parquet)")
    start = time.perf_counter()
    for done, (rel, target) in enumerate(todo, start=1):
        if target.is_file():
            if skipped_path(target).is_file():
                ignored += _read_skipped(skipped_path(target))
            else:
                ignored.append((rel, f"rows skipped when {target.name} was converted are not recorded (an earlier "
                                     f"version, or a stop before the record was written): delete {target} and run "
                                     "again to have them named"))
            print(f"\rparquet: {done}/{len(todo)} files ({target.name} kept from an earlier run)", end="",
                  file=sys.stderr)
            continue
        skipped: list = []
        try:
            write_shard(target, _samples(pq, root / rel, skipped))
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(error, OSError) and error.errno in NO_SPACE:
                raise InputError(f"{shards}: disk full; free some space and run again (finished shards are "
                                 "kept)") from None
            rejected.append((rel, f"cannot read the parquet file ({str(error).splitlines()[0][:120]}); a "
                                  "download cut short? download it again"))
            continue
        try:
            write_atomic(skipped_path(target), "".join(f"{where}\t{why}\n" for where, why in skipped))
        except OSError as error:
            full = "disk full; free some space and run again" if error.errno in NO_SPACE else error.strerror or error
            raise InputError(f"{skipped_path(target)}: cannot write the record of skipped rows ({full}); "
                             "finished shards are kept") from None
        ignored += skipped
        rate = done / max(time.perf_counter() - start, 1e-9)
        print(f"\rparquet: {done}/{len(todo)} files, {rate:.2f} files/s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return rejected, ignored


def prepare_parquet(options, shards_out: Path | None = None) -> dict:
    """prepare() for a folder of hub parquet files: convert to shards, then prepare those."""
    shards = shards_out or options.out / "shards"
    if shards.resolve() == options.root.resolve() or options.root.resolve() in shards.resolve().parents:
        raise InputError(f"--shards-out {shards}: inside the parquet folder ({options.root}); choose one outside")
    writable_folder(shards, "--shards-out")
    rejected, ignored = convert(options.root, shards)
    summary = prepare_shards(replace(options, root=shards), extra_rejected=rejected, extra_ignored=ignored,
                             layout="parquet")
    summary["parquet"] = {"root": str(options.root), "shards": str(shards), "unreadable_files": len(rejected)}
    return summary
