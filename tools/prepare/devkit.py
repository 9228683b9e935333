"""The ILSVRC devkits' label files: where they are looked for, and how each is read.

ILSVRC2012 (ILSVRC2012_devkit_t12.tar.gz, data/): `ILSVRC2012_validation_ground_truth.txt`, one ILSVRC2012_ID per
line, line n for ILSVRC2012_val_<n:08d>.JPEG; `meta.mat`, a `synsets` struct array with ILSVRC2012_ID, WNID,
words, num_children, ... (1000 leaves, which are the classes, and 860 inner WordNet nodes).
ILSVRC2015 (devkit/data/): `ILSVRC2015_clsloc_validation_ground_truth.txt` ("unchanged since ILSVRC2012");
`meta_clsloc.mat` ("the same as in ILSVRC2012/13 devkits except the id field was renamed to
ILSVRC2015_CLSLOC_ID": fields ILSVRC2015_CLSLOC_ID, WNID, name, description, num_train_images, 1000 leaves);
`map_clsloc.txt`, `WNID ID name` per line (`n02119789 1 kit_fox`). The 2014 devkit's
`ILSVRC2014_clsloc_validation_ground_truth.txt` is read the same way. docs/prepare.md cites the readmes.

IDs are not in sorted-WNID order (ID 1 is n02119789), so a label is never ID - 1: the layout maps ID -> WNID here
and the WNID's index in sorted order is the label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

GROUND_TRUTHS = ("ILSVRC2012_validation_ground_truth.txt", "ILSVRC2015_clsloc_validation_ground_truth.txt",
                 "ILSVRC2014_clsloc_validation_ground_truth.txt")
# The class tables, in the order they are preferred; map_clsloc.txt needs no scipy.
TABLES = ("meta.mat", "meta_clsloc.mat", "map_clsloc.txt")
DEVKIT_FOLDERS = ("ILSVRC2012_devkit_t12", "ILSVRC2015_devkit", "ILSVRC2014_devkit", "devkit")
SCIPY_HINT = "pip install 'alexnet-dali[devkit]' (or pip install scipy)"


@dataclass(frozen=True)
class DevkitFiles:
    """What was found: the ground truth and a class table (either may be None), and the folders searched."""

    ground_truth: Path | None
    table: Path | None
    searched: tuple[Path, ...]

    @property
    def complete(self) -> bool:
        return self.ground_truth is not None and self.table is not None


def devkit_folders(bases: list[Path], devkit: Path | None) -> list[Path]:
    """Where devkit files are looked for: --devkit DIR (DIR/data, DIR), else under each base folder."""
    if devkit is not None:
        return [devkit / "data", devkit]
    folders = []
    for base in bases:
        for name in DEVKIT_FOLDERS:
            folders += [base / name / "data", base / name]
        folders.append(base)
    return list(dict.fromkeys(folders))


def find_devkit(folders: list[Path]) -> DevkitFiles:
    """The first ground truth in `folders`, and a class table from its folder (else from any folder)."""
    truth = next((f / name for f in folders for name in GROUND_TRUTHS if (f / name).is_file()), None)
    near = [truth.parent] if truth is not None else []
    table = next((f / name for f in near + folders for name in _tables() if (f / name).is_file()), None)
    return DevkitFiles(truth, table, tuple(folders))


def _tables() -> tuple[str, ...]:
    """TABLES, with map_clsloc.txt first when scipy (for the .mat files) is missing."""
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        return ("map_clsloc.txt", "meta.mat", "meta_clsloc.mat")
    return TABLES


def read_table(path: Path) -> dict[int, tuple[str, str]]:
    """ILSVRC ID -> (WNID, name) of the classes in a devkit class table (meta.mat, meta_clsloc.mat, map_clsloc.txt)."""
    return _read_map(path) if path.suffix == ".txt" else read_meta_mat(path)


def read_meta_mat(path: Path) -> dict[int, tuple[str, str]]:
    """ILSVRC ID -> (WNID, words) for the leaf synsets of meta.mat (ILSVRC2012_ID) or meta_clsloc.mat
    (ILSVRC2015_CLSLOC_ID, name).

    Raises:
        InputError: scipy is missing, or the file is not a devkit .mat.
    """
    try:
        import scipy.io
    except ImportError:
        raise InputError(f"{path}: reading {path.name} needs scipy; {SCIPY_HINT}") from None
    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
        names = synsets.dtype.names
        id_field = next(name for name in names if name.endswith("_ID"))
        words_field = "words" if "words" in names else "name"
        ids, wnids, words = synsets[id_field], synsets["WNID"], synsets[words_field]
    except Exception as error:  # scipy raises several types for a file that is not a MATLAB struct
        raise InputError(f"{path}: not a devkit class table (need a 'synsets' struct with an *_ID field, WNID, "
                         f"words or name): {error}") from None
    # meta.mat also holds the 860 inner WordNet nodes (num_children > 0); only leaves are classes.
    children = synsets["num_children"] if "num_children" in names else [0] * len(ids)
    table = {int(i): (str(w), str(n)) for i, w, n, c in zip(_ravel(ids), _ravel(wnids), _ravel(words),
                                                          _ravel(children)) if int(c) == 0}
    if not table:
        raise InputError(f"{path}: has no leaf synsets")
    return table


def _ravel(values):
    return values.ravel() if hasattr(values, "ravel") else values


def _read_map(path: Path) -> dict[int, tuple[str, str]]:
    table = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split(maxsplit=2)
            if not fields:
                continue
            if len(fields) < 2 or not fields[1].isdigit():
                raise InputError(f"{path}:{number}: expected `WNID ID name` (e.g. n02119789 1 kit_fox), "
                                 f"got {line.strip()!r}")
            table[int(fields[1])] = (fields[0], fields[2].strip() if len(fields) > 2 else fields[0])
    if not table:
        raise InputError(f"{path}: empty")
    return table


def read_ground_truth(path: Path) -> list[int]:
    """The ILSVRC IDs of the validation images, line n for ILSVRC2012_val_<n:08d>."""
    labels = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                if not line.strip().isdigit():
                    raise InputError(f"{path}:{number}: expected an ILSVRC ID, got {line.strip()!r}")
                labels.append(int(line))
    return labels
