"""Reading the samples of a shard list: DALI's fn.readers.webdataset for the graphs, one seek per sample for the
PIL baseline. pipeline/shards.py has the list format and the index files.

DALI reads the tars named by the list in the order they first appear in it, each tar's listed samples in list
order, through index files written here (a temporary folder per pipeline) that hold only the listed samples:
so a list that is a subset of a shard (a rejected sample, a preview's few images) reads exactly that subset.
`ordered` gives the same order, which the PIL baseline and the shard bounds use, so both backends cut the same
samples into the same ranks.

Training order (docs/pipeline.md): `shuffle_after_epoch` draws a new order of the tars each epoch, the same
on every rank (seeded by cfg.seed), and each rank reads its contiguous part of the samples in that order; a
buffer of `initial_fill` samples (DALI's default 1024) then shuffles within what was read.
"""
from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.pil_image import stored_image, stored_pixels
from pipeline.shards import (Member, format_index, index_path, is_shard_list, parse_label, read_index, read_member,
                             split_entry)

# Index lines hold only these components; the graph reads them in this order.
READ_EXT = ("jpg", "cls")
# The .cls label of a shard sample has at most this many digits (prepare rejects longer ones).
MAX_LABEL_DIGITS = 8
SHUFFLE_BUFFER = 1024  # fn.readers.webdataset's default initial_fill


def ordered(entries: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The entries grouped by shard (shards in order of first appearance, samples in list order): DALI's order."""
    groups: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()
    for path, label in entries:
        shard, _ = split_entry(path)  # type: ignore[misc]
        groups.setdefault(shard, []).append((path, label))
    return [entry for group in groups.values() for entry in group]


def locate(entries: Sequence[tuple[str, int]], folders: Sequence[Path]) -> dict[str, dict[str, Member]]:
    """list path -> {"jpg": Member, "cls": Member} of every entry, from the index files under `folders`
    (the lists' folders, first match wins).

    Raises:
        InputError: no index file for a shard, or a sample missing from its index.
    """
    indexes: dict[str, dict[str, dict[str, Member]]] = {}
    found = {}
    for path, _ in entries:
        shard, key = split_entry(path)  # type: ignore[misc]
        if shard not in indexes:
            candidates = [index_path(folder, shard) for folder in folders]
            indexes[shard] = read_index(next((c for c in candidates if c.is_file()), candidates[0]))
        members = indexes[shard].get(key, {})
        if not all(ext in members for ext in READ_EXT):
            raise InputError(f"{path}: not in the index of {shard} (or without its .jpg or .cls); run "
                             "`imagenet-tools prepare` again so that the lists and index files agree")
        found[path] = {ext: members[ext] for ext in READ_EXT}
    return found


def write_indexes(entries: Sequence[tuple[str, int]], members: dict[str, dict[str, Member]],
                  folder: Path) -> tuple[list[str], list[str]]:
    """One index file per shard in `folder` holding the listed samples: (tar paths, index paths) for DALI."""
    groups: OrderedDict[str, list] = OrderedDict()
    for path, _ in ordered(entries):
        shard, _ = split_entry(path)  # type: ignore[misc]
        groups.setdefault(shard, []).append([members[path][ext] for ext in READ_EXT])
    index_files = []
    for number, samples in enumerate(groups.values()):
        index_files.append(str(Path(folder) / f"{number:06d}.idx"))
        Path(index_files[-1]).write_text(format_index(samples), encoding="utf-8")
    return list(groups), index_files


def label_from_cls(cls):
    """The label of each sample from its .cls bytes (ASCII digits, trailing whitespace allowed), as an int32 of
    shape (1,): DALI has no string-to-integer operator, so the digits are weighted by powers of ten."""
    from nvidia.dali import fn, types

    codes = fn.cast(cls, dtype=types.INT32)
    count = fn.reductions.sum(fn.cast((codes >= 48) & (codes <= 57), dtype=types.INT32))
    digits = fn.cast(fn.pad(cls, axes=[0], shape=[MAX_LABEL_DIGITS], fill_value=48), dtype=types.INT32) - 48
    digits = digits * fn.cast((digits >= 0) & (digits <= 9), dtype=types.INT32)
    weights = np.array([10 ** (MAX_LABEL_DIGITS - 1 - i) for i in range(MAX_LABEL_DIGITS)], dtype=np.int32)
    scaled = fn.reductions.sum(digits * types.Constant(weights))
    divisor = fn.lookup_table(count, keys=list(range(MAX_LABEL_DIGITS + 1)), dtype=types.INT32,
                              values=[float(10 ** (MAX_LABEL_DIGITS - k)) for k in range(MAX_LABEL_DIGITS + 1)])
    return fn.reshape(scaled // divisor, shape=[1])


def read_shards(root: Path, paths: list[str], index_files: list[str], shuffle: bool, seed: int, shard_id: int,
                num_shards: int, name: str, buffer: int = SHUFFLE_BUFFER):
    """fn.readers.webdataset over the tars, with the semantics of the file reader (pipeline/graphs.py): training
    shuffles (tar order each epoch, then a buffer of `buffer` samples), validation sticks to its shard and pads
    its last batch."""
    from nvidia.dali import fn

    options = dict(random_shuffle=True, initial_fill=buffer, shuffle_after_epoch=True,
                   shuffle_after_epoch_seed=int(seed)) if shuffle else dict(stick_to_shard=True)
    jpegs, cls = fn.readers.webdataset(
        paths=[str(Path(root) / path) for path in paths], index_paths=index_files, ext=list(READ_EXT),
        shard_id=shard_id, num_shards=num_shards, pad_last_batch=not shuffle, name=name, **options)
    return jpegs, label_from_cls(cls)


class ShardSampleReader:
    """A shard sample's stored image (pipeline.pil_image.stored_pixels) and its .cls label, one seek each: the
    PIL baseline's reader (picklable, for DataLoader workers)."""

    def __init__(self, root: Path, members: dict[str, dict[str, Member]]) -> None:
        self.root, self.members = Path(root), members

    def __call__(self, path: str) -> tuple[np.ndarray, int]:
        data, label = self.sample(path)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return stored_pixels(image), label
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"{self.root / path}: PIL could not decode this image ({error}); find and drop bad "
                             "samples with `imagenet-tools prepare ROOT --out DIR --check decode`") from None

    def sample(self, path: str) -> tuple[bytes, int]:
        """The image's bytes and the label its .cls says."""
        shard, _ = split_entry(path)  # type: ignore[misc]
        members = self.members[path]
        data = read_member(self.root, shard, members["cls"])
        try:
            label = parse_label(data)
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{self.root / shard}: {members['cls'].name} is not a label ({data[:20]!r}); run "
                             "`imagenet-tools prepare` again") from None
        return read_member(self.root, shard, members["jpg"]), label


def list_folders(train_list: Path | None, val_list: Path | None) -> list[Path]:
    """Where the index files of a run's lists are: beside the lists."""
    return [Path(path).parent for path in (train_list, val_list) if path is not None] or [Path(".")]


def dali_source(entries: Sequence[tuple[str, int]], folders: Sequence[Path]) -> tuple[list[str], list[str], str]:
    """(tars, index files, temporary folder holding them) for fn.readers.webdataset over exactly `entries`; the
    caller removes the folder when the pipeline is gone."""
    import tempfile

    members = locate(entries, folders)
    scratch = tempfile.mkdtemp(prefix="alexnet-shard-index-")
    paths, index_files = write_indexes(entries, members, Path(scratch))
    return paths, index_files, scratch


class EncodedImages:
    """The encoded image of each entry of a list, files and shard samples alike: what the tools that decode
    images themselves (compute-pca, the pictures) read. Picklable; `subset` keeps only what a worker needs."""

    def __init__(self, root: Path, entries: Sequence[tuple[str, int]], folders: Sequence[Path]) -> None:
        self.root = Path(root)
        shards = bool(entries) and is_shard_list(entries)
        self.members = locate(entries, folders) if shards else None

    def read(self, path: str) -> bytes:
        """The bytes of the entry's image file or of its shard sample's .jpg.

        Raises:
            OSError: an unreadable file; InputError: a shard that ends inside the sample.
        """
        if self.members is None:
            return (self.root / path).read_bytes()
        shard, _ = split_entry(path)  # type: ignore[misc]
        return read_member(self.root, shard, self.members[path]["jpg"])

    def open(self, path: str):
        """Something Image.open takes: the file's path, or the sample's bytes in a BytesIO."""
        return self.root / path if self.members is None else io.BytesIO(self.read(path))

    def stored(self, path: str) -> np.ndarray:
        """The entry's stored 256x256 image (pipeline.pil_image.stored_pixels); a bad one is one InputError line."""
        if self.members is None:
            return stored_image(self.root / path)
        try:
            with Image.open(self.open(path)) as image:
                return stored_pixels(image)
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"{self.root / path}: PIL could not read or decode this image ({error}); find and "
                             "drop bad samples with `imagenet-tools prepare ROOT --out DIR --check decode`") from None

    def missing(self, paths: Sequence[str]) -> list[str]:
        """The paths whose file or shard is not there."""
        if self.members is None:
            return [path for path in paths if not (self.root / path).is_file()]
        return [path for path in paths if not (self.root / split_entry(path)[0]).is_file()]  # type: ignore[index]

    def subset(self, paths: Sequence[str]) -> "EncodedImages":
        """The same reader holding only `paths`' index entries (cheap to send to a worker)."""
        part = object.__new__(EncodedImages)
        part.root = self.root
        part.members = None if self.members is None else {path: self.members[path] for path in paths}
        return part
