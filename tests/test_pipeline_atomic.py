"""pipeline/atomic.py: a file is replaced whole or not at all, and no temporary file is left either way."""
from __future__ import annotations

import pytest

from pipeline.atomic import replacing, write_atomic


def test_write_atomic_text_and_bytes_leave_only_the_file(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    assert write_atomic(target, "{\"a\": 1}\n") == target  # the folder is made
    assert target.read_text() == "{\"a\": 1}\n"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "curves.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(target) as temp:
            assert temp.suffix == ".png" and temp.parent == tmp_path  # writers that go by the suffix
            temp.write_bytes(b"half a pic")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_undecodable_names_are_written_with_backslashes_when_asked(tmp_path):
    target = tmp_path / "rejected.tsv"
    name = b"caf\xe9.JPEG".decode("utf-8", "surrogateescape")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, name + "\n")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_atomic(target, name + "\n", errors="backslashreplace")
    assert target.read_text() == "caf\\udce9.JPEG\n"
