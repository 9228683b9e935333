"""The run folder (`--out`): proved writable, locked while a run uses it, never taken over by accident.

- Before any work: the folder is created and a file is written in it (pipeline.writable), so an
  unwritable --out is an error at the start, not after an epoch.
- While a run trains it holds an exclusive lock on RUNDIR/.lock (flock). The kernel drops the lock when
  the process ends, however it ends (kill -9 included), so a stale lock never blocks a later run; the
  file names the holder (pid, host, start time) for the message a second run prints. On NFS, flock is
  a POSIX lock taken on the server, so two hosts exclude each other too.
- A new run into a folder that holds a checkpoint is refused unless it resumes that folder's run
  (--resume) or the user asked for --overwrite; with --overwrite the previous run's files are removed,
  with a word, when training starts.
"""
from __future__ import annotations

import datetime
import fcntl
import os
import socket
import sys
from pathlib import Path

from model.checkpoint import BEST_NAME, CHECKPOINT_NAME
from model.run_log import METRICS_NAME
from pipeline.errors import InputError
from pipeline.writable import writable_folder

LOCK_NAME = ".lock"
RUN_FILES = (CHECKPOINT_NAME, BEST_NAME, METRICS_NAME)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


def _lock(out: Path) -> int | None:
    """An open descriptor holding the exclusive lock on out/.lock, or None where the filesystem has no locks."""
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"--out {out} is in use by another run ({_holder(path)}); wait for it to end, "
                             "or choose another --out") from None
        except OSError as error:  # e.g. a FUSE filesystem without flock
            os.close(fd)
            print(f"warning: --out {out}: cannot lock it ({error.strerror}); nothing keeps a second run out",
                  file=sys.stderr)
            return None
        # The previous holder removes the file when it ends; if it did so after we opened it, we hold a
        # lock on a file nobody else will see: take the one that is there now.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
            break
        os.close(fd)
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode())
    return fd


def _same_run(out: Path, resume: Path) -> bool:
    """Whether --resume names this folder or a checkpoint inside it."""
    resume = Path(os.path.abspath(resume))
    out = Path(os.path.abspath(out))
    return resume == out or resume.parent == out


class RunFolder:
    """The lock on a run folder, and what --overwrite will remove; `release` ends both."""

    def __init__(self, out: Path, fd: int | None, previous: list[str]) -> None:
        self.out, self._fd, self.previous = out, fd, previous

    @classmethod
    def claim(cls, out: Path, resume: Path | None, overwrite: bool) -> "RunFolder":
        """Check and lock `out` for a training run.

        Raises:
            InputError: not writable, locked by another run, or it holds a checkpoint that this run
                would overwrite without --resume of it or --overwrite.
        """
        out = writable_folder(Path(out), "--out")
        fd = _lock(out)
        folder = cls(out, fd, [])
        try:
            existing = [name for name in (CHECKPOINT_NAME, BEST_NAME) if (out / name).exists()]
            if existing and not overwrite and (resume is None or not _same_run(out, resume)):
                found = " and ".join(existing)
                if resume is None:
                    raise InputError(f"--out {out} already holds a run ({found}); continue it with --resume {out}, "
                                     "replace it with --overwrite, or choose another --out")
                raise InputError(f"--out {out} holds another run's {found}, which this run (from --resume "
                                 f"{resume}) would overwrite; add --overwrite, or choose another --out")
            if overwrite and (resume is None or not _same_run(out, resume)):
                folder.previous = [name for name in RUN_FILES if (out / name).exists()]
        except BaseException:
            folder.release()
            raise
        return folder

    def remove_previous(self) -> None:
        """--overwrite: delete the previous run's checkpoints and metrics, and say so."""
        for name in self.previous:
            (self.out / name).unlink(missing_ok=True)
        if self.previous:
            print(f"--overwrite: removed the previous run's {', '.join(self.previous)} from {self.out}",
                  file=sys.stderr)
        self.previous = []

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in this order: see _lock)."""
        if self._fd is None:
            return
        (self.out / LOCK_NAME).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
