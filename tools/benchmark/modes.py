"""The timed loops of `imagenet-tools bench`: pipeline only, model only, end to end.

Every loop runs `warmup` batches untimed (DALI's first batches build buffers, DataLoader workers start,
cuDNN picks algorithms, torch.compile compiles), then times `steps` batches. On a GPU the clock starts
and stops after `torch.cuda.synchronize()`, so queued kernels are inside the measured interval; inside
the loop nothing synchronises, so data loading overlaps the model's kernels exactly as in training.

End to end also reports the fraction of wall time spent waiting for data: the time inside the loader's
`next()` plus the host-to-device copy of a CPU batch. With an asynchronous GPU step the host runs ahead
of the device until the CUDA launch queue fills, so when the model is the bottleneck the host blocks in
the model's launches (not in `next()`) and the fraction is near 0; when the data is the bottleneck the
host blocks in `next()` and the fraction approaches 1.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from pipeline.constants import CROP_SIZE
from pipeline.errors import InputError
from tools.shared.jobs import Progress

# A progress line at most this often (seconds), so a long CPU measurement shows that it is alive:
# rewritten in place on a terminal, a new line every PROGRESS_LOG_EVERY_S in a log file.
PROGRESS_EVERY_S = 2.0
PROGRESS_LOG_EVERY_S = 30.0

Batch = tuple[torch.Tensor, torch.Tensor]
TrainStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Timing:
    """One measurement: `images` processed in `seconds` of wall time (warm-up excluded).

    Attributes:
        images: images in the timed batches.
        seconds: wall time of the timed batches.
        wait_seconds: end to end only: the part of `seconds` spent waiting for data; None otherwise.
        runs: with --repeat: images/s of every repeat in the order run (this Timing is their median).
    """

    images: int
    seconds: float
    wait_seconds: float | None = None
    runs: tuple[float, ...] = ()

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def wait_fraction(self) -> float | None:
        return None if self.wait_seconds is None else self.wait_seconds / self.seconds


def median_timing(timings: Sequence[Timing]) -> Timing:
    """The run with the median images/s (the lower of the two middle ones for an even count), so the
    reported numbers all come from one real run; `runs` keeps every run's images/s."""
    ordered = sorted(timings, key=lambda timing: timing.images_per_s)
    middle = ordered[(len(ordered) - 1) // 2]
    return dataclasses.replace(middle, runs=tuple(timing.images_per_s for timing in timings))


def synchronize(device: torch.device) -> None:
    """Wait for every queued kernel on a CUDA device; nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def endless(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Batches of `loader` epoch after epoch (a timed run may need more batches than one epoch has).

    Raises:
        InputError: an epoch yields no batch (fewer images in the list than one batch).
    """
    while True:
        count = 0
        for batch in loader:
            count += 1
            yield batch
        if count == 0:
            raise InputError("the loader gave no batch: the file list has fewer images than --batch-size; "
                             "use a smaller --batch-size or a longer list")


def to_model_input(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                   channels_last: bool) -> Batch:
    """A loader's batch as the model takes it: NCHW (channels_last strides if asked) on `device`.

    An NHWC batch (DataConfig.layout "NHWC") becomes an NCHW view by a permute, which has channels_last
    strides already, so feeding a channels_last model costs no copy. Labels become int64 of shape (N,).
    """
    if images.dim() == 4 and images.shape[1] != 3 and images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = labels.reshape(-1).to(device, dtype=torch.long, non_blocking=True)
    return images, labels


def make_train_step(model: torch.nn.Module, device: torch.device, amp: str, compile_mode: str | None,
                    channels_last: bool = False) -> TrainStep:
    """The training script's step (model.engine.train_step: forward, cross-entropy, backward, SGD update).

    Args:
        model: the network, already on `device` (and in channels_last if wanted).
        device: where the step runs.
        amp: "off" (float32) or "bf16" (autocast to bfloat16; weights and the update stay float32).
        compile_mode: None, or a torch.compile mode ("default", "reduce-overhead", "max-autotune").
        channels_last: inputs in channels_last memory format.

    Returns:
        step(images, labels) -> loss tensor (not synchronised).
    """
    from model.config import OptimConfig
    from model.engine import Trainer, train_step

    model.train()
    paper = OptimConfig()  # §5's SGD: the optimizer's update is part of a step's cost
    optimizer = torch.optim.SGD(model.parameters(), lr=paper.lr, momentum=paper.momentum,
                                weight_decay=paper.weight_decay)
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model
    trainer = Trainer(forward, optimizer, device, amp_dtype=torch.bfloat16 if amp == "bf16" else None,
                      channels_last=channels_last)
    return lambda images, labels: train_step(trainer, images, labels)[0]


def _progress(label: str, steps: int) -> Progress:
    """The line a measurement shows while it runs: batches done, images/s."""
    return Progress(label, steps, "batches", "images", every=PROGRESS_EVERY_S, log_every=PROGRESS_LOG_EVERY_S)


def time_pipeline(batches: Iterator[Batch], steps: int, warmup: int, device: torch.device,
                  label: str = "pipeline") -> Timing:
    """Consume batches without a model: the loader's own throughput.

    Args:
        batches: an endless batch iterator (`endless(loader)`).
        steps, warmup: timed and untimed batches.
        device: where the loader's outputs live (for the synchronisation around the timed part).
        label: shown in the progress line.

    Returns:
        The timing of the `steps` batches.
    """
    for _ in range(warmup):
        next(batches)
    synchronize(device)
    progress, images = _progress(label, steps), 0
    start = time.perf_counter()
    for _ in range(steps):
        batch_images, _ = next(batches)
        images += batch_images.shape[0]
        progress.update(counted=batch_images.shape[0])
    synchronize(device)
    seconds = time.perf_counter() - start
    progress.finish()
    return Timing(images, seconds)


def synthetic_batch(batch_size: int, device: torch.device, channels_last: bool, num_classes: int,
                    crop: int = CROP_SIZE) -> Batch:
    """A normalised-looking random batch already on `device`, shaped like the loader's output."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, crop, crop, generator=generator).mul_(60.0)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return to_model_input(images, labels, device, channels_last)


def time_model(step: TrainStep, batch: Batch, steps: int, warmup: int, device: torch.device,
               label: str = "model") -> Timing:
    """Training steps on one batch that is already on the device: the model's own throughput."""
    images, labels = batch
    for _ in range(warmup):
        step(images, labels)
    synchronize(device)
    progress = _progress(label, steps)
    start = time.perf_counter()
    for _ in range(steps):
        step(images, labels)
        progress.update(counted=images.shape[0])
    synchronize(device)
    seconds = time.perf_counter() - start
    progress.finish()
    return Timing(steps * images.shape[0], seconds)


def time_end_to_end(batches: Iterator[Batch], step: TrainStep, steps: int, warmup: int, device: torch.device,
                    channels_last: bool, label: str = "end to end") -> Timing:
    """Loader -> training steps, with the time spent waiting for data (see the module docstring)."""
    for _ in range(warmup):
        step(*to_model_input(*next(batches), device, channels_last))
    synchronize(device)
    progress, images, waited = _progress(label, steps), 0, 0.0
    start = time.perf_counter()
    for _ in range(steps):
        asked = time.perf_counter()
        batch_images, labels = to_model_input(*next(batches), device, channels_last)
        waited += time.perf_counter() - asked
        step(batch_images, labels)
        images += batch_images.shape[0]
        progress.update(counted=batch_images.shape[0])
    synchronize(device)
    seconds = time.perf_counter() - start
    progress.finish()
    return Timing(images, seconds, waited)
