"""Output folders are proved writable before a command starts its work.

A run that computes for an hour and only then finds that it cannot write its result has lost the hour:
every command that writes files calls `writable_folder` on each output folder first.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.errors import InputError


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _file_in_the_way(folder: Path) -> Path | None:
    """The first component of `folder` (itself included) that exists but is not a folder."""
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.is_dir():
            return part
    return None


def writable_folder(folder: Path, flag: str, given: Path | None = None) -> Path:
    """Create `folder` (and its parents) if missing, then write and delete a small file in it.

    Args:
        folder: the output folder.
        flag: the option that named it (e.g. "--out"), for the message.
        given: the flag's value, when it names a file in `folder` rather than the folder itself.

    Returns:
        `folder`.

    Raises:
        InputError: a file stands where a folder should be, or the folder cannot be created or written
            (no permission, read-only filesystem, /proc or /sys, ...); one line naming the folder.
    """
    folder = Path(folder)
    where = f"{flag} {given if given is not None else folder}"
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise InputError(f"{where}: {blocker} is a file, not a folder; choose another {flag}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{where}: cannot create the folder {folder} ({_reason(error)}); "
                         f"choose another {flag}") from None
    probe = folder / f".write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as error:
        raise InputError(f"{where}: cannot write files in {folder} ({_reason(error)}); "
                         f"choose another {flag}") from None
    return folder


def writable_file(path: Path, flag: str) -> Path:
    """An output file's folder proved writable (`writable_folder`), and the path not an existing folder.

    Returns:
        `path`.

    Raises:
        InputError: as writable_folder, or `path` is a folder; one line naming the flag.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name, e.g. {path / 'out'}{path.suffix}")
    writable_folder(path.parent, flag, given=path)
    return path
