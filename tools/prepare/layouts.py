"""The three ways an ImageNet copy is laid out on disk, and how each gives (image, class) pairs.

- "imagefolder": ROOT/train/<class>/* and ROOT/val/<class>/* (ImageNet after valprep.sh, Imagenette).
- "devkit": ROOT/train/<wnid>/* and a flat ROOT/val/ILSVRC2012_val_00000001.JPEG ..., labelled by the
  devkit's data/ILSVRC2012_validation_ground_truth.txt (one ILSVRC2012_ID per line) and data/meta.mat
  (ILSVRC2012_ID -> WNID). ILSVRC2012_IDs are not in sorted-WNID order, so they are mapped through meta.mat.
- "kaggle": ROOT/ILSVRC/Data/CLS-LOC/{train/<wnid>/*, val/*} with ROOT/LOC_val_solution.csv and
  ROOT/LOC_synset_mapping.txt (Kaggle's "ImageNet Object Localization Challenge").

Labels are always the index of the class id in sorted order, the standard ImageNet order.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError

LAYOUTS = ("imagefolder", "devkit", "kaggle")
SPLITS = ("train", "val")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"
KAGGLE_DATA = Path("ILSVRC/Data/CLS-LOC")
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.[A-Za-z]+$")


@dataclass
class Dataset:
    """Images of a tree with their class ids, before any check.

    Attributes:
        layout: one of LAYOUTS.
        classes: (class id, human-readable name) in label order (sorted class ids).
        entries: split -> [(path relative to ROOT, class id)] in a fixed order.
        unlabelled: (path relative to ROOT, reason) for image files the layout gives no class.
        class_dirs: (split, class id) -> class folder relative to ROOT, for folders that exist.
    """

    layout: str
    classes: list[tuple[str, str]]
    entries: dict[str, list[tuple[str, str]]]
    unlabelled: list[tuple[str, str]] = field(default_factory=list)
    class_dirs: dict[tuple[str, str], str] = field(default_factory=dict)


def detect_layout(root: Path) -> str:
    """Name the layout of ROOT, or raise InputError saying what was expected."""
    if (root / KAGGLE_DATA).is_dir():
        return "kaggle"
    val = root / "val"
    if val.is_dir() and any(VAL_NAME.match(name) for name in _visible_files(val)):
        return "devkit"
    if any(_subfolders(root / split) for split in SPLITS):
        return "imagefolder"
    raise InputError(
        f"{root}: unknown layout; expected train/<class>/ and val/<class>/ folders, a flat val/ with the "
        f"devkit, or Kaggle's {KAGGLE_DATA}/ (see docs/prepare.md), or pass --layout"
    )


def scan(root: Path, layout: str, devkit: Path | None = None) -> Dataset:
    """List the images of ROOT in the given layout (see the module docstring).

    Args:
        root: the tree.
        layout: one of LAYOUTS.
        devkit: the devkit folder for layout "devkit" (default: searched for under ROOT).

    Returns:
        The Dataset; no file has been opened yet.

    Raises:
        InputError: a folder or devkit file is missing, or a class id is not in the class table.
    """
    if layout == "imagefolder":
        return _scan_imagefolder(root)
    if layout == "devkit":
        return _scan_devkit(root, devkit)
    if layout == "kaggle":
        return _scan_kaggle(root)
    raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _visible_files(folder: Path) -> list[str]:
    """File names in a folder, without hidden ones (.DS_Store, ._* AppleDouble files)."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as found:
        return sorted(e.name for e in found if not e.name.startswith(".") and e.is_file())


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    with os.scandir(folder) as found:
        return sorted(e.name for e in found if not e.name.startswith(".") and e.is_dir())


def _walk_class(root: Path, class_dir: Path) -> list[str]:
    """Every visible file under a class folder (any depth, like torchvision's ImageFolder), relative to ROOT."""
    found = []
    for folder, dirs, files in os.walk(class_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root).as_posix()
        found.extend(f"{rel}/{name}" for name in sorted(files) if not name.startswith("."))
    return found


def _scan_class_folders(root: Path, base: Path, split: str, dataset: Dataset) -> set[str]:
    """Add `base/<class>/**` of one split to dataset; return the class ids found."""
    classes = _subfolders(root / base)
    dataset.entries[split] = []
    # A file beside the class folders has no class: report it instead of dropping it silently.
    dataset.unlabelled.extend(((base / name).as_posix(), "not inside a class folder")
                              for name in _visible_files(root / base))
    for class_id in classes:
        class_dir = root / base / class_id
        dataset.class_dirs[(split, class_id)] = (base / class_id).as_posix()
        dataset.entries[split].extend((rel, class_id) for rel in _walk_class(root, class_dir))
    return set(classes)


def _scan_imagefolder(root: Path) -> Dataset:
    dataset = Dataset("imagefolder", [], {})
    found: set[str] = set()
    for split in SPLITS:
        if (root / split).is_dir():
            found |= _scan_class_folders(root, Path(split), split, dataset)
    if not found:
        raise InputError(f"{root}: no class folders in train/ or val/; expected train/<class>/*.JPEG")
    # A class seen only in val still gets a label, so train and val labels always agree.
    dataset.classes = [(class_id, class_id) for class_id in sorted(found)]
    return dataset


def _find_devkit_file(root: Path, devkit: Path | None, name: str) -> Path:
    candidates = [devkit / "data", devkit] if devkit else [
        root / "ILSVRC2012_devkit_t12" / "data", root / "ILSVRC2012_devkit_t12", root / "devkit" / "data",
        root / "devkit", root]
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    where = devkit if devkit else root / "ILSVRC2012_devkit_t12" / "data"
    raise InputError(f"{where / name}: devkit file missing; unpack ILSVRC2012_devkit_t12.tar.gz under ROOT "
                     "or pass --devkit DIR")


def read_meta_mat(path: Path) -> dict[int, tuple[str, str]]:
    """ILSVRC2012_ID -> (WNID, words) for the leaf synsets of the devkit's meta.mat.

    Raises:
        InputError: scipy is missing, or the file is not the devkit's meta.mat.
    """
    try:
        import scipy.io
    except ImportError:
        raise InputError(f"{path}: reading meta.mat needs scipy; pip install 'alexnet-dali[devkit]' "
                         "(or pip install scipy)") from None
    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
        names = synsets.dtype.names
        ids, wnids, words = synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["words"]
    except Exception as error:  # scipy raises several types for a file that is not a MATLAB struct
        raise InputError(f"{path}: not the devkit's meta.mat (need a 'synsets' struct with ILSVRC2012_ID, "
                         f"WNID, words): {error}") from None
    # meta.mat also holds the 860 inner WordNet nodes (num_children > 0); only leaves are classes.
    children = synsets["num_children"] if "num_children" in names else [0] * len(ids)
    table = {int(i): (str(w), str(n)) for i, w, n, c in zip(ids.ravel(), wnids.ravel(), words.ravel(),
                                                          _ravel(children)) if int(c) == 0}
    if not table:
        raise InputError(f"{path}: meta.mat has no leaf synsets")
    return table


def _ravel(values):
    return values.ravel() if hasattr(values, "ravel") else values


def _read_ground_truth(path: Path) -> list[int]:
    labels = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                if not line.strip().isdigit():
                    raise InputError(f"{path}:{number}: expected an ILSVRC2012_ID, got {line.strip()!r}")
                labels.append(int(line))
    return labels


def _scan_devkit(root: Path, devkit: Path | None) -> Dataset:
    ground_truth = _read_ground_truth(_find_devkit_file(root, devkit, GROUND_TRUTH))
    meta_path = _find_devkit_file(root, devkit, META)
    meta = read_meta_mat(meta_path)
    dataset = Dataset("devkit", sorted(meta.values()), {})
    known = {wnid for wnid, _ in meta.values()}
    if (root / "train").is_dir():
        extra = _scan_class_folders(root, Path("train"), "train", dataset) - known
        if extra:
            raise InputError(f"{root / 'train' / sorted(extra)[0]}: class not in {meta_path}; "
                             "remove the folder or use --layout imagefolder")
    if not (root / "val").is_dir():
        raise InputError(f"{root / 'val'}: no such folder; the devkit layout needs the flat val/ folder")
    dataset.entries["val"] = []
    for name in _visible_files(root / "val"):
        match, rel = VAL_NAME.match(name), f"val/{name}"
        number = int(match.group(1)) if match else 0
        if not match or not 1 <= number <= len(ground_truth):
            dataset.unlabelled.append((rel, f"no label in {GROUND_TRUTH}"))
        elif ground_truth[number - 1] not in meta:
            raise InputError(f"{GROUND_TRUTH}:{number}: ILSVRC2012_ID {ground_truth[number - 1]} "
                             f"is not a class in {meta_path}")
        else:
            dataset.entries["val"].append((rel, meta[ground_truth[number - 1]][0]))
    return dataset


def _scan_kaggle(root: Path) -> Dataset:
    mapping, solution = root / KAGGLE_SYNSETS, root / KAGGLE_SOLUTION
    for path in (mapping, solution):
        if not path.is_file():
            raise InputError(f"{path}: missing; the Kaggle layout needs {KAGGLE_SYNSETS} and {KAGGLE_SOLUTION} "
                             "beside ILSVRC/")
    names = {}
    with open(mapping, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                wnid, _, words = line.strip().partition(" ")
                names[wnid] = words or wnid
    dataset = Dataset("kaggle", sorted(names.items()), {})
    if (root / KAGGLE_DATA / "train").is_dir():
        extra = _scan_class_folders(root, KAGGLE_DATA / "train", "train", dataset) - set(names)
        if extra:
            raise InputError(f"{root / KAGGLE_DATA / 'train' / sorted(extra)[0]}: class not in {mapping}")
    labels = {}
    with open(solution, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if number == 1 or not row:
                continue  # the header: ImageId,PredictionString
            wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if wnid not in names:
                raise InputError(f"{solution}:{number}: class {wnid!r} is not in {mapping}")
            labels[row[0]] = wnid
    dataset.entries["val"] = []
    for name in _visible_files(root / KAGGLE_DATA / "val"):
        rel = (KAGGLE_DATA / "val" / name).as_posix()
        if Path(name).stem in labels:
            dataset.entries["val"].append((rel, labels[Path(name).stem]))
        else:
            dataset.unlabelled.append((rel, f"no row in {KAGGLE_SOLUTION}"))
    return dataset
