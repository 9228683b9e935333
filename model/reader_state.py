"""Resuming mid-epoch without decoding the epoch's trained batches again: DALI's reader state in the checkpoint.

A checkpoint written inside an epoch stores, for every rank, its training loader's `checkpoint()` (DALI's
pipeline checkpoint: the reader's position, its shuffle buffer and every random operator's state, as the
iterator left them after the batches trained). `--resume` builds that epoch's loader from it, and the
first batch it yields is the first one not yet trained: the same batches, crops, flips and alphas as
reading and dropping the trained ones (tests/test_model_reader_state.py), without decoding them.

It falls back to reading the trained batches again, and says why, when the checkpoint has no state
(the PIL baseline, which has none; a data error, after which DALI's state is not trusted; an older
checkpoint), when this run would build another pipeline (another device or number of processes, another
training list: DALI would restore the old list's position and epoch length without a word), when DALI
refuses the state or the restored loader has not the batches left that the epoch needs, or with
--resume-reread. docs/pipeline.md, "Resuming mid-epoch", has the timings.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

from model import parallel
from pipeline.config import DataConfig
from pipeline.errors import ReaderStateRefused
from pipeline.loader import make_loader


def list_digest(path: Path | None) -> str:
    """sha256 of a training list's bytes, computed once per version of the file; "" without one or when it
    cannot be read (the loader then says why)."""
    if path is None:
        return ""
    try:
        info = os.stat(path)
        return _digest(str(path), info.st_size, info.st_mtime_ns)
    except OSError:
        return ""


@functools.lru_cache(maxsize=4)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def saved_state(local: str | None, states: list[str | None], epoch: int, epoch_step: int, device: str,
                digest: str) -> dict | None:
    """What a checkpoint stores: every rank's state (`states`, gathered) with the sha256 of the training list
    the epoch's loader was built from (`digest`, taken then: the file may change while the epoch trains), or
    None when one rank has none, the list's digest is unknown or the epoch has not begun (nothing to skip)."""
    if epoch_step == 0 or local is None or not digest or any(state is None for state in states):
        return None
    return {"epoch": epoch, "epoch_step": epoch_step, "device": device, "world_size": len(states),
            "train_list_sha256": digest, "states": states}


def unusable(saved: dict | None, epoch: int, epoch_step: int, data: DataConfig, world_size: int,
             reread: bool, digest: str) -> str | None:
    """Why this run cannot start epoch `epoch` at `epoch_step` from `saved` with the training list whose
    sha256 is `digest` (list_digest); None when it can."""
    if reread:
        return "--resume-reread"
    if data.backend != "dali":
        return "the PIL baseline replays its random draws only by drawing them again"
    if saved is None:
        return ("the checkpoint stores no DALI reader state (written by the PIL baseline, after a data error, "
                "or before checkpoints stored it)")
    if (saved["epoch"], saved["epoch_step"]) != (epoch, epoch_step):
        return f"its reader state is of epoch {saved['epoch']} batch {saved['epoch_step']}"
    if saved["world_size"] != world_size:
        return f"its reader state is of {saved['world_size']} processes, this run has {world_size}"
    if saved["device"] != data.device:
        return f"its reader state is of a {saved['device']} pipeline, this run builds a {data.device} one"
    if "train_list_sha256" not in saved:
        return "its reader state records no training list (written before checkpoints stored it)"
    if saved["train_list_sha256"] != digest:
        return f"its reader state is of another training list than {data.train_list} (its content has changed)"
    return None


def state_of(loader) -> str | None:
    """A loader's reader state (pipeline.loader's contract: `checkpoint()`), None for one without."""
    take = getattr(loader, "checkpoint", None)
    return take() if take is not None else None


def resumed_loader(data: DataConfig, ctx: parallel.ParallelContext, saved: dict | None, epoch: int, skip: int,
                   reread: bool, digest: str, make=make_loader):
    """The training loader of `epoch` for this rank, and whether it starts after the `skip` trained batches
    (True: restored from `saved`; False: a fresh one, whose first `skip` batches the caller reads and drops).
    With skip > 0 the main process says which, in one line. `digest`: list_digest of data.train_list, taken
    as the loader is built; `make`: the loader factory (pipeline.loader's)."""
    why = unusable(saved, epoch, skip, data, ctx.world_size, reread, digest) if skip else "nothing to skip"
    loader = None
    if why is None:
        try:
            loader = make(data, "train", shard_id=ctx.rank, num_shards=ctx.world_size,
                          checkpoint=saved["states"][ctx.rank])  # type: ignore[index]
        except ReaderStateRefused as error:
            why = f"DALI could not restore its reader state ({error})"
    left = getattr(loader, "batches_left", lambda: None)()
    if left is not None and left != len(loader) - skip:  # a restored state that does not fit this epoch
        why = f"the restored reader has {left} batches left where the epoch has {len(loader) - skip}"
        loader = None
    # Under DDP every rank must take the same way: one refusal makes all read again.
    restored = parallel.min_over_ranks(int(loader is not None), ctx) == 1
    if not restored:
        loader = None
        why = why or "another process could not restore its reader state"
    if loader is None:
        loader = make(data, "train", shard_id=ctx.rank, num_shards=ctx.world_size)
    if skip and ctx.is_main:
        how = ("restored DALI's reader state: nothing decoded again" if restored
               else f"reading the {skip} trained batches again: {why}")
        print(f"resuming epoch {epoch} at batch {skip}: {how}", file=sys.stderr, flush=True)
    return loader, restored
