"""ImageNet trees as real downloads lie on disk, generated small: the ILSVRC2012 devkit + tars, the ILSVRC2015
devkit's CLS-LOC tree, Kaggle's "ImageNet Object Localization Challenge". The labels the tests expect are
computed here from the same tables (ground truth line -> ID -> WNID -> index in sorted WNIDs), independently of
the code under test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from tests.test_tools_prepare_check import small_rgb

# ILSVRC IDs -> (WNID, words), deliberately not in sorted-WNID order, as in the real devkit (ID 1 is n02119789).
SYNSETS = {1: ("n03000684", "chain saw"), 2: ("n01440764", "tench, Tinca tinca"), 3: ("n02102040", "springer")}
SORTED_WNIDS = sorted(wnid for wnid, _ in SYNSETS.values())
# Line i of the ground truth labels ILSVRC2012_val_0000000i.JPEG (an ILSVRC ID).
GROUND_TRUTH = [3, 1, 2, 1, 3, 2]
CLS_LOC = "ILSVRC/Data/CLS-LOC"


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def val_wnid(number: int) -> str:
    return SYNSETS[GROUND_TRUTH[number - 1]][0]


def val_label(number: int) -> int:
    """The label of validation image `number`: its WNID's index in sorted order (n01440764 = 0)."""
    return SORTED_WNIDS.index(val_wnid(number))


def write_images(folder: Path, names: Iterable[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        small_rgb(seed=index % 3).save(folder / name, "JPEG")


def write_meta_mat(path: Path, id_field: str = "ILSVRC2012_ID", name_field: str = "words",
                   inner_nodes: bool = True) -> None:
    """A devkit .mat shaped like the real ones: a 'synsets' struct array.

    ILSVRC2012 meta.mat: ILSVRC2012_ID, WNID, words, num_children (the 860 inner WordNet nodes have children);
    ILSVRC2015 meta_clsloc.mat: ILSVRC2015_CLSLOC_ID, WNID, name, description, num_train_images (leaves only).
    """
    import scipy.io

    if inner_nodes:
        rows = [(i, wnid, words, 0) for i, (wnid, words) in SYNSETS.items()] + [(4, "n00001740", "entity", 3)]
        fields = [id_field, "WNID", name_field, "num_children"]
    else:
        rows = [(i, wnid, words, f"about {words}", 1300) for i, (wnid, words) in SYNSETS.items()]
        fields = [id_field, "WNID", name_field, "description", "num_train_images"]
    synsets = np.zeros((1, len(rows)), dtype=[(field, "O") for field in fields])
    for index, row in enumerate(rows):
        synsets[0, index] = tuple(np.array([[v]]) if isinstance(v, int) else v for v in row)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"synsets": synsets})


def write_map_clsloc(path: Path) -> None:
    """The ILSVRC2015 devkit's map_clsloc.txt: `WNID ID name` per line, in ID order (`n02119789 1 kit_fox`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{wnid} {i} {words.split(',')[0].replace(' ', '_')}\n"
                            for i, (wnid, words) in sorted(SYNSETS.items())))


def write_val(val: Path, sorted_numbers: Iterable[int] = (), make_all_folders: bool = False) -> None:
    """Validation images, flat, except `sorted_numbers`, which are in val/<wnid>/ (valprep.sh's result).

    valprep.sh first creates every class folder, then moves the images one by one: make_all_folders=True with
    some numbers sorted is a run that stopped midway.
    """
    moved = set(sorted_numbers)
    if make_all_folders:
        for wnid in SORTED_WNIDS:
            (val / wnid).mkdir(parents=True, exist_ok=True)
    for number in range(1, len(GROUND_TRUTH) + 1):
        folder = val / val_wnid(number) if number in moved else val
        write_images(folder, [val_name(number)])


def write_train(train: Path, per_class: int = 2) -> None:
    for wnid in SORTED_WNIDS:
        write_images(train / wnid, [f"{wnid}_{i}.JPEG" for i in range(per_class)])


def write_devkit_2012(root: Path, folder: str = "ILSVRC2012_devkit_t12") -> Path:
    """ILSVRC2012_devkit_t12.tar.gz unpacked: data/{meta.mat, ground truth, blacklist}, evaluation/, readme."""
    data = root / folder / "data"
    write_meta_mat(data / "meta.mat")
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in GROUND_TRUTH))
    (data / "ILSVRC2012_validation_blacklist.txt").write_text("2\n")
    (root / folder / "evaluation").mkdir()
    (root / folder / "evaluation" / "eval_flat.m").write_text("% matlab\n")
    (root / folder / "readme.txt").write_text("ILSVRC2012 devkit\n")
    return data


def write_devkit_2015(data: Path, table: str = "meta_clsloc.mat") -> Path:
    """The ILSVRC2015 devkit's data/: ILSVRC2015_clsloc_validation_ground_truth.txt and a class table."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "ILSVRC2015_clsloc_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in GROUND_TRUTH))
    if table == "meta_clsloc.mat":
        write_meta_mat(data / table, id_field="ILSVRC2015_CLSLOC_ID", name_field="name", inner_nodes=False)
    else:
        write_map_clsloc(data / table)
    return data


def write_kaggle(root: Path, sorted_numbers: Iterable[int] = (), test_images: int = 2) -> Path:
    """Kaggle's tree: ILSVRC/{Data,Annotations,ImageSets}/CLS-LOC/ and the LOC_* files beside ILSVRC/."""
    data = root / CLS_LOC
    write_train(data / "train", per_class=1)
    write_val(data / "val", sorted_numbers)
    write_images(data / "test", [f"ILSVRC2012_test_{i:08d}.JPEG" for i in range(1, test_images + 1)])
    (root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val").mkdir(parents=True)
    (root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000001.xml").write_text("<annotation/>")
    (root / "ILSVRC" / "ImageSets" / "CLS-LOC").mkdir(parents=True)
    (root / "ILSVRC" / "ImageSets" / "CLS-LOC" / "val.txt").write_text("ILSVRC2012_val_00000001 1\n")
    rows = ["ImageId,PredictionString"]
    for number in range(1, len(GROUND_TRUTH) + 1):
        wnid = val_wnid(number)
        rows.append(f"{val_name(number)[:-5]},{wnid} 1 2 30 40 {wnid} 5 6 20 30 ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    words = dict(SYNSETS.values())
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {words[w]}\n" for w in SORTED_WNIDS))
    (root / "LOC_sample_submission.csv").write_text("ImageId,PredictionString\n")
    (root / "LOC_train_solution.csv").write_text("ImageId,PredictionString\n")
    return data
