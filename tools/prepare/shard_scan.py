"""One webdataset tar read once, front to back, from its member headers (tools/prepare/tar_headers.py; Python's
tarfile in stream mode for header types that reader leaves to it; one member in memory at a time): every member accounted for, every sample's image checked as prepare checks a file, its index written.

A sample is the run of consecutive members that share a key (the name up to the first dot of its base name,
as DALI's wds2idx groups them): KEY.jpg (the image), KEY.cls (the label, ASCII digits), KEY.json (metadata:
`class_name`, `filename`). Worker functions take and return plain values so that a process pool can ship them.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Callable, Iterator

from pipeline.atomic import write_atomic
from pipeline.shards import Member, format_index, index_path, parse_label, split_name
from tools.prepare.check import check_file
from tools.prepare.tar_headers import Header, Unsupported, headers

BLOCK = 512
# Labels of more digits than this are refused (the DALI graph parses up to 8; ImageNet-21k needs 5).
MAX_LABEL_DIGITS = 7
_WNID = re.compile(r"^(n\d{8})_")
# What a file tree would re-encode (tools/prepare/check.py "fix") but DALI's CPU decoder decodes as it is (measured:
# docs/prepare.md, "Checks and bad files"; TIFF and WebP by a reviewer's check): in a shard, which cannot be
# re-encoded in place, such a sample is listed as it is (and named in summary.json); the PIL paths convert it by
# the same rule (pipeline/pil_image.py). Not run on the GPU graph here (nvImageCodec decodes these on the GPU or
# falls back to its CPU codec). ImageNet has ~2 % grayscale JPEGs: rejecting them would drop ~25,000 training
# images of a hub download. `--on-bad reject` rejects them as for files. GIF data fails in DALI; arithmetic-coded
# JPEGs were never tried with it (PIL cannot write one): both are rejected.
DECODES_AS_IS = ("grayscale JPEG", "CMYK JPEG", "PNG data, not JPEG", "BMP data, not JPEG", "TIFF data, not JPEG",
                 "WEBP data, not JPEG")
NOT_AS_IS = {"arithmetic-coded JPEG": "not tested with DALI's decoders"}


class _TarScan:
    """The running account of one tar (see scan_tar)."""

    def __init__(self, rel: str, check: str, min_side: int, max_pixels: int, max_aspect: float,
                 on_bad: str = "repair") -> None:
        self.rel, self.check, self.min_side, self.max_pixels = rel, check, min_side, max_pixels
        self.max_aspect, self.on_bad = max_aspect, on_bad
        self.samples: list[tuple[str, int, int, int]] = []  # (key, label, width, height), tar order
        self.as_is: list[tuple[str, str]] = []  # (where, why) of listed samples a file tree would re-encode
        self.index: list[list[Member]] = []
        self.rejected: list[tuple[str, str]] = []
        self.ignored: list[tuple[str, str]] = []
        self.classes: dict[int, tuple[str, str]] = {}  # label -> (wnid or "", class name or "")
        self.members = {"found": 0, "listed": 0, "rejected": 0, "ignored": 0}

    def where(self, key: str) -> str:
        return f"{self.rel}:{key}"

    def ignore(self, name: str, why: str) -> None:
        self.members["ignored"] += 1
        self.ignored.append((self.where(name), why))

    def finish(self, key: str | None, parts: dict) -> None:
        """Decide one sample: listed, or rejected with its reason; members it does not use are ignored."""
        if key is None:
            return
        extra = [ext for ext in parts if ext not in ("jpg", "cls", "json")]
        for ext in extra:
            self.ignore(f"{key}.{ext}", "not used (a sample is read as .jpg, .cls, .json)")
        used = len(parts) - len(extra)
        why, label, size = self._verdict(key, parts)
        if why:
            self.members["rejected"] += used
            self.rejected.append((self.where(key), why))
            return
        self.members["listed"] += used
        self.samples.append((key, label, *size))
        self.index.append([parts["jpg"][0], parts["cls"][0]])
        if label not in self.classes or not self.classes[label][0]:
            self.classes[label] = _class_of(key, parts.get("json", (None, b""))[1])

    def _verdict(self, key: str, parts: dict) -> tuple[str, int, tuple[int, int]]:
        if "jpg" not in parts:
            return "no image (.jpg) in this sample", 0, (0, 0)
        if "cls" not in parts:
            return "no label (.cls) in this sample", 0, (0, 0)
        try:
            label = parse_label(parts["cls"][1])
        except (ValueError, UnicodeDecodeError):
            return (f"label (.cls) is not ASCII digits followed only by whitespace, 8 bytes at most "
                    f"({parts['cls'][1][:20]!r})"), 0, (0, 0)
        if len(str(label)) > MAX_LABEL_DIGITS:
            return f"label {label} has more than {MAX_LABEL_DIGITS} digits", 0, (0, 0)
        status, reason, width, height = check_file(io.BytesIO(parts["jpg"][1]), self.check, self.min_side,
                                                   self.max_pixels, self.max_aspect)
        if status == "fix" and reason in DECODES_AS_IS and self.on_bad == "repair":
            self.as_is.append((self.where(key), reason))
        elif status == "fix":  # a shard is read as it is: nothing can be repaired in place
            why = ("--on-bad reject" if reason in DECODES_AS_IS
                   else f"{NOT_AS_IS.get(reason, 'DALI does not decode it')}, and shards are read as they are")
            return f"{reason} ({why})", label, (width, height)
        if status == "reject":
            return reason, label, (width, height)
        return "", label, (width, height)


def _class_of(key: str, meta: bytes) -> tuple[str, str]:
    """(class id, class name) as far as a sample tells: its json's class_id, else the WNID its json's filename
    or its key starts with."""
    try:
        info = json.loads(meta) if meta else {}
    except ValueError:
        info = {}
    info = info if isinstance(info, dict) else {}
    if info.get("class_id"):  # written by `imagenet-tools pack`: the class id of the prepared tree
        return str(info["class_id"]), str(info.get("class_name", ""))
    match = _WNID.match(str(info.get("filename", ""))) or _WNID.match(key.rsplit("/", 1)[-1])
    return (match[1] if match else ""), str(info.get("class_name", ""))


def _fast_walk(path: Path) -> Iterator[tuple[Header, Callable[[], bytes]]]:
    """Each member's header and a function reading its data, from the headers directly (tools/prepare/tar_headers)."""
    with open(path, "rb") as handle:
        for header in headers(handle):
            yield header, lambda size=header.size: handle.read(size)


def _tarfile_walk(path: Path) -> Iterator[tuple[Header, Callable[[], bytes]]]:
    """The same through tarfile in stream mode: for the header types that the fast walk leaves to it."""
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            header = Header(info.name, info.isfile(), info.offset_data, info.size)
            yield header, lambda info=info: _extract(tar, info)


def _extract(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    return handle.read() if handle is not None else b""


def _read_members(walk: Iterator[tuple[Header, Callable[[], bytes]]], scan: _TarScan) -> tuple[int, str]:
    """Walk the tar; returns (end of the last member's data, why the walk stopped early or "")."""
    key, parts, end, reading, seen = None, {}, 0, 0, set()
    try:
        for info, read in walk:
            scan.members["found"] += 1
            reading = 1  # until the member is in `parts` or ignored
            if not info.regular:
                scan.ignore(info.name, "not a regular file (folder or link)")
                reading = 0
                continue
            name_key, ext = split_name(info.name)
            if not name_key or name_key.endswith("/") or name_key.rsplit("/", 1)[-1].startswith("."):
                scan.ignore(info.name, "hidden file")
                reading = 0
                continue
            if "/" in name_key:  # a list entry is TAR:KEY, and DALI's index names the bare key
                scan.ignore(info.name, "a folder in the member name (tar the files themselves: "
                                       "tar -cf X.tar -C DIR <files>)")
                reading = 0
                continue
            if name_key != key and name_key in seen:
                scan.ignore(info.name, "duplicate key: a sample of this name came earlier in the tar")
                reading = 0
                continue
            if name_key != key:
                scan.finish(key, parts)
                key, parts = name_key, {}
                seen.add(key)
            data = read() if ext in ("jpg", "cls", "json") else b""
            if ext in ("jpg", "cls", "json") and len(data) != info.size:
                raise tarfile.ReadError("unexpected end of data")
            parts[ext] = (Member(ext, info.offset_data, info.size, info.name), data)
            reading = 0
            end = info.offset_data + -(-info.size // BLOCK) * BLOCK
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as error:
        if key is not None and (parts or reading):  # the sample being read when the data stopped
            scan.members["rejected"] += len(parts) + reading
            scan.rejected.append((scan.where(key), "cut off where the shard is truncated"))
        return end, str(error) or type(error).__name__
    scan.finish(key, parts)
    return end, ""


def _ends_properly(path: Path, end: int) -> bool:
    """Whether the tar goes on, after its last member, with the end-of-archive zero block (a download cut at
    a member's boundary reads as a shorter tar otherwise)."""
    with open(path, "rb") as handle:
        handle.seek(end)
        block = handle.read(BLOCK)
    return len(block) == BLOCK and not block.strip(b"\0")


def scan_tar(job: tuple) -> dict:
    """Read one tar (see the module docstring) and write the index of its accepted samples.

    Args:
        job: (root, tar path relative to root, lists folder, check, min_side, max_pixels, max_aspect, on_bad).

    Returns:
        samples (key, label, width, height), rejected and ignored (where, why), as_is (where, why: listed
        though a file tree would re-encode it), classes {label: (wnid, name)}, members (found, listed,
        rejected, ignored), truncated ("" or why the tar ends early).
    """
    root, rel, out, check, min_side, max_pixels, max_aspect, on_bad = job
    path = Path(root) / rel
    scan = _TarScan(rel, check, min_side, max_pixels, max_aspect, on_bad)
    try:
        end, stopped = _read_members(_fast_walk(path), scan)
    except Unsupported:  # a header type the fast walk leaves to tarfile: read the whole tar again with it
        scan = _TarScan(rel, check, min_side, max_pixels, max_aspect, on_bad)
        end, stopped = _read_members(_tarfile_walk(path), scan)
    if not stopped and scan.members["found"] and not _ends_properly(path, end):
        stopped = "no end-of-archive block after the last member"
    if not scan.members["found"] and not stopped:
        stopped = "empty tar"
    if stopped:
        scan.rejected.append((rel, f"truncated shard ({stopped}): {len(scan.samples)} samples readable before "
                                   "the cut are listed; download it again"))
    write_atomic(index_path(Path(out), rel), format_index(scan.index))
    return {"samples": scan.samples, "rejected": scan.rejected, "ignored": scan.ignored, "as_is": scan.as_is,
            "classes": scan.classes, "members": scan.members, "truncated": stopped}
