"""A tar's members read from their 512-byte headers directly: what prepare's shard scan needs (name, size,
whether it is a regular file, where its data is), without tarfile's full TarInfo per member, which cost more
than checking the sample itself (docs/BENCHMARKS.md). Follows tarfile's reading: ustar names with their prefix,
GNU long names ('L'), pax 'path' and 'size' records ('x'), base-256 sizes, a header with a bad checksum or cut
short ends the walk after the first member. Anything else (sparse files, global pax headers, GNU long link
names, ...) raises Unsupported, and the caller reads the tar with tarfile instead.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
REGULAR = (b"0", b"\0", b"7")  # tarfile's REGULAR_TYPES, less the GNU sparse type
OTHER = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, folders, FIFOs: no data follows
POSIX_MAGIC = b"ustar\x0000"
PAX_KEPT = {"path", "size"}
PAX_IGNORED = {"mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "linkpath", "comment", "charset"}


class Unsupported(Exception):
    """A header this reader leaves to tarfile."""


@dataclass
class Header:
    name: str
    regular: bool
    offset_data: int
    size: int


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    if field[0] in (0o200, 0o377):  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) * (field[0] == 0o377)
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise tarfile.ReadError("invalid header") from None


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except tarfile.ReadError:
        return False
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    if stored == unsigned:
        return True
    return stored == 256 + sum(b - 256 * (b > 127) for b in block[:148] + block[156:])


def _pax(payload: bytes) -> dict[str, str]:
    records, position = {}, 0
    while position < len(payload) and payload[position:position + 1] != b"\0":
        length = int(payload[position:payload.index(b" ", position)])
        key, _, value = payload[payload.index(b" ", position) + 1:position + length - 1].partition(b"=")
        name = key.decode("utf-8", "surrogateescape")
        if name not in PAX_KEPT | PAX_IGNORED:
            raise Unsupported(f"pax record {name}")
        records[name] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def headers(handle: BinaryIO) -> Iterator[Header]:
    """The members of the tar open in `handle`, in order. The caller may read a regular member's data
    (handle.read(size)) before asking for the next; the walk seeks past it either way.

    Raises:
        tarfile.ReadError: an empty file, a first header that is not one, data cut short in a long name or pax
            header. Unsupported: see the module docstring.
    """
    offset, long_name, pax = 0, None, {}
    while True:
        handle.seek(offset)
        block = handle.read(BLOCK)
        if len(block) < BLOCK or block == ZERO_BLOCK or not _checksum_ok(block):
            if offset == 0:
                raise tarfile.ReadError("empty file" if not block else "not a tar file (invalid header)")
            return  # as tarfile: the walk ends; the caller's end-of-archive check names a cut
        kind, size = block[156:157], _number(block[124:136])
        data = offset + BLOCK
        padded = -(-size // BLOCK) * BLOCK
        if kind in (b"L", b"x"):
            payload = handle.read(size)
            if len(payload) < size:
                raise tarfile.ReadError("unexpected end of data")
            if kind == b"L":
                long_name = _text(payload)
            else:
                pax = _pax(payload)
            offset = data + padded
            continue
        if kind not in REGULAR + OTHER:
            raise Unsupported(f"member type {kind!r}")
        name = _text(block[:100])
        prefix = _text(block[345:500]) if block[257:265] == POSIX_MAGIC else ""
        if prefix:
            name = f"{prefix}/{name}"
        name = pax.get("path", long_name or name)
        size = int(pax["size"]) if "size" in pax else size
        regular = kind in REGULAR and not (kind == b"\0" and name.endswith("/"))
        if not regular and name.endswith("/"):
            name = name.rstrip("/")
        yield Header(name, regular, data, size if regular else 0)
        offset = data + (-(-size // BLOCK) * BLOCK if regular else 0)
        long_name, pax = None, {}
