"""What a run leaves behind besides checkpoints (RUNDIR/metrics.jsonl), and how it is asked to stop (signals).

metrics.jsonl has one JSON object per epoch with exactly METRIC_KEYS (tools/visualize.py reads them):
errors in percent, `epoch` 0-based (the epoch just finished), null where a value does not exist.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

import torch

from model import parallel
from model.metrics import EpochClock
from pipeline.errors import InputError
from pipeline.atomic import write_atomic

METRICS_NAME = "metrics.jsonl"
DDP_POLL_STEPS = 10  # StopRequest: steps between the ranks' agreement on a stop
METRIC_KEYS = (
    "epoch", "lr", "train_loss", "train_top1_err", "train_top5_err", "val_loss", "val_top1_err",
    "val_top5_err", "val10_top1_err", "val10_top5_err", "images_per_s", "data_wait_frac", "time_s",
)


def _number(value: float | None) -> float | None:
    """JSON has no NaN: a value that does not exist (e.g. an empty split) is null."""
    return None if value is None or not math.isfinite(value) else float(value)


def epoch_record(epoch: int, lr: float, train: tuple, val: tuple | None, ten: tuple | None, clock: EpochClock) -> dict:
    """One metrics.jsonl line.

    Args:
        epoch: the epoch just finished (0-based).
        lr: the learning rate it was trained with.
        train: (loss, top-1 err %, top-5 err %); val, ten: the same plus an image count (None if not run:
            ten without --ten-crop, val when the lists have no val.txt).
        clock: the epoch's training clock.

    Returns:
        A dict with exactly METRIC_KEYS.
    """
    record = {
        "epoch": epoch, "lr": _number(lr),
        "train_loss": _number(train[0]), "train_top1_err": _number(train[1]), "train_top5_err": _number(train[2]),
        "val_loss": _number(val[0]) if val else None, "val_top1_err": _number(val[1]) if val else None,
        "val_top5_err": _number(val[2]) if val else None,
        "val10_top1_err": _number(ten[1]) if ten else None, "val10_top5_err": _number(ten[2]) if ten else None,
        "images_per_s": _number(clock.images_per_s()), "data_wait_frac": _number(clock.data_wait_frac()),
        "time_s": _number(clock.elapsed()),
    }
    assert tuple(record) == METRIC_KEYS
    return record


def record_line(record: dict) -> str:
    """The per-epoch summary on stdout (errors in percent: "top-1 err 100.00%" is no image right)."""
    fmt = lambda v, spec=".2f": "nan" if v is None else format(v, spec)  # noqa: E731
    ten = (f" | 10-crop top-1 err {record['val10_top1_err']:.2f}% top-5 err {record['val10_top5_err']:.2f}%"
           if record["val10_top1_err"] is not None else "")
    val = (f"val loss {fmt(record['val_loss'])} top-1 err {fmt(record['val_top1_err'])}% top-5 err "
           f"{fmt(record['val_top5_err'])}%" if any(record[key] is not None for key in METRIC_KEYS[5:8])
           else "no validation")
    return (f"epoch {record['epoch']}: train loss {fmt(record['train_loss'], '.4f')} top-1 err "
            f"{fmt(record['train_top1_err'])}% top-5 err {fmt(record['train_top5_err'])}% | {val}{ten} | lr {fmt(record['lr'], '.3g')} | {fmt(record['images_per_s'], '.1f')} "
            f"img/s, data wait {fmt(record['data_wait_frac'], '.0%')} | {fmt(record['time_s'], '.1f')} s")


def append_metrics(out: Path, record: dict) -> None:
    """Append one line to RUNDIR/metrics.jsonl (flushed: a killed run keeps every finished epoch).

    Raises:
        InputError: the line could not be written (disk full, folder gone or made read-only).
    """
    line = json.dumps(record, allow_nan=False) + "\n"  # strict JSON: a NaN would be an error here, not a token
    path = Path(out) / METRICS_NAME
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise InputError(f"could not append to {path}: {error.strerror or error}; the epoch's checkpoint is "
                         "still written where possible (free some space or fix the folder, then --resume)") from None


def trim_metrics(out: Path, before_epoch: int) -> None:
    """Drop lines of epochs >= before_epoch (a resumed run logs them again), and any torn last line."""
    path = Path(out) / METRICS_NAME
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["epoch"] < before_epoch:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    write_atomic(path, "".join(line + "\n" for line in kept))


class StopRequest:
    """SIGINT/SIGTERM ask the run to stop after the step in flight (a second signal aborts at once).

    Use as a context manager around the training loop; `requested()` is checked after every step and,
    under DDP, agreed on by all ranks (every DDP_POLL_STEPS steps) so they stop at the same step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, ctx: parallel.ParallelContext) -> None:
        self.ctx = ctx
        self.name: str | None = None
        self.agreed = False  # DDP: the ranks have agreed to stop
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.name is not None:
            self.__exit__()
            signal.raise_signal(signum)  # the second one: default behaviour, stop now
            return
        self.name = signal.Signals(signum).name
        print(f"\n{self.name} received: finishing this step, then writing a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def requested(self, step: int | None = None) -> bool:
        """True once a signal came (on any rank, under DDP).

        Under DDP the ranks agree by an all-reduce, which waits for the device. Inside the training loop
        (`step`: the run's step count) it runs every DDP_POLL_STEPS steps, so that the host can queue the
        next steps' kernels while the GPU works, and a stop comes at most that many steps after the
        signal; without `step` it runs now. Every rank must make the same calls.
        """
        if self.ctx.mode != "ddp" or self.ctx.world_size == 1:
            return self.name is not None
        if self.agreed or (step is not None and step % DDP_POLL_STEPS != 0):
            return self.agreed
        flag = torch.tensor([1.0 if self.name else 0.0], device=self.ctx.device)
        # Decide on the all-reduced value only: a signal landing on this rank after the flag was taken
        # must not make it answer differently from the others.
        self.agreed = parallel.all_reduce_sum(flag, self.ctx).item() > 0
        if self.agreed and self.name is None:
            self.name = "a signal on another rank"
        return self.agreed


class EvaluationStop:
    """SIGINT/SIGTERM during `-e`: stop at once, saying in one line what stopped and that nothing was written
    (an evaluation writes no file), and exit with 128 + the signal's number, as a shell reports a killed command.

    Use as a context manager around the evaluation of `checkpoint`.
    """

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self._previous: dict = {}

    def __enter__(self) -> "EvaluationStop":
        for sig in StopRequest.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        raise _Stopped(signum)

    def __exit__(self, kind, error, traceback) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if isinstance(error, _Stopped):
            if os.environ.get("RANK", "0") == "0":
                print(f"\n{signal.Signals(error.signum).name}: stopped evaluating {self.checkpoint} before the end; "
                      "nothing was written (-e writes no file)", file=sys.stderr, flush=True)
            raise SystemExit(128 + error.signum) from None


class _Stopped(BaseException):
    """Raised by EvaluationStop's handler (a BaseException: no `except Exception` in between swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
