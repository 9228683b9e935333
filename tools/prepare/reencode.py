"""Re-encoding of `prepare`: one image written as an upright RGB JPEG (repaired, or resized for --resize).

A copy only ever appears complete, and a rerun keeps only copies it can vouch for:
- it is encoded in memory, written to `NAME.part` in the same folder, flushed to disk (fsync), its size
  checked against the bytes meant, and only then renamed to NAME;
- it carries its source's stamp (size and mtime) in a JPEG comment segment (COM), so the record of what it
  was made from is inside the copy itself: complete exactly when the copy is, with no manifest that a full
  disk or a killed run could leave stale;
- a rerun keeps an existing copy only if its header is sound, it ends with the end-of-image marker
  (tools.prepare.header) and its stamp matches the source as it is now; otherwise it is redone and the
  reason counted (`redo_reason`).

Worker functions take and return plain tuples so a process pool (tools.shared.jobs) can ship them cheaply.
"""
from __future__ import annotations

import errno
import io
import os

from PIL import Image

from pipeline.pil_image import QUARTER_TURNS, orientation, resized_size, upright_rgb
from tools.prepare.check import our_size_limit
from tools.prepare.header import read_header

PART_SUFFIX = ".part"
STAMP_PREFIX = b"alexnet-dali prepare source "
# Why a copy from an earlier run is not kept (counted per reason in summary.json and the printed line).
INCOMPLETE, CHANGED, NO_STAMP = "incomplete or corrupt copy", "source changed", "no record of its source"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def source_stamp(src: str) -> bytes:
    """What a copy records about its source: size and modification time (ns)."""
    info = os.stat(src)
    return STAMP_PREFIX + f"size={info.st_size} mtime_ns={info.st_mtime_ns}".encode()


def redo_reason(dst: str, stamp: bytes) -> str:
    """"" if the copy at `dst` is complete and made from the source as it is now (`stamp`), else why not."""
    try:
        header = read_header(dst)
    except OSError:
        return INCOMPLETE
    if header.problem or header.format != "jpeg":
        return INCOMPLETE
    if not header.comment.startswith(STAMP_PREFIX):
        return NO_STAMP
    return "" if header.comment == stamp else CHANGED


def write_whole(path: str, data: bytes) -> None:
    """Write `data` to a new file at `path`, flushed to the disk, and check that all of it is there.

    Raises:
        OSError: the write failed (ENOSPC for a full disk), or fewer bytes are on disk than were meant.
    """
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        size = os.fstat(handle.fileno()).st_size
    if size != len(data):
        raise OSError(errno.EIO, f"{size} of {len(data)} bytes written")


def _with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """The same JPEG with a COM segment right after its start-of-image marker (pixels unchanged)."""
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def encode(src: str, copy_ok: bool, quality: int, shorter: int | None, stamp: bytes | None) -> bytes:
    """The bytes of the upright RGB JPEG copy of `src` (see write_jpeg), stamped with `stamp` (None: no stamp,
    so the bytes depend on the source's content only: `pack --resize`)."""
    with our_size_limit(), Image.open(src) as image:
        turn = orientation(image)
        upright = image.size[::-1] if turn in QUARTER_TURNS else image.size
        size = resized_size(*upright, shorter) if shorter else upright
        if copy_ok and turn == 1 and size == image.size:
            with open(src, "rb") as handle:
                data = handle.read()
            return _with_comment(data, stamp) if stamp is not None else data
        if image.format == "JPEG":  # decode at 1/2, 1/4, 1/8 scale when that is still >= size
            image.draft("RGB", size[::-1] if turn in QUARTER_TURNS else size)
        rgb = upright_rgb(image)
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)  # antialiased downsampling
        buffer = io.BytesIO()
        stamped = {"comment": stamp} if stamp is not None else {}
        rgb.save(buffer, "JPEG", quality=quality, **stamped)  # no EXIF: nothing left to rotate
        return buffer.getvalue()


def write_jpeg(job: tuple[str, str, bool], quality: int, shorter: int | None) -> tuple[str, str]:
    """Write `src` as an upright RGB JPEG at `dst`, resized so its shorter side is `shorter` (None: same size).

    The EXIF orientation is applied to the pixels, as DALI's decoders do by default (adjust_orientation=True),
    and the copy has no EXIF, so no reader can rotate it again. An existing `dst` is kept when it is complete
    and made from the source as it is now (this is what makes an interrupted run resumable); see the module
    docstring.

    Args:
        job: (source path, destination path, copy_ok): copy_ok means the source is a good RGB JPEG,
            so when no pixel would change it is copied byte for byte (plus the stamp) instead of re-encoded.
        quality: JPEG quality of the written file.
        shorter: target length of the shorter side, or None.

    Returns:
        ("done" | "redone" | "kept" | "failed" | "nospace" | "nowrite", message); for "redone" the message is
        why the earlier copy was not kept.
    """
    src, dst, copy_ok = job
    try:
        stamp = source_stamp(src)
    except OSError as error:
        return "failed", f"unreadable: {error.strerror or error}"
    redo = redo_reason(dst, stamp) if os.path.lexists(dst) else ""
    if os.path.lexists(dst) and not redo:
        return "kept", ""
    try:
        data = encode(src, copy_ok, quality, shorter, stamp)
    except Exception as error:  # a decoder error of any type means this image cannot be used
        return "failed", f"does not decode: {error}"
    part = dst + PART_SUFFIX
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        write_whole(part, data)
        os.replace(part, dst)
    except OSError as error:
        _remove(part)
        if error.errno in NO_SPACE:
            return "nospace", f"disk full while writing {dst}"
        return "nowrite", f"cannot write {dst} ({error.strerror or error})"
    return ("redone", redo) if redo else ("done", "")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
