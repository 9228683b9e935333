"""The class table and validation labels of a tree, from the devkit or Kaggle's files; which layout a tree is.

Labels are always the index of the class id (WNID) in sorted order, the standard ImageNet order
(n01440764 = 0), whatever the source: the devkits' IDs are mapped to WNIDs first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from tools.prepare import devkit as dk
from tools.prepare import kaggle as kg
from tools.prepare.places import Places


@dataclass(frozen=True)
class ValLabels:
    """What label files say.

    Attributes:
        layout: "devkit" or "kaggle".
        classes: (WNID, name), sorted by WNID: the label order.
        by_image: image id (file name without its extension) -> (WNID, where it says so, e.g. `FILE line 7`).
        files: the files read.
        source: the file named in `no label in ...`.
    """

    layout: str
    classes: list[tuple[str, str]]
    by_image: dict[str, tuple[str, str]]
    files: tuple[Path, ...]
    source: str


def devkit_labels(files: dk.DevkitFiles) -> ValLabels:
    truth_path, table_path = files.ground_truth, files.table
    assert truth_path is not None and table_path is not None
    table = dk.read_table(table_path)
    by_image = {}
    for number, ilsvrc_id in enumerate(dk.read_ground_truth(truth_path), start=1):
        if ilsvrc_id not in table:
            raise InputError(f"{truth_path}:{number}: ILSVRC ID {ilsvrc_id} is not a class in {table_path}")
        by_image[f"ILSVRC2012_val_{number:08d}"] = (table[ilsvrc_id][0], f"{truth_path.name} line {number}")
    return ValLabels("devkit", sorted(table.values()), by_image, (truth_path, table_path), truth_path.name)


def kaggle_labels(files: kg.KaggleFiles) -> ValLabels:
    assert files.solution is not None and files.mapping is not None
    names = kg.read_mapping(files.mapping)
    rows = kg.read_solution(files.solution, names, files.mapping)
    by_image = {image: (wnid, f"{kg.SOLUTION} line {number}") for image, (wnid, number) in rows.items()}
    return ValLabels("kaggle", sorted(names.items()), by_image, (files.solution, files.mapping), kg.SOLUTION)


def choose_labels(root: Path, places: Places, layout: str, devkit: Path | None, needed: bool) -> ValLabels | None:
    """The label files of the tree, or None for the imagefolder layout (labels = class folder names).

    Args:
        root: ROOT.
        places: its parts.
        layout: "auto", or the one asked for with --layout.
        devkit: --devkit DIR, if given.
        needed: whether the tree needs label files in "auto" (a CLS-LOC tree, or flat val images).

    Raises:
        InputError: label files missing: names every layout the tree could be and the files each needs.
    """
    if layout == "imagefolder" or (layout == "auto" and not needed):
        return None
    devkit_files = dk.find_devkit(dk.devkit_folders(list(places.label_folders), devkit))
    kaggle_files = kg.find_kaggle(list(places.label_folders))
    if layout == "devkit" or (layout == "auto" and devkit is not None):  # --devkit DIR says which files
        if devkit_files.complete:
            return devkit_labels(devkit_files)
        raise missing(root, places, devkit_files, None, devkit)
    if layout == "kaggle":
        if kaggle_files.complete:
            return kaggle_labels(kaggle_files)
        raise missing(root, places, None, kaggle_files)
    if kaggle_files.complete:
        return kaggle_labels(kaggle_files)
    if devkit_files.complete:
        return devkit_labels(devkit_files)
    raise missing(root, places, devkit_files, kaggle_files, devkit)


def _folders(paths: tuple[Path, ...], root: Path) -> str:
    return ", ".join(f"{path}/" for path in paths)


def missing(root: Path, places: Places, devkit: dk.DevkitFiles | None, kaggle: kg.KaggleFiles | None,
            given: Path | None = None) -> InputError:
    """One line: why label files are needed, each layout the tree could be with the files it needs and where
    they were looked for, what was found, and what to do (`given`: --devkit DIR)."""
    val = places.splits.get("val")
    why = (f"{root / places.base}: an ILSVRC CLS-LOC tree needs its label files" if places.cls_loc else
           f"{root / val if val else root}: its flat ILSVRC2012_val_* images need label files")
    parts, found = [], []
    if devkit is not None:
        where = (_folders(devkit.searched, root) if given is not None else
                 f"{_folders(places.label_folders, root)} and {'their' if len(places.label_folders) > 1 else 'its'} "
                 f"{', '.join(d + '/' for d in dk.DEVKIT_FOLDERS)} with or without data/")
        parts.append(f"the ILSVRC2012 devkit needs {dk.GROUND_TRUTHS[0]} and meta.mat, the ILSVRC2015 devkit "
                     f"{dk.GROUND_TRUTHS[1]} and meta_clsloc.mat or map_clsloc.txt (looked in {where})")
        found += [str(path) for path in (devkit.ground_truth, devkit.table) if path is not None]
    if kaggle is not None:
        parts.append(f"Kaggle's download needs {kg.SOLUTION} and {kg.MAPPING} (looked in "
                     f"{_folders(kaggle.searched, root)})")
        found += [str(path) for path in (kaggle.solution, kaggle.mapping) if path is not None]
    hint = {(True, False): ("--devkit DIR is the folder that holds data/ (or the files themselves)" if given else
                            "unpack the devkit under ROOT or pass --devkit DIR"),
            (False, True): f"put {kg.SOLUTION} and {kg.MAPPING} beside ILSVRC/",
            (True, True): "unpack the devkit under ROOT or pass --devkit DIR, or put Kaggle's LOC_val_solution.csv "
                          "and LOC_synset_mapping.txt beside ILSVRC/"}[(devkit is not None, kaggle is not None)]
    have = f"; found only {', '.join(found)}" if found else ""
    return InputError(f"{why}: {'; '.join(parts)}{have}; {hint}")
