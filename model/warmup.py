"""The start of a run: a linear learning-rate warm-up, and a watch for a loss that sits at chance.

Warm-up (`--lr-warmup-epochs`, named as in torchvision's classification reference): the rate of update s
(0-based) is lr x (s + 1) / W for the first W = round(epochs x steps per epoch) updates, then lr. It is
a function of the step count alone, so a resumed run continues it exactly. Why the default uses one:
docs/training.md, "Why the paper's start fails on 10 classes".

Chance: a network whose output does not depend on the image has a loss of ln(C) (C classes, labels
balanced). A run whose training loss stays within 2 % of ln(C) for CHANCE_STEPS steps has most likely
stopped learning (a rate too high for its start, dead ReLUs in fc6/fc7, or too small to move at all); it
is said once, and the run goes on.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Iterator

import torch

CHANCE_STEPS = 300
CHANCE_TOLERANCE = 0.02


class Warmup:
    """Scales each update's rate: (s + 1) / steps for update s < steps, then 1.

    Args:
        steps: updates the warm-up lasts (0: none).
        done: updates already made (a resumed run).
    """

    def __init__(self, steps: int, done: int = 0) -> None:
        self.steps, self.done, self.last_scale = steps, done, 1.0

    def next_scale(self) -> float:
        """The factor of the update about to be made (and count it)."""
        self.last_scale = min(1.0, (self.done + 1) / self.steps) if self.steps > 0 else 1.0
        self.done += 1
        return self.last_scale


@contextlib.contextmanager
def scaled_rate(optimizer: torch.optim.Optimizer, scale: float) -> Iterator[None]:
    """Every group's rate times `scale` inside the block, the schedule's rate again after it: the schedulers
    and checkpoints never see a warmed rate. Nothing is touched when `scale` is 1."""
    if scale == 1.0:
        yield
        return
    scheduled = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, scheduled):
        group["lr"] = lr * scale
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr


def warmup_steps(epochs: float, steps_per_epoch: int) -> int:
    """Updates in a warm-up of `epochs` epochs (at least one when epochs > 0)."""
    return max(1, round(epochs * steps_per_epoch)) if epochs > 0 else 0


class ChanceWatch:
    """Says once, on stderr, that the training loss has stayed within `tolerance` of ln(num_classes).

    add() runs every step and keeps the largest relative distance from ln(C) on the loss's device (no
    synchronisation); report() reads it where the loop synchronises anyway (its progress lines).

    Args:
        num_classes: C.
        steps: how many steps in a row count as "stayed" (default CHANCE_STEPS).
        tolerance: relative distance from ln(C).
    """

    def __init__(self, num_classes: int, steps: int | None = None, tolerance: float = CHANCE_TOLERANCE) -> None:
        self.chance = math.log(num_classes) if num_classes > 1 else 0.0
        self.steps, self.tolerance = steps or CHANCE_STEPS, tolerance
        self.count, self.worst, self.said = 0, None, False

    def add(self, loss: torch.Tensor) -> None:
        if self.said or self.chance == 0.0:
            return
        distance = (loss.detach().float() - self.chance).abs() / self.chance
        self.worst = distance if self.worst is None else torch.maximum(self.worst, distance)
        self.count += 1

    def report(self) -> bool:
        """Print the note if the loss has stayed at chance for `steps` steps; True when it was printed now."""
        if self.said or self.worst is None:
            return False
        if float(self.worst) > self.tolerance:  # left chance since the window began: start a new window
            self.count, self.worst = 0, None
            return False
        if self.count < self.steps:
            return False
        self.said = True
        print(f"note: the training loss has stayed within {self.tolerance:.0%} of ln({round(math.exp(self.chance))}) = "
              f"{self.chance:.3f} (chance) for {self.count} steps: the network's output does not depend on the image. "
              "Likely causes: a learning rate too high for the start (dead ReLUs) or too low to move; try "
              "--lr-warmup-epochs 1, a smaller --lr, or --bias-one 0.1 if it is 1 (docs/training.md); the run goes on",
              file=sys.stderr, flush=True)
        return True
