"""The DALI file-list format that `prepare` writes and every reader consumes.

One image per line: `<path relative to ROOT> <label>`. The label is the last space-separated token,
so a path may itself contain spaces (DALI's file reader splits at the last whitespace too).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputError


def format_line(relpath: str, label: int) -> str:
    """One line of a file list (without the newline)."""
    if "\n" in relpath or "\r" in relpath:
        raise InputError(f"file name with a line break cannot go in a file list: {relpath!r}")
    return f"{relpath} {label}"


def read_file_list(list_path: Path, num_classes: int | None = None) -> list[tuple[str, int]]:
    """Read and check a file list.

    Args:
        list_path: the train.txt / val.txt written by `imagenet-tools prepare`.
        num_classes: when given, labels must lie in [0, num_classes).

    Returns:
        (relative path, label) pairs in file order.

    Raises:
        InputError: missing file, a line without a label, a tab before the label, a label that is not a non-negative
            integer or is out of range, a path listed twice; the message names the file and line.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise InputError(f"{list_path}: no such file list; write one with `imagenet-tools prepare ROOT --out DIR`")
    entries: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    with open(list_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            where = f"{list_path}:{number}"
            before_tab, tab, after_tab = line.rpartition("\t")
            if tab and after_tab.strip().isdigit():
                raise InputError(f"{where}: a tab before the label; the label must follow a space: "
                                 f"'<path> <label>', e.g. '{before_tab.strip()} {after_tab.strip()}'")
            relpath, _, label_text = line.rpartition(" ")
            if not relpath:
                raise InputError(f"{where}: expected '<path> <label>', got {line!r}")
            try:
                label = int(label_text)
            except ValueError:
                raise InputError(f"{where}: label {label_text!r} is not an integer") from None
            if label < 0 or (num_classes is not None and label >= num_classes):
                bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
                raise InputError(f"{where}: label {label} is out of range {bound}")
            # prepare never lists a file twice; a repeated line would silently weigh that image double
            if relpath in first_line:
                raise InputError(f"{where}: {relpath!r} is listed again (first at line {first_line[relpath]}); "
                                 "remove the duplicate or rerun `imagenet-tools prepare`")
            first_line[relpath] = number
            entries.append((relpath, label))
    if not entries:
        raise InputError(f"{list_path}: the file list is empty")
    return entries


def read_class_table(path: Path) -> list[tuple[str, str]]:
    """Read classes.tsv (`index<TAB>class id<TAB>name`) into (class id, name) pairs, by index."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no class table; `imagenet-tools prepare` writes classes.tsv beside the lists")
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0].isdigit() or int(fields[0]) != len(rows):
                raise InputError(f"{path}:{number}: expected '<index>\\t<class id>\\t<name>' with index {len(rows)}")
            rows.append((fields[1], fields[2] if len(fields) > 2 else fields[1]))
    return rows
