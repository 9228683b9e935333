"""The ways an ImageNet copy lies on disk, and the fate of every file under ROOT: a candidate image with its
class, a file the layout cannot label (rejected), or a file that is not part of the data set (ignored).

- "imagefolder": ROOT/train/<class>/** and ROOT/val/<class>/** (ImageNet after valprep.sh, Imagenette).
- "devkit": val images labelled by an ILSVRC devkit (2012: ILSVRC2012_validation_ground_truth.txt + meta.mat;
  2015: ILSVRC2015_clsloc_validation_ground_truth.txt + meta_clsloc.mat or map_clsloc.txt), see devkit.py.
- "kaggle": Kaggle's ILSVRC/Data/CLS-LOC with LOC_val_solution.csv and LOC_synset_mapping.txt, see kaggle.py.
In the devkit and kaggle layouts val/ may be flat, sorted into val/<wnid>/ folders, or half of each (a valprep
run that stopped): a sorted image is labelled by its folder, a flat one by the label files, and where both
exist they must agree. places.py says where train/, val/ and the label files are.

Labels are always the index of the class id in sorted order, the standard ImageNet order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError
from tools.prepare.devkit import DEVKIT_FOLDERS
from tools.prepare.labels import ValLabels, choose_labels
from tools.prepare.links import drop_linked_copies
from tools.prepare.places import Places, find_places, has_flat_val_images
from tools.prepare.tree import Tree, has_image_name, image_id, is_archive, is_hidden, walk

LAYOUTS = ("imagefolder", "devkit", "kaggle")
SPLITS = ("train", "val")


@dataclass
class Dataset:
    """The files of a tree sorted by fate, before any file is opened.

    Attributes:
        layout: one of LAYOUTS.
        classes: (class id, human-readable name) in label order (sorted class ids).
        entries: split -> [(path relative to ROOT, class id)] in walk order: the images to check.
        rejected: (path, reason) for image files the layout cannot label.
        ignored: (path, reason) for files that are not part of the data set (not images, test split, metadata).
        class_dirs: (split, class id) -> class folder relative to ROOT, for the folders that exist.
        unreadable: (folder/, reason) for folders that could not be read (rows for rejected.tsv).
        loops: (folder/, reason) for links to folders already walked (rows for ignored.tsv).
        found: how many files the walk found (every one is in exactly one of entries, rejected, ignored).
    """

    layout: str
    classes: list[tuple[str, str]] = field(default_factory=list)
    entries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    class_dirs: dict[tuple[str, str], str] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    loops: list[tuple[str, str]] = field(default_factory=list)
    found: int = 0


def scan(root: Path, layout: str = "auto", devkit: Path | None = None) -> Dataset:
    """Walk ROOT and give every file its fate in the given layout ("auto": detected).

    Raises:
        InputError: an unknown layout, label files missing, a class folder that is not a class, a sorted
            validation image whose folder contradicts the label files.
    """
    if layout not in ("auto", *LAYOUTS):
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    tree = walk(root)
    places = find_places(root, tree, plain_only=layout == "imagefolder")
    needed = places.cls_loc or has_flat_val_images(tree, places)
    labels = choose_labels(root, places, layout, devkit, needed)
    if labels is None and not any(tree.subfolders(folder) for folder in places.splits.values()):
        if layout == "auto":
            raise InputError(f"{root}: unknown layout; expected train/<class>/ and val/<class>/ folders (or "
                             "ILSVRC2012_img_train/, ILSVRC2012_img_val/), a flat val/ with the ILSVRC2012 or "
                             "ILSVRC2015 devkit, or Kaggle's ILSVRC/Data/CLS-LOC/ (see docs/prepare.md), or pass "
                             "--layout")
        raise InputError(f"{root}: no class folders in train/ or val/; expected train/<class>/*.JPEG")
    dataset = Dataset(labels.layout if labels else "imagefolder", entries={s: [] for s in places.splits},
                      unreadable=tree.unreadable, loops=tree.loops, found=len(tree.files))
    for split, folder in places.splits.items():
        for class_id in tree.subfolders(folder):
            dataset.class_dirs[(split, class_id)] = f"{folder}/{class_id}"
    if labels is not None:
        _require_known_classes(root, dataset, labels)
    _sort_files(root, tree, places, labels, dataset)
    if labels is None:  # a class seen only in val still gets a label, so train and val labels always agree
        dataset.classes = [(cid, cid) for cid in sorted({cid for _, cid in dataset.class_dirs})]
    else:
        dataset.classes = labels.classes
        _drop_flat_copies(dataset, places.splits.get("val"))
    drop_linked_copies(root, tree.links, dataset.entries, dataset.ignored)
    return dataset


def _sort_files(root: Path, tree: Tree, places: Places, labels: ValLabels | None, dataset: Dataset) -> None:
    """Give each file of the tree its one fate (see the module docstring)."""
    used = {path.resolve() for path in labels.files} if labels else set()
    prefixes = [(split, folder + "/") for split, folder in places.splits.items()]
    tests = tuple(folder + "/" for folder in places.tests)
    for rel in tree.files:
        split = next(((s, p) for s, p in prefixes if rel.startswith(p)), None)
        if rel in tree.special:
            dataset.ignored.append((rel, "not a regular file (socket, fifo or device)"))
        elif is_hidden(rel):
            dataset.ignored.append((rel, "hidden file"))
        elif split is not None:
            _split_file(root, rel, split[0], rel[len(split[1]):], labels, dataset)
        elif rel.startswith(tests):
            dataset.ignored.append((rel, "test split (no labels)"))
        elif (root / rel).resolve() in used:
            dataset.ignored.append((rel, "label file (read for the classes and val labels)"))
        else:
            dataset.ignored.append((rel, _why_else(rel, places)))


def _why_else(rel: str, places: Places) -> str:
    """Why a file outside the splits is ignored."""
    parts = rel.split("/")
    if any(part in DEVKIT_FOLDERS for part in parts[:-1]):
        return "devkit file (not used)"
    if parts[-1].startswith("LOC_"):
        return "Kaggle file (not used)"
    if places.ilsvrc is not None:
        below = rel[len(places.ilsvrc) + 1:] if places.ilsvrc else rel
        inside = rel.startswith(places.ilsvrc + "/") or not places.ilsvrc
        if inside and below.startswith(("Annotations/", "ImageSets/")):
            return ("bounding boxes (not used)" if below.startswith("Annotations/") else
                    "image-set list (not used)")
    if is_archive(rel):
        return "archive (not unpacked)"
    folders = " and ".join(f"{folder}/" for folder in places.splits.values()) or "train/ and val/"
    return f"outside {folders} ({'an image' if has_image_name(rel) else 'not an image'})"


def _split_file(root: Path, rel: str, split: str, inside: str, labels: ValLabels | None, dataset: Dataset) -> None:
    """A file under a split's folder: in a class folder (`<class>/...`) or directly in the split's folder."""
    class_id, _, rest = inside.partition("/")
    labelled = labels is not None and split == "val"
    if rest:
        said = labels.by_image.get(image_id(rel)) if labelled else None
        if said is not None and said[0] != class_id:
            raise InputError(f"{root / rel}: in class folder {class_id}, but {said[1]} says {said[0]}; move it to "
                             f"{said[0]}/ or restore it to the flat folder (the two must agree)")
        dataset.entries[split].append((rel, class_id))
    elif labelled and image_id(rel) in labels.by_image:
        dataset.entries[split].append((rel, labels.by_image[image_id(rel)][0]))
    elif is_archive(rel) and (split, inside[:-4]) in dataset.class_dirs:
        dataset.ignored.append((rel, f"archive (a class tar; its class folder {inside[:-4]}/ is beside it)"))
    elif is_archive(rel):
        dataset.ignored.append((rel, "archive (not unpacked: a class tar? unpack it into its class folder)"))
    elif not has_image_name(rel):
        dataset.ignored.append((rel, "not an image (not inside a class folder)"))
    elif labelled:
        dataset.rejected.append((rel, f"no label in {labels.source}"))
    else:
        dataset.rejected.append((rel, "not inside a class folder"))


def _require_known_classes(root: Path, dataset: Dataset, labels: ValLabels) -> None:
    known = {class_id for class_id, _ in labels.classes}
    for (_, class_id), folder in sorted(dataset.class_dirs.items()):
        if class_id not in known:
            raise InputError(f"{root / folder}: {class_id!r} is not a class in {labels.files[-1]}; remove the "
                             "folder or use --layout imagefolder")


def _drop_flat_copies(dataset: Dataset, val: str | None) -> None:
    """A validation image both flat and sorted (valprep copied instead of moving): list the sorted copy only."""
    if val is None:
        return
    flat = {rel for rel, _ in dataset.entries["val"] if "/" not in rel[len(val) + 1:]}
    sorted_copies = {image_id(rel): rel for rel, _ in dataset.entries["val"] if rel not in flat}
    kept = []
    for rel, class_id in dataset.entries["val"]:
        copy = sorted_copies.get(image_id(rel)) if rel in flat else None
        if copy is None:
            kept.append((rel, class_id))
        else:
            dataset.ignored.append((rel, f"duplicate (a sorted copy, {copy}, is listed)"))
    dataset.entries["val"] = kept
