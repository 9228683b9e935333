"""Checkpoints: pytorch/examples' keys and file names, written atomically, read back with clear errors.

A checkpoint is a dict of tensors and primitives only, so `torch.load(path, weights_only=True)` reads it:

    epoch        next epoch to run (pytorch/examples' meaning); mid-epoch: the epoch in progress
    epoch_step   batches of `epoch` already trained (0 at an epoch boundary)
    step         optimiser steps since the start of the run
    arch, num_classes, state_dict (one-device `alexnet` keys, CPU tensors), best_acc1 (top-1 accuracy, %),
    optimizer, scheduler, scaler, rng (torch/CUDA/NumPy/Python states), epoch_meter (the running sums of
    the epoch in progress), config (the run's dataclasses as plain dicts), net (the network's switches,
    model.alexnet.NetConfig as a dict; absent in older checkpoints: the paper's net)

A kill -9 at any moment leaves either the old file or the new one: the new one is written to a temp
file in the same folder, flushed, fsync'ed, then renamed over the old (rename is atomic on POSIX).
"""
from __future__ import annotations

import os
import random
import secrets
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.alexnet import build_model
from model.variants import net_of_checkpoint
from pipeline.errors import InputError

CHECKPOINT_NAME = "checkpoint.pth.tar"
BEST_NAME = "model_best.pth.tar"
REQUIRED_KEYS = ("epoch", "arch", "state_dict")
RESUME_KEYS = ("optimizer", "scheduler", "step")


def atomic_save(state: dict, path: Path) -> None:
    """Write `state` to `path` so that the file is always either complete and new, or untouched.

    Raises:
        InputError: the write failed (disk full, no permission); the previous file is intact.
    """
    path = Path(path)
    had_previous = path.exists()
    handle, temp = _create_temp(path)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except (OSError, RuntimeError) as error:
        # torch's zip writer turns a failed write (ENOSPC, EFBIG) into a RuntimeError; the OSError is its context
        cause = error if isinstance(error, OSError) else error.__context__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error).splitlines()[0]
        Path(temp).unlink(missing_ok=True)
        if had_previous:
            after = "the previous checkpoint is intact (free some space, then continue with --resume)"
        else:
            after = "no checkpoint was written before this one (free some space, then start again)"
        raise InputError(f"could not write {path}: {reason}; {after}") from None
    _fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file `.NAME.XXXXXXXX.tmp` beside `path`, created with mode 0666 less the umask like any other
    output (tempfile.mkstemp would make it 0600, and the rename keeps that)."""
    while True:
        temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(temp)
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after could otherwise forget it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def save_checkpoint(state: dict, out: Path, is_best: bool) -> Path:
    """Write RUNDIR/checkpoint.pth.tar and, when `is_best`, RUNDIR/model_best.pth.tar.

    model_best is a hard link to the new checkpoint (no second ~0.5 GB write), made under a temp name and
    renamed, so it too is atomic; when the filesystem has no hard links it is a copy.

    Args:
        state: the checkpoint dict (see the module docstring).
        out: the run folder (created if missing).
        is_best: this checkpoint has the best validation top-1 so far.

    Returns:
        The checkpoint's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT_NAME
    atomic_save(state, path)
    if is_best:
        temp = out / f".{BEST_NAME}.link"
        temp.unlink(missing_ok=True)
        try:
            os.link(path, temp)
            os.replace(temp, out / BEST_NAME)
        except OSError:
            temp.unlink(missing_ok=True)
            atomic_save(state, out / BEST_NAME)
    return path


def load_checkpoint(path: Path, *, arch: str | None = None, num_classes: int | None = None,
                    for_resume: bool = False) -> dict:
    """Read a checkpoint with `weights_only=True` and check it fits the run.

    Args:
        path: a checkpoint file, or a run folder (its checkpoint.pth.tar).
        arch: when given, the checkpoint must be of this architecture.
        num_classes: when given, the checkpoint's fc8 must have this many outputs.
        for_resume: also require the optimizer/scheduler state that --resume needs.

    Returns:
        The checkpoint dict, tensors on the CPU.

    Raises:
        InputError: missing, truncated, not a checkpoint, or another architecture or class count.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint; give the checkpoint.pth.tar of a run (or its folder)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - garbage makes torch.load raise almost anything (KeyError, EOFError, ...)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise InputError(f"{path}: not a readable checkpoint, truncated or not written by model.train ({reason})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
        raise InputError(f"{path}: not a training checkpoint (no {', '.join(missing)}); "
                         "expected the checkpoint.pth.tar or model_best.pth.tar of a model.train run")
    if for_resume and any(key not in state for key in RESUME_KEYS):
        raise InputError(f"{path}: has weights but no optimizer state, so training cannot resume from it")
    state.setdefault("num_classes", checkpoint_classes(state["state_dict"]))
    if arch is not None and state["arch"] != arch:
        raise InputError(f"{path}: checkpoint of -a {state['arch']}, but this run is -a {arch}; "
                         f"pass -a {state['arch']} (or start a new run without --resume)")
    if num_classes is not None and state["num_classes"] != num_classes:
        raise InputError(f"{path}: checkpoint has {state['num_classes']} classes, the class table has "
                         f"{num_classes}; use the lists the checkpoint was trained with")
    return state


def checkpoint_classes(state_dict: dict) -> int:
    """Number of outputs of the last layer of a state dict (alexnet: fc8.bias, torchvision: classifier.6.bias)."""
    for key in ("fc8.bias", "classifier.6.bias"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return -1


def model_from(state: dict, path: Path) -> nn.Module:
    """The network of a checkpoint that load_checkpoint read, its weights loaded, in eval mode on the CPU.

    Raises:
        InputError: the weights do not fit the checkpoint's architecture and class count.
    """
    try:
        model = build_model(state["arch"], int(state["num_classes"]), net=net_of_checkpoint(state))
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise InputError(f"{path}: its weights do not fit -a {state['arch']} ({reason})") from None
    return model.eval()


def rng_state(devices: tuple[torch.device, ...] = ()) -> dict:
    """Every random generator the run touches, as tensors and primitives.

    Args:
        devices: the run's devices; the CUDA generator of each CUDA one is saved (only those: asking
            for every visible GPU's state would open a CUDA context on each of them in every process).
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    indices = sorted({d.index for d in devices if d.type == "cuda"})
    return {
        "torch": torch.get_rng_state(),
        "cuda": [[index, torch.cuda.get_rng_state(index)] for index in indices],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": list(random.getstate()),
    }


def set_rng_state(state: dict, devices: tuple[torch.device, ...] = ()) -> None:
    """Restore what `rng_state` captured; CUDA generators only of the run's own `devices`."""
    torch.set_rng_state(state["torch"])
    own = {d.index for d in devices if d.type == "cuda"}
    for position, entry in enumerate(state["cuda"]):
        # Checkpoints written before 2026-11-22 hold a bare list of every GPU's state, in device order.
        index, cuda_state = entry if isinstance(entry, (list, tuple)) else (position, entry)
        if index in own:
            torch.cuda.set_rng_state(cuda_state, index)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
