"""prepare's direct reading of tar headers (tools/prepare/tar_headers.py) against Python's tarfile on the same
tars: ustar names with a prefix, GNU long names, pax headers, folders and links, base-256 sizes; the types it
leaves to tarfile; and prepare's results through it equal to tarfile's (the fallback) on a pax shard."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.shard_data import jpeg
from tools.prepare import shard_scan
from tools.prepare.tar_headers import Unsupported, headers

LONG = "n01440764_" + "a" * 120 + "_1"  # over 100 characters: a GNU 'L' or a pax 'path' record
NAMES = ["n00000000_1.jpg", "n00000000_1.cls", f"{LONG}.jpg", f"{LONG}.cls", "dir/ünïcode_2.jpg",
         "p" * 90 + "/q" * 40 + ".jpg"]


def write(path: Path, fmt: int, names: list[str] = NAMES, **options) -> None:
    with tarfile.open(path, "w", format=fmt, **options) as tar:
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for number, name in enumerate(names):
            data = jpeg(number) if name.endswith(".jpg") else b"7"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "n00000000_1.jpg"
        tar.addfile(link)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_members_are_tarfiles(tmp_path: Path, fmt: int) -> None:
    path = tmp_path / "t.tar"
    # ustar has no long names, only what fits its name and prefix fields
    write(path, fmt, [n for n in NAMES if LONG not in n and "ü" not in n] if fmt == tarfile.USTAR_FORMAT else NAMES)
    with tarfile.open(path) as tar:
        expected = [(m.name, m.isfile(), m.offset_data, m.size if m.isfile() else 0) for m in tar.getmembers()]
    with open(path, "rb") as handle:
        got = [(h.name, h.regular, h.offset_data, h.size) for h in headers(handle)]
    assert got == expected and len(got) >= 5


def test_what_it_leaves_to_tarfile_and_bad_starts(tmp_path: Path) -> None:
    write(tmp_path / "g.tar", tarfile.PAX_FORMAT, pax_headers={"comment": "global"})  # a global 'g' header
    with open(tmp_path / "g.tar", "rb") as handle, pytest.raises(Unsupported):
        list(headers(handle))
    (tmp_path / "empty.tar").write_bytes(b"")
    (tmp_path / "text.tar").write_bytes(b"not a tar\n" * 100)
    for name, words in (("empty.tar", "empty file"), ("text.tar", "invalid header")):
        with open(tmp_path / name, "rb") as handle, pytest.raises(tarfile.ReadError, match=words):
            list(headers(handle))


def test_base256_size(tmp_path: Path) -> None:
    block = bytearray(tarfile.TarInfo("x.jpg").tobuf(tarfile.GNU_FORMAT)[:512])
    block[124:136] = b"\x80" + (3).to_bytes(11, "big")  # a size of 3 written in base 256
    block[148:156] = b" " * 8
    block[148:155] = f"{sum(block):06o}\0".encode()
    (tmp_path / "b.tar").write_bytes(bytes(block) + b"abc".ljust(512, b"\0") + bytes(1024))
    with open(tmp_path / "b.tar", "rb") as handle:
        assert [(h.name, h.size, h.offset_data) for h in headers(handle)] == [("x.jpg", 3, 512)]


@pytest.mark.parametrize("fmt, options", [(tarfile.PAX_FORMAT, {}), (tarfile.PAX_FORMAT, {"pax_headers": {"a": "b"}}),
                                          (tarfile.GNU_FORMAT, {})])
def test_scan_results_equal_tarfiles(tmp_path: Path, fmt: int, options: dict, monkeypatch) -> None:
    """A shard scanned through the headers and through tarfile (the fallback, forced): the same account."""
    write(tmp_path / "s.tar", fmt, **options)
    job = (tmp_path, "s.tar", tmp_path / "out", "header", 1, 10 ** 9, 20.0, "repair")
    fast = shard_scan.scan_tar(job)
    monkeypatch.setattr(shard_scan, "_fast_walk", lambda path: (_ for _ in ()).throw(Unsupported("forced")))
    slow = shard_scan.scan_tar(job)
    assert fast == slow and len(fast["samples"]) == 2 and fast["members"]["found"] == len(NAMES) + 2
