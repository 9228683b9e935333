"""Loss and top-k error sums kept on the device, and the clock that splits an epoch into compute and data wait.

Sums stay on the device so a GPU step does not wait for `.item()`; they are read (one sync) only for a
progress line, a checkpoint or the end of an epoch.
"""
from __future__ import annotations

import math
import time

import torch

from pipeline.errors import InputError

TOPK = (1, 5)


class TrainingDiverged(InputError):
    """The loss became NaN or infinite: the weights are no longer usable (lower --lr, or --amp off)."""


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = TOPK) -> list[torch.Tensor]:
    """How many rows have their label among the k highest scores, for each k.

    Args:
        scores: (N, C) logits or probabilities.
        labels: (N,) int64 class indices.
        ks: the k's; a k larger than C counts every row as correct (as top-C).

    Returns:
        One 0-dim tensor (on scores' device) per k.
    """
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [hits[:, :k].any(dim=1).sum() for k in ks]


class Meter:
    """Running sums over an epoch: [loss x N, top-1 correct, top-5 correct, N] as float64 on a device."""

    def __init__(self, device: torch.device, sums: list[float] | None = None) -> None:
        self.sums = torch.tensor(sums if sums is not None else [0.0] * 4, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: `loss` is the batch mean, scores (N, C), labels (N,)."""
        n = labels.shape[0]
        correct1, correct5 = topk_correct(scores.detach(), labels)
        self.sums += torch.stack([loss.detach().double() * n, correct1.double(), correct5.double(),
                                  # torch.full, not torch.tensor: a host value copied to the GPU would
                                  # wait for the device at every step
                                  torch.full((), float(n), dtype=torch.float64, device=self.sums.device)])

    def values(self) -> list[float]:
        """The raw sums (one device sync), e.g. for a mid-epoch checkpoint."""
        return [float(v) for v in self.sums.tolist()]

    def summary(self) -> tuple[float, float, float]:
        """(mean loss, top-1 error %, top-5 error %) over what was added; NaN for an empty meter."""
        loss_sum, correct1, correct5, count = self.values()
        if count == 0:
            return math.nan, math.nan, math.nan
        return loss_sum / count, 100.0 * (1 - correct1 / count), 100.0 * (1 - correct5 / count)

    def check_finite(self, where: str) -> None:
        """Raise TrainingDiverged if any loss added so far was NaN or infinite (the sum stays non-finite)."""
        loss_sum = self.values()[0]
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(
                f"the training loss became {loss_sum} ({where}); stopped without saving these weights, the last "
                "good checkpoint is kept: resume from it with a lower --lr (or --amp bf16/off instead of fp16)"
            )


class EpochClock:
    """Wall time of an epoch and how much of it the loop spent waiting for the next batch."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.mark = self.start
        self.data_wait = 0.0
        self.images = 0
        self.end: float | None = None

    def batch_arrived(self) -> None:
        """Call right after the loader handed over a batch."""
        now = time.perf_counter()
        self.data_wait += now - self.mark
        self.mark = now

    def step_done(self, images: int) -> None:
        """Call after the step that consumed the batch."""
        self.images += images
        self.mark = time.perf_counter()

    def stop(self) -> None:
        """Freeze the clock: what is read later covers only the time until now."""
        self.end = time.perf_counter()

    def elapsed(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    def images_per_s(self) -> float:
        return self.images / max(self.elapsed(), 1e-9)

    def data_wait_frac(self) -> float:
        return self.data_wait / max(self.elapsed(), 1e-9)
