"""One training epoch and one evaluation pass: the two loops of the training script.

Batches come only from a loader built by `pipeline.loader.make_loader` (or anything that yields
`(images, labels)`); the loops never look inside it. Policy (checkpoints, signals, step limits) lives
in model/run.py and reaches the loop through the `after_step` callback.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from model.metrics import EpochClock, Meter
from model.warmup import ChanceWatch, Warmup, scaled_rate

# Softmax probabilities are averaged over the ten views; clamp before the log so a view-averaged
# probability of 0 gives a large finite loss instead of inf.
MIN_PROBABILITY = 1e-12


@dataclass
class Trainer:
    """The objects one step needs.

    Attributes:
        model: the module to call (maybe wrapped: towers, DDP, torch.compile).
        optimizer: SGD over the model's parameters.
        device: where inputs and labels go (ParallelContext.device).
        amp_dtype: torch.bfloat16 / torch.float16 for autocast, None for full precision.
        scaler: GradScaler, enabled only for float16.
        channels_last: feed NHWC-strided inputs.
        reduce: sums a metrics tensor over processes (parallel.all_reduce_sum bound to the context).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    device: torch.device
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    channels_last: bool = False
    reduce: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda tensor: tensor)
    warmup: Warmup | None = None
    chance: ChanceWatch | None = None

    def to_device(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)


def train_step(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and one SGD update. Returns (mean loss, logits), both still on the device."""
    images, labels = trainer.to_device(images, labels)
    with trainer.autocast():
        logits = trainer.model(images)
        loss = F.cross_entropy(logits.float(), labels)
    trainer.optimizer.zero_grad(set_to_none=True)
    # A warm-up scales the rate of this one update only (model/warmup.py scaled_rate).
    scale = trainer.warmup.next_scale() if trainer.warmup is not None else 1.0
    with scaled_rate(trainer.optimizer, scale):
        if trainer.scaler is not None and trainer.scaler.is_enabled():
            trainer.scaler.scale(loss).backward()
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
        else:
            loss.backward()
            trainer.optimizer.step()
    if trainer.chance is not None:
        trainer.chance.add(loss)
    return loss, logits


def train_one_epoch(
    trainer: Trainer,
    loader: Iterable,
    meter: Meter,
    *,
    epoch: int,
    skip: int = 0,
    read_skipped: bool = True,
    print_freq: int = 10,
    after_step: Callable[[int], bool] | None = None,
    after_skip: Callable[[], None] | None = None,
    log: bool = True,
) -> EpochClock:
    """Train over one epoch of `loader`, adding every batch to `meter`.

    Args:
        trainer: model, optimizer and device.
        loader: yields (images, labels); len(loader) batches.
        meter: running sums (a resumed epoch passes the sums it had reached).
        epoch: 0-based, for the progress line.
        skip: batches of this epoch already trained before a restart (numbering and meter continue from it).
        read_skipped: the loader starts at the epoch's beginning, so the `skip` batches are read and dropped
            so that the rest of the epoch sees exactly the batches (and augmentations) it would have seen;
            False: the loader already starts after them (restored from a DALI reader state).
        print_freq: a progress line on stderr every this many steps.
        after_step: called with the number of batches done in this epoch; True stops the epoch early.
        after_skip: called once the loader stands after the skipped batches (a restart restores its RNG state here,
            since reading batches may draw from torch's RNG).
        log: write progress lines (the main process only).

    Returns:
        The epoch's clock (images/s and data-wait fraction of the trained part).

    Raises:
        TrainingDiverged: the loss became NaN/Inf (checked at every progress line and at the end).
    """
    trainer.model.train()
    batches = iter(loader)
    for _ in range(skip if read_skipped else 0):
        if next(batches, None) is None:
            break
    if after_skip is not None:
        after_skip()
    clock = EpochClock()
    total = len(loader)  # type: ignore[arg-type]
    for done, (images, labels) in enumerate(batches, start=skip + 1):
        clock.batch_arrived()
        images, labels = trainer.to_device(images, labels)  # the meter compares labels with device logits
        loss, logits = train_step(trainer, images, labels)
        meter.add(loss, logits, labels)
        clock.step_done(labels.shape[0])
        if done % print_freq == 0 or done == total:
            meter.check_finite(f"epoch {epoch}, batch {done}")
            if log:
                progress(epoch, done, total, meter, trainer, clock)
                if trainer.chance is not None:
                    trainer.chance.report()
        if after_step is not None and after_step(done):
            break
    meter.check_finite(f"epoch {epoch}")  # reads the sums: the device has finished the epoch's steps
    clock.stop()  # images/s and data wait of the training alone, not of the validation that follows
    return clock


def progress(epoch: int, done: int, total: int, meter: Meter, trainer: Trainer, clock: EpochClock) -> None:
    """One progress line on stderr."""
    loss, top1, _ = meter.summary()
    lr = trainer.optimizer.param_groups[0]["lr"] * (trainer.warmup.last_scale if trainer.warmup is not None else 1.0)
    status_line(f"epoch {epoch} [{done:>5}/{total}] loss {loss:.4f} top-1 err {top1:5.1f}% lr {lr:.3g} "
                f"{clock.images_per_s():7.1f} img/s data wait {clock.data_wait_frac():4.0%}", last=done == total)


def status_line(text: str, last: bool) -> None:
    """A progress line on stderr: on a terminal rewritten in place (carriage return) until the last one;
    into a file or pipe, plain lines (a log holds no carriage returns)."""
    if sys.stderr.isatty():
        print("\r" + text, end="\n" if last else "", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def view_probabilities(trainer: Trainer, images: torch.Tensor) -> torch.Tensor:
    """§6: the softmax outputs of (N, V, C, H, W) views averaged over V, one view at a time, so that the
    model never sees more than N images at once (memory as for a centre-crop batch, not V times it)."""
    total = None
    for view in range(images.shape[1]):
        batch = images[:, view]
        batch = batch.contiguous(memory_format=torch.channels_last if trainer.channels_last else torch.contiguous_format)
        probs = F.softmax(trainer.model(batch).float(), dim=1)
        total = probs if total is None else total + probs
    return total / images.shape[1]


@torch.no_grad()
def evaluate(trainer: Trainer, loader: Iterable, *, label: str = "", print_freq: int = 0) -> tuple[float, float, float, int]:
    """Loss and top-1/top-5 error over one pass of `loader`, summed over processes.

    Args:
        trainer: model and device (optimizer unused).
        loader: yields (images (N,3,H,W), labels) for centre crops or (images (N,10,3,H,W), labels)
            for §6's ten views; the ten views' softmax outputs are averaged, the loss is the negative
            log of the averaged probability of the label.
        label, print_freq: a progress line named `label` on stderr every `print_freq` batches (0: none).

    Returns:
        (mean loss, top-1 error %, top-5 error %, images counted).
    """
    trainer.model.eval()
    meter = Meter(trainer.device)
    total = len(loader) if print_freq else 0  # type: ignore[arg-type]
    start, seen = time.perf_counter(), 0
    for done, (images, labels) in enumerate(loader, start=1):
        images, labels = trainer.to_device(images, labels)
        with trainer.autocast():
            if images.dim() == 5:
                scores = view_probabilities(trainer, images)
                loss = F.nll_loss(scores.clamp_min(MIN_PROBABILITY).log(), labels)
            else:
                scores = trainer.model(images).float()
                loss = F.cross_entropy(scores, labels)
        meter.add(loss, scores, labels)
        seen += labels.shape[0]
        if print_freq and (done % print_freq == 0 or done == total):
            rate = seen / max(time.perf_counter() - start, 1e-9)
            status_line(f"{label} [{done:>5}/{total}] {rate:7.1f} img/s", last=done == total)
    trainer.reduce(meter.sums)
    loss, top1, top5 = meter.summary()
    return loss, top1, top5, int(meter.values()[3])
