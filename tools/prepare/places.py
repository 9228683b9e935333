"""Where the parts of an ImageNet copy are: the folder that holds train/ and val/ (under their own or their tar
names), the test split, and the folders where label files are looked for.

- A plain tree: ROOT/train/, ROOT/val/ (or ILSVRC2012_img_train/, ILSVRC2012_img_val/ as the tars unpack).
- A CLS-LOC tree (Kaggle's download, or ILSVRC2015's): ROOT/ILSVRC/Data/CLS-LOC/, ROOT/Data/CLS-LOC/ (ROOT =
  ILSVRC/ or ILSVRC2015/), or ROOT itself when it is .../Data/CLS-LOC. Its label files are looked for from the
  CLS-LOC folder up to the folder above ILSVRC/ (Kaggle's LOC_*.csv lie there).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from tools.prepare.tree import Tree

CLS_LOC_BASES = ("ILSVRC/Data/CLS-LOC", "ILSVRC2015/Data/CLS-LOC", "Data/CLS-LOC")
SPLIT_FOLDERS = {"train": ("train", "ILSVRC2012_img_train"), "val": ("val", "ILSVRC2012_img_val")}
TEST_FOLDERS = ("test", "ILSVRC2012_img_test", "ILSVRC2012_img_test_v10102019")
# A validation image as the organisers name it (also in Kaggle's tree).
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")


@dataclass(frozen=True)
class Places:
    """The parts of a tree, paths relative to ROOT ("" is ROOT).

    Attributes:
        base: the folder that holds the splits.
        cls_loc: whether it is a CLS-LOC tree (its labels come from label files, never from folder names alone).
        splits: split -> its folder, for the splits that exist.
        tests: the test split's folders (no labels: ignored).
        ilsvrc: the ILSVRC/ folder of a CLS-LOC tree (Annotations/, ImageSets/ beside Data/), None if outside ROOT.
        label_folders: where label files are looked for, nearest first (absolute).
    """

    base: str
    cls_loc: bool
    splits: dict[str, str]
    tests: tuple[str, ...]
    ilsvrc: str | None
    label_folders: tuple[Path, ...]


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def find_places(root: Path, tree: Tree, plain_only: bool) -> Places:
    """The parts of ROOT (see the module docstring); `plain_only` (--layout imagefolder) skips CLS-LOC trees.

    Raises:
        InputError: a split is there twice (val/ and ILSVRC2012_img_val/).
    """
    base, cls_loc = "", False
    if not plain_only:
        base = next((b for b in CLS_LOC_BASES if b in tree.folders), "")
        cls_loc = bool(base) or (root.resolve().name == "CLS-LOC" and root.resolve().parent.name == "Data")
    splits = {}
    for split, names in SPLIT_FOLDERS.items():
        found = [_join(base, name) for name in names if _join(base, name) in tree.folders]
        if len(found) > 1:
            raise InputError(f"{root}: both {found[0]}/ and {found[1]}/ hold {split} images; listing both would "
                             "count every image twice: keep one (move or delete the other)")
        if found:
            splits[split] = found[0]
    tests = tuple(_join(base, name) for name in TEST_FOLDERS if _join(base, name) in tree.folders)
    data = (root / base).resolve()
    if cls_loc:
        above = [data, data.parent, data.parent.parent, data.parent.parent.parent]
        depth = len(Path(base).parts) - 2 if base else -2  # ILSVRC/ is two folders above CLS-LOC
        ilsvrc = "/".join(Path(base).parts[:depth]) if depth >= 0 else None
    else:
        above, ilsvrc = [root.resolve()], None
    label_folders = tuple(dict.fromkeys(folder for folder in above if folder.is_dir()))
    return Places(base, cls_loc, splits, tests, ilsvrc, label_folders)


def has_flat_val_images(tree: Tree, places: Places) -> bool:
    """Whether val/ holds ILSVRC2012_val_* images directly (not in class folders): they need label files."""
    val = places.splits.get("val")
    if val is None:
        return False
    prefix = val + "/"
    return any(rel.startswith(prefix) and "/" not in rel[len(prefix):] and VAL_NAME.match(rel[len(prefix):])
               for rel in tree.files)
