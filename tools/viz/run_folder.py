"""A run folder as the pictures see it: its checkpoint (model_best first, as pytorch/examples) and its pictures/."""
from __future__ import annotations

from pathlib import Path

from model.checkpoint import BEST_NAME, CHECKPOINT_NAME
from pipeline.errors import InputError
from pipeline.writable import writable_file

CHECKPOINT_NAMES = (BEST_NAME, CHECKPOINT_NAME)


def find_checkpoint(run: Path) -> Path:
    """A checkpoint file given as itself or as its run folder (model_best first, as pytorch/examples)."""
    run = Path(run)
    if run.is_file():
        return run
    for name in CHECKPOINT_NAMES:
        if (run / name).is_file():
            return run / name
    raise InputError(f"{run}: no checkpoint ({' or '.join(CHECKPOINT_NAMES)}); give a run folder or a checkpoint file")


def run_folder(run: Path) -> Path:
    """The folder of a run given as a folder or as one of its checkpoints."""
    return Path(run) if Path(run).is_dir() else Path(run).parent


def default_out(run: Path, out: Path | None, name: str) -> Path:
    """--out, or RUNDIR/pictures/NAME; proved writable before the picture is drawn."""
    return writable_file(Path(out) if out else run_folder(run) / "pictures" / name, "--out")
