"""pipeline.writable: an output folder is proved writable (or refused in one line) before any work."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.writable import writable_folder


def test_a_missing_folder_is_created_and_left_empty(tmp_path):
    folder = tmp_path / "a" / "b"
    assert writable_folder(folder, "--out") == folder
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone


@pytest.mark.parametrize("case, words", [
    ("file", "is a file, not a folder"),
    ("file_in_path", "is a file, not a folder"),
    ("proc", "cannot write files in /proc"),
    ("sys", "cannot write files in /sys"),
])
def test_unwritable_places_are_one_line_naming_the_flag(tmp_path, case, words):
    (tmp_path / "f").write_text("x")
    folder = {"file": tmp_path / "f", "file_in_path": tmp_path / "f" / "run", "proc": Path("/proc"),
              "sys": Path("/sys")}[case]
    with pytest.raises(InputError) as caught:
        writable_folder(folder, "--out")
    message = str(caught.value)
    assert message.startswith(f"--out {folder}:") and words in message and "\n" not in message
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; /proc and /sys cover it there")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot write files in .*Permission denied"):
            writable_folder(folder, "--out")
    finally:
        folder.chmod(0o755)


def test_an_output_file_needs_a_writable_folder_and_must_not_be_a_folder(tmp_path):
    from pipeline.writable import writable_file

    assert writable_file(tmp_path / "new" / "grid.png", "--out") == tmp_path / "new" / "grid.png"
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "grid.png").exists()
    with pytest.raises(InputError, match=r"^--out .*/new: is a folder; give a file name"):
        writable_file(tmp_path / "new", "--out")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"^--png .*/f/chart.png: .*/f is a file, not a folder"):
        writable_file(tmp_path / "f" / "chart.png", "--png")
