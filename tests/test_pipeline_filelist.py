"""Bad file lists given to the training CLI: one `Error:` line naming the file and line, exit 1, no traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from model.train import main
from pipeline.errors import InputError
from pipeline.filelist import read_file_list
from tests.conftest import CLASSES, write_image_tree, write_lists


def tree_and_lists(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-class tree with train.txt, val.txt and classes.tsv written independently of `prepare`."""
    root = tmp_path / "tree"
    return root, write_lists(root, write_image_tree(root, {"train": 2, "val": 1}), tmp_path / "lists")


BAD_LINES = {
    "no label": ("train/n01440764/n01440764_0.JPEG", "expected '<path> <label>'"),
    "label not an integer": ("train/n01440764/n01440764_0.JPEG cat", "label 'cat' is not an integer"),
    "negative label": ("train/n01440764/n01440764_0.JPEG -1", "label -1 is out of range"),
    "label past the class table": ("train/n01440764/n01440764_0.JPEG 3", "label 3 is out of range [0, 3)"),
    "duplicate": ("train/n01440764/n01440764_1.JPEG 0", "is listed again (first at line 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_train_list_line_is_one_error_line(tmp_path: Path, case: str) -> None:
    root, lists = tree_and_lists(tmp_path)
    line, expected = BAD_LINES[case]
    train = lists / "train.txt"
    train.write_text(train.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    number = len(train.read_text(encoding="utf-8").splitlines())
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "-b", "2", "--epochs", "1", "--max-steps", "1", "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and f"{train}:{number}" in message and expected in message


def test_missing_image_in_a_list_names_it(tmp_path: Path) -> None:
    root, lists = tree_and_lists(tmp_path)
    missing = root / "train" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG"
    missing.unlink()
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "-b", "6", "--epochs", "1", "--max-steps", "1", "--workers", "1"])
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and missing.name in message and "prepare" in message


def test_read_file_list_accepts_spaces_quotes_and_non_ascii(tmp_path: Path) -> None:
    names = ["a b/it's.JPEG 0", "ü/naïve café.JPEG 1", 'q/"quoted".JPEG 2']
    path = tmp_path / "list.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    assert read_file_list(path, num_classes=3) == [("a b/it's.JPEG", 0), ("ü/naïve café.JPEG", 1),
                                                    ('q/"quoted".JPEG', 2)]
    with pytest.raises(InputError, match=r"list.txt:3: label 2 is out of range \[0, 2\)"):
        read_file_list(path, num_classes=2)
