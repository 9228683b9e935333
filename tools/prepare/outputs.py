"""`prepare`'s output folders, checked before any file is read: writable, and outside the scanned tree.

An --out (or --repair-dir, --resized-root) inside ROOT would be scanned by the next run: `--out ROOT/train/zz`
made a class `zz` of the lists and the repaired copies, and listed the copies again with that label.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import InputError
from pipeline.atomic import write_atomic
from pipeline.writable import writable_folder

RESIZE_MARKER = ".prepare-resize.json"


def _inside(folder: Path, root: Path) -> bool:
    """Whether `folder` is ROOT or below it, comparing real paths (links resolved, missing parts kept)."""
    folder, root = folder.resolve(), root.resolve()
    return folder == root or root in folder.parents


def check_outputs(root: Path, out: Path, repair_dir: Path, resized_root: Path | None, resize: int | None,
                  quality: int, repairs: bool) -> None:
    """Refuse outputs inside ROOT, then prove each output folder writable (creating it), before the scan.

    Args:
        root: the scanned tree.
        out: --out.
        repair_dir: where repaired copies go (proved writable only when `repairs`).
        resized_root, resize, quality: --resized-root and its settings (None: no resize).
        repairs: whether repaired copies may be written (--on-bad repair without --resize).

    Raises:
        InputError: one line naming the flag and the folder.
    """
    outputs = [("--out", out), ("--repair-dir", repair_dir), ("--resized-root", resized_root)]
    for flag, folder in outputs:
        if folder is not None and _inside(folder, root):
            raise InputError(f"{flag} {folder}: inside the tree being scanned ({root}); the next run would read "
                             f"its files as images: choose a {flag} outside ROOT")
    writable_folder(out, "--out")
    if repairs:
        writable_folder(repair_dir, "--repair-dir")
    if resized_root is not None:
        writable_folder(resized_root, "--resized-root")
        _check_resize_settings(resized_root, {"resize": resize, "quality": quality})


def _check_resize_settings(resized_root: Path, settings: dict) -> None:
    """Refuse to mix images of two different --resize/--quality runs in one resized tree."""
    marker = resized_root / RESIZE_MARKER
    if marker.is_file() and marker.read_text() != json.dumps(settings):
        raise InputError(f"{resized_root}: holds images written with {marker.read_text().strip()}; "
                         f"use a new --resized-root for {settings}")
    try:
        write_atomic(marker, json.dumps(settings))
    except OSError as error:
        raise InputError(f"{marker}: cannot write ({error.strerror or error}); free some space") from None
