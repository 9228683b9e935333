"""What a run's numbers depend on besides its flags, recorded in every checkpoint (and ablation plan) and
checked wherever the run is used again: `--resume`, `-e`, `model.predict`, `imagenet-tools ablate`.

    statistics  {"pca", "pca_sha256", "mean_image", "mean_image_sha256"}: the pca.json trained with and the
                mean image it names (absolute paths and sha256), all None for the published ImageNet values
    classes     the class table's wnids in label order (classes.tsv, the label of each class)

A path alone is not enough: `compute-pca --overwrite` puts other statistics under the same name, and lists with
as many classes may label other ones (or the same ones in another order). Other statistics are refused unless
the user passes --accept-pca-change (ACCEPT_FLAG); another class table is always refused, naming the first
class that differs. Checkpoints written before these keys existed are accepted with one note line.
"""
from __future__ import annotations

import hashlib
import os
import sys
from itertools import zip_longest
from pathlib import Path

from pipeline.errors import InputError
from pipeline.pca import mean_image_file

STATISTICS_KEY = "statistics"
CLASSES_KEY = "classes"
ACCEPT_FLAG = "--accept-pca-change"
SHOWN_HEX = 12  # sha256 digits in a message: enough to tell two files apart


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def statistics_entry(pca: Path | None) -> dict:
    """The "statistics" record of a run that uses `pca` (None: the published ImageNet values).

    Raises:
        InputError: `pca` is not a readable file.
    """
    entry = {"pca": None, "pca_sha256": None, "mean_image": None, "mean_image_sha256": None}
    if pca is None:
        return entry
    pca = Path(pca)
    try:
        entry.update(pca=os.path.abspath(pca), pca_sha256=_sha256(pca))
    except OSError as error:
        raise InputError(f"{pca}: cannot read this PCA file ({error.strerror or error}); make one with "
                         "`imagenet-tools compute-pca`") from None
    side = mean_image_file(pca)
    if side is not None:  # a named but missing side file is left None here; pipeline.pca.load_pca refuses it
        entry.update(mean_image=os.path.abspath(side), mean_image_sha256=_sha256(side) if side.is_file() else None)
    return entry


def class_entry(table: list[tuple[str, str]]) -> list[str]:
    """The "classes" record: wnids in label order, from pipeline.filelist.read_class_table's rows."""
    return [wnid for wnid, _ in table]


def describe(entry: dict) -> str:
    """A statistics record as a user reads it: the files and the start of their sha256."""
    if entry.get("pca") is None:
        return "the published ImageNet statistics (no --pca)"
    digest = (entry.get("pca_sha256") or "?")[:SHOWN_HEX]
    if entry.get("mean_image") is None:
        return f"{entry['pca']} (sha256 {digest}, no mean image)"
    side = (entry.get("mean_image_sha256") or "missing")[:SHOWN_HEX]
    return f"{entry['pca']} (sha256 {digest}, mean image {entry['mean_image']} sha256 {side})"


def statistics_change(recorded: dict, now: dict) -> str | None:
    """None when `now` holds the statistics `recorded` (same bytes, wherever they are); else the words
    that name both, for an error or a note."""
    if all(recorded.get(key) == now.get(key) for key in ("pca_sha256", "mean_image_sha256")):
        return None
    return f"other colour statistics than the run's: trained with {describe(recorded)}, now {describe(now)}"


def check_statistics(state: dict, pca: Path | None, source: str, accept: bool) -> str | None:
    """Refuse statistics other than those a checkpoint recorded, unless `accept`.

    Args:
        state: the checkpoint dict.
        pca: the pca.json the command would use now (None: the published values).
        source: how the command names the checkpoint ("--resume R", "-e --resume R", "R").
        accept: the user passed ACCEPT_FLAG.

    Returns:
        A note line for an accepted change, else None (also for a checkpoint without the record).

    Raises:
        InputError: other statistics, not accepted (one line naming both files).
    """
    recorded = state.get(STATISTICS_KEY)
    if not isinstance(recorded, dict):
        return None
    change = statistics_change(recorded, statistics_entry(pca))
    if change is None:
        return None
    if not accept:
        raise InputError(f"{source}: {change}; pass --pca with the file it was trained with, or {ACCEPT_FLAG} "
                         "to go on with these")
    return f"note: {source}: {ACCEPT_FLAG}: going on with {change}"


def check_classes(state: dict, table: list[tuple[str, str]], table_path: Path, source: str) -> None:
    """Refuse a class table other than the checkpoint's (no-op for a checkpoint without the record).

    Raises:
        InputError: one line naming the first class that differs (its label, both wnids).
    """
    recorded = state.get(CLASSES_KEY)
    if not isinstance(recorded, list):
        return
    for label, (old, new) in enumerate(zip_longest(recorded, class_entry(table))):
        if old != new:
            raise InputError(f"{source}: {table_path} labels other classes than the run was trained on: label "
                             f"{label} is {old or '(none)'} in the checkpoint, {new or '(none)'} in {table_path}; "
                             "use the lists the run was trained with")


def unrecorded_note(state: dict, path: Path) -> str | None:
    """The note for a checkpoint written before it recorded its statistics or class table (None if it has both)."""
    missing = [what for key, what in ((STATISTICS_KEY, "the sha256 of its pca.json"), (CLASSES_KEY, "its class table"))
               if key not in state]
    if not missing:
        return None
    return f"note: {path} was written before checkpoints recorded {' and '.join(missing)}: not checked"


def check_checkpoint(state: dict, path: Path, source: str, pca: Path | None, table: list[tuple[str, str]],
                     table_path: Path | None, accept: bool, log: bool = True) -> None:
    """All of a checkpoint's records against what the command uses now; notes on stderr (when `log`).

    Raises:
        InputError: another class table, or other statistics not accepted.
    """
    if table_path is not None:
        check_classes(state, table, table_path, source)
    notes = [unrecorded_note(state, path), check_statistics(state, pca, source, accept)]
    for note in notes:
        if note and log:
            print(note, file=sys.stderr)


def records(pca: Path | None, table: list[tuple[str, str]]) -> dict:
    """The checkpoint keys of a run that uses `pca` and the class table `table`."""
    return {STATISTICS_KEY: statistics_entry(pca), CLASSES_KEY: class_entry(table)}
