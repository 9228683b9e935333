"""Files that others read are written whole or not at all: to a temporary file beside them, then renamed.

    write_atomic(out / "summary.json", json.dumps(summary))           # text or bytes
    with replacing(out / "curves.png") as temp:                        # a writer that wants a path
        figure.savefig(temp)

A reader (a training run, a script, the next stage) sees the old file or the new one, never half of one;
a write that fails (disk full, an exception in the writer) leaves the old file and no temporary one.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, for writers that go by it); rename it to `path`
    when the block ends without an exception, else remove it. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(path: Path | str, data: str | bytes, encoding: str = "utf-8",
                 errors: str = "strict") -> Path:
    """Write `data` (text or bytes) to `path` through a temporary file; returns `path` as a Path."""
    with replacing(path) as temp:
        if isinstance(data, bytes):
            temp.write_bytes(data)
        else:
            with open(temp, "w", encoding=encoding, errors=errors, newline="\n") as handle:
                handle.write(data)
    return Path(path)
