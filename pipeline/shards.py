"""Samples in webdataset shards: the list lines that name them, DALI's index files, and reading one sample.

A file list names a sample in a shard as `<shard path relative to ROOT>:<key> <label>`, e.g.

    shards/imagenet1k-train-0000.tar:n01440764_10026 0

where the shard holds `n01440764_10026.jpg` (the image) and `n01440764_10026.cls` (the label as ASCII digits).
A list is all shard samples or all files, never a mix. `prepare` writes, beside the lists, an index file per
shard in DALI's format (`index/<shard path>.idx`, as DALI's wds2idx writes it: a line `v1.2 <samples>`, then
one line per sample of `<ext> <offset> <size> <member name>` groups) holding the listed samples' .jpg and .cls.
The readers (pipeline/graphs.py, the PIL baseline) find each sample's bytes through them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.errors import InputError

INDEX_VERSION = "v1.2"
INDEX_FOLDER = "index"
# The components a sample needs: the image and its label.
EXTENSIONS = ("jpg", "cls")
_ENTRY = re.compile(r"^(?P<shard>.+?\.tar):(?P<key>[^/]+)$")


def shard_entry(shard: str, key: str) -> str:
    """The path field of a list line for sample `key` of `shard` (a path relative to ROOT)."""
    return f"{shard}:{key}"


def split_entry(path: str) -> tuple[str, str] | None:
    """(shard, key) of a list path that names a shard sample, else None (a file)."""
    match = _ENTRY.match(path)
    return (match["shard"], match["key"]) if match else None


def is_shard_list(entries: Sequence[tuple[str, int]], where: str = "the file list") -> bool:
    """Whether a list names shard samples (True) or files (False).

    Raises:
        InputError: a list that mixes the two.
    """
    kinds = {split_entry(path) is not None for path, _ in entries}
    if len(kinds) > 1:
        first = next(path for path, _ in entries if split_entry(path) is not None)
        raise InputError(f"{where}: mixes shard samples ({first}) and files; a list is one or the other")
    return kinds == {True}


def index_path(folder: Path, shard: str) -> Path:
    """Where the index of `shard` lies under a lists folder."""
    return Path(folder) / INDEX_FOLDER / f"{shard}.idx"


def split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member's name, split at the first dot of its base name (as wds2idx does)."""
    dot = name.find(".", name.rfind("/") + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1:])


# What the DALI graph decodes from a .cls (pipeline/shard_reader.py label_from_cls, which pads or cuts the
# bytes to 8): digits first, then only whitespace, 8 bytes at most. prepare refuses anything else, so that
# DALI and the PIL baseline read the same label.
CLS_BYTES = 8
_CLS = re.compile(rb"[0-9]+[ \t\r\n]*")


def parse_label(data: bytes) -> int:
    """A .cls component's label: ASCII digits, then optional trailing whitespace ("123", "7\\n"), at most
    CLS_BYTES bytes; leading whitespace, a sign or a longer field is not a label."""
    if len(data) > CLS_BYTES or not _CLS.fullmatch(data):
        raise ValueError(f"not a label of at most {CLS_BYTES} bytes (digits, then only whitespace): {data[:20]!r}")
    return int(data.strip())


@dataclass(frozen=True)
class Member:
    """One component of a sample in a tar: where its bytes are."""

    ext: str
    offset: int
    size: int
    name: str


def format_index(samples: Iterable[Sequence[Member]]) -> str:
    """An index file's text (DALI's v1.2 format, as wds2idx writes it)."""
    lines = [" ".join(f"{m.ext} {m.offset} {m.size} {m.name}" for m in sample) for sample in samples]
    return f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)


def read_index(path: Path) -> dict[str, dict[str, Member]]:
    """key -> {ext: Member} of an index file, in file order.

    Raises:
        InputError: a missing or malformed index file.
    """
    if not path.is_file():
        raise InputError(f"{path}: no index file for this shard; write the lists and index files with "
                         "`imagenet-tools prepare ROOT --out DIR` and pass the lists from DIR")
    samples: dict[str, dict[str, Member]] = {}
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().split()
        if len(header) != 2 or header[0] != INDEX_VERSION:
            raise InputError(f"{path}: not a {INDEX_VERSION} webdataset index; run `imagenet-tools prepare` again")
        for number, line in enumerate(handle, start=2):
            fields = line.split(" ")
            if len(fields) % 4 or not fields[0]:
                raise InputError(f"{path}:{number}: expected '<ext> <offset> <size> <name>' groups")
            members = [Member(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3].rstrip("\n"))
                       for i in range(0, len(fields), 4)]
            key = members[0].name.rsplit("/", 1)[-1].split(".", 1)[0]
            samples[key] = {member.ext: member for member in members}
    return samples


def read_member(root: Path, shard: str, member: Member) -> bytes:
    """The bytes of one component, read with one seek (the tar stays closed between samples)."""
    with open(Path(root) / shard, "rb") as handle:
        handle.seek(member.offset)
        data = handle.read(member.size)
    if len(data) != member.size:
        raise InputError(f"{Path(root) / shard}: ends inside {member.name} (truncated since the index was "
                         "written?); run `imagenet-tools prepare` again")
    return data
