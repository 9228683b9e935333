"""Kaggle's "ImageNet Object Localization Challenge" label files, beside its ILSVRC/ folder.

`LOC_synset_mapping.txt`: `WNID words` per line, the 1000 classes (`n01440764 tench, Tinca tinca`).
`LOC_val_solution.csv`: header `ImageId,PredictionString`, then per image its id (the file name without .JPEG)
and boxes, `WNID xmin ymin xmax ymax` repeated; every box of an image has the image's class, so the first WNID
is its label.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

SOLUTION = "LOC_val_solution.csv"
MAPPING = "LOC_synset_mapping.txt"


@dataclass(frozen=True)
class KaggleFiles:
    solution: Path | None
    mapping: Path | None
    searched: tuple[Path, ...]

    @property
    def complete(self) -> bool:
        return self.solution is not None and self.mapping is not None


def find_kaggle(folders: list[Path]) -> KaggleFiles:
    """The first LOC_val_solution.csv and LOC_synset_mapping.txt in `folders` (nearest first)."""
    def first(name: str) -> Path | None:
        return next((folder / name for folder in folders if (folder / name).is_file()), None)

    return KaggleFiles(first(SOLUTION), first(MAPPING), tuple(folders))


def read_mapping(path: Path) -> dict[str, str]:
    """WNID -> words."""
    names = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                wnid, _, words = line.strip().partition(" ")
                names[wnid] = words or wnid
    if not names:
        raise InputError(f"{path}: empty")
    return names


def read_solution(path: Path, classes: dict[str, str], mapping: Path) -> dict[str, tuple[str, int]]:
    """ImageId -> (WNID, line number) from LOC_val_solution.csv.

    Raises:
        InputError: a row whose class is not in the mapping.
    """
    labels = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if number == 1 or not row:
                continue  # the header: ImageId,PredictionString
            wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if wnid not in classes:
                raise InputError(f"{path}:{number}: class {wnid!r} is not in {mapping}")
            labels[row[0]] = (wnid, number)
    return labels
