"""What `prepare` writes into --out: the file lists, classes.tsv, rejected.tsv and summary.json.

Every file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written list that a training run could pick up.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.atomic import replacing
from pipeline.filelist import format_line

# One listed image: (split, path written in the list, class id, original width, original height).
Listed = tuple[str, str, str, int, int]


def write_text(path: Path, lines: Iterable[str]) -> None:
    """Write lines (each followed by a newline) atomically: temp file, then rename."""
    with replacing(path) as part:  # streamed: ImageNet's train list is 1.28 M rows
        # backslashreplace: a name that is not UTF-8 (rejected, never listed) still gets a readable row.
        with open(part, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
            for line in lines:
                handle.write(line + "\n")


def _one_field(text: str) -> str:
    """A value that fits in one TSV field."""
    return " ".join(text.replace("\t", " ").split())


# How rejected.tsv and ignored.tsv write a path, so that any name can be found again (`unescape_name`).
ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
NAME_FORM = ("relative to ROOT, in UTF-8; \\\\ \\t \\n \\r stand for a backslash, tab, line feed, carriage "
             "return, and \\xHH for a byte of the name that is not UTF-8 "
             "(tools.prepare.report.unescape_name gives back the name)")


def escape_name(name: str) -> str:
    """`name` (a str from os.fsdecode: bytes that are not UTF-8 are surrogates) in the reports' escaped form."""
    out = []
    for char in name:
        if char in ESCAPES:
            out.append(ESCAPES[char])
        elif "\udc80" <= char <= "\udcff":  # an undecodable byte, as surrogateescape keeps it
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(char)
    return "".join(out)


def unescape_name(text: str) -> bytes:
    """The file name (bytes, for open() or os.fsdecode) of a path written by `escape_name`."""
    out, pos = bytearray(), 0
    while pos < len(text):
        char = text[pos]
        if char == "\\" and text[pos + 1:pos + 2] == "x":
            out.append(int(text[pos + 2:pos + 4], 16))
            pos += 4
        elif char == "\\":
            out += UNESCAPES[text[pos + 1]].encode()
            pos += 2
        else:
            out += char.encode("utf-8")
            pos += 1
    return bytes(out)


def _write_report(path: Path, what: str, rows: list[tuple[str, str]]) -> Path:
    """`# header` line, then `path<TAB>reason` per row, the path escaped (`escape_name`)."""
    header = f"# path<TAB>reason: {what}; path: {NAME_FORM}"
    write_text(path, [header, *(f"{escape_name(rel)}\t{_one_field(reason)}" for rel, reason in rows)])
    return path


def write_rejected(out: Path, rejected: list[tuple[str, str]]) -> Path:
    """rejected.tsv: a header line, then `path<TAB>reason`, paths relative to ROOT, in scan order."""
    return _write_report(out / "rejected.tsv", "files that cannot be used", rejected)


def write_ignored(out: Path, ignored: list[tuple[str, str]]) -> Path:
    """ignored.tsv: a header line, then `path<TAB>reason` for each file that is not part of the data set."""
    return _write_report(out / "ignored.tsv", "files that are not part of the data set", ignored)


def account(found: int, listed: int, repaired: int, rejected: int, ignored: int) -> dict[str, int]:
    """Where the files under ROOT went: each in exactly one place.

    Raises:
        RuntimeError: the places do not add up to the files found (a bug of prepare, not of the tree).
    """
    files = {"found": found, "listed": listed, "repaired": repaired, "rejected": rejected, "ignored": ignored}
    if listed + repaired + rejected + ignored != found:
        raise RuntimeError(f"prepare lost count of files: {files}; please report this")
    return files


def write_lists(out: Path, listed: list[Listed], classes: list[tuple[str, str]], splits: Iterable[str]) -> list[Path]:
    """train.txt / val.txt (`<path> <label>`) for each split that has images, and classes.tsv. The list of a
    split without images that an earlier run left in `out` is removed (it lists another tree's images).

    Returns:
        The paths written.
    """
    label = {class_id: index for index, (class_id, _) in enumerate(classes)}
    written = []
    for split in splits:
        rows = [format_line(rel, label[class_id]) for s, rel, class_id, _, _ in listed if s == split]
        if rows:
            written.append(out / f"{split}.txt")
            write_text(written[-1], rows)
        else:
            (out / f"{split}.txt").unlink(missing_ok=True)
    table = out / "classes.tsv"
    write_text(table, (f"{i}\t{_one_field(cid)}\t{_one_field(name)}" for i, (cid, name) in enumerate(classes)))
    return written + [table]


def _stats(values: list[int]) -> dict:
    if not values:
        return {}
    array = np.asarray(values)
    return {"min": int(array.min()), "median": float(np.median(array)), "mean": round(float(array.mean()), 1),
            "max": int(array.max())}


def summarize(listed: list[Listed], classes: list[tuple[str, str]], repaired: list[tuple[str, str, str]],
              rejected: list[tuple[str, str]], settings: dict, timing: dict, ignored: list[tuple[str, str]],
              files: dict[str, int], empty_class_folders: list[str]) -> dict:
    """The content of summary.json.

    Args:
        listed: the images in the lists.
        classes: (class id, name) in label order.
        repaired: (path relative to ROOT, why, path of the re-encoded copy).
        rejected: (path relative to ROOT, why).
        ignored: (path relative to ROOT, why) of the files that are not part of the data set.
        files: the account of every file under ROOT (`account`).
        empty_class_folders: class folders that gave their class no image.
        settings: the run's options (root, layout, check, ...), copied as they are.
        timing: seconds per stage and the header/decode check's files/s.

    Returns:
        A JSON-ready dict.
    """
    splits: dict[str, dict] = {}
    for split, _, class_id, _, _ in listed:
        entry = splits.setdefault(split, {"images": 0, "per_class": Counter()})
        entry["images"] += 1
        entry["per_class"][class_id] += 1
    for entry in splits.values():
        entry["per_class"] = {cid: entry["per_class"].get(cid, 0) for cid, _ in classes}
    widths = [w for *_, w, _ in listed]
    heights = [h for *_, h in listed]
    return {
        **settings,
        "classes": len(classes),
        "splits": splits,
        # No val images (no val/ folder, or none valid): no val.txt; model.train then trains without validation.
        "validation_set": "val" in splits,
        "image_size": {"width": _stats(widths), "height": _stats(heights),
                       "shorter_side": _stats([min(w, h) for w, h in zip(widths, heights)])},
        "repaired": {"count": len(repaired), "by_reason": dict(Counter(why for _, why, _ in repaired)),
                     "files": [{"path": rel, "reason": why, "copy": copy} for rel, why, copy in repaired]},
        "rejected": {"count": len(rejected), "by_reason": dict(Counter(_reason_kind(why) for _, why in rejected))},
        "ignored": {"count": len(ignored), "by_reason": dict(Counter(why.split(" (")[0] for _, why in ignored))},
        "files": files,
        "empty_class_folders": empty_class_folders,
        # A class with a label but no training image: a val folder whose name is not a train folder's (a
        # typo makes a class of its own and shifts every label after it), or a train folder with none valid.
        "classes_without_training_images": ([cid for cid, _ in classes if not splits["train"]["per_class"][cid]]
                                            if "train" in splits else []),
        "timing": timing,
    }


def _reason_kind(reason: str) -> str:
    """A reason without its file-specific detail, for counting ("too small (3x4; ...)" -> "too small")."""
    return reason.split(" (")[0].split(":")[0]


def write_summary(out: Path, summary: dict) -> Path:
    path = out / "summary.json"
    write_text(path, [json.dumps(summary, indent=2, ensure_ascii=False)])
    return path
