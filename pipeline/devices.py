"""Where a command computes: one `--device auto|cpu|cuda|cuda:N` for every command, decided here.

`auto`, every command's default, is CUDA when torch sees a GPU and the CPU otherwise (as pytorch/examples'
imagenet does); `gpu` and `gpu:N` are accepted for `cuda` and `cuda:N`. Each command prints the choice as
the first line of its work (`announce`), on stderr, so that a run on the wrong device is seen at once:

    device: cuda (auto: torch sees 1 CUDA device)
    device: cpu (auto: torch sees no CUDA device)
    device: cuda:1 (--device gpu:1)

DALI names its devices otherwise ("gpu"/"mixed" operators, "cpu"); `Device.dali` and `Device.index` give
what a DataConfig takes.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import click

from pipeline.errors import InputError

CHOICES = "auto, cpu, cuda or cuda:N"
DEVICE_HELP = "auto: CUDA when torch sees a GPU, else the CPU; cpu; cuda or cuda:N (gpu: the same as cuda)."


def device_option(extra_help: str = ""):
    """The `--device` option of every command (default auto)."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                        help=f"{DEVICE_HELP} {extra_help}".strip())


@dataclass(frozen=True)
class Device:
    """A resolved --device.

    Attributes:
        asked: as the user gave it ("auto", "gpu", "cuda:1", ...).
        name: torch's name: "cpu", "cuda" (the current GPU; under DDP the local rank's) or "cuda:N".
        seen: CUDA devices torch sees.
    """

    asked: str
    name: str
    seen: int

    def __str__(self) -> str:
        return self.name

    @property
    def cuda(self) -> bool:
        return self.name != "cpu"

    @property
    def dali(self) -> str:
        """DALI's name for where the graph runs: "gpu" (mixed decoder, GPU operators) or "cpu"."""
        return "gpu" if self.cuda else "cpu"

    @property
    def index(self) -> int | None:
        """The CUDA ordinal for DALI's device_id ("cuda" is 0), None on the CPU."""
        if not self.cuda:
            return None
        return int(self.name.partition(":")[2] or 0)

    def line(self) -> str:
        """"device: cuda (auto: torch sees 1 CUDA device)": the first line of a command's work."""
        seen = "no CUDA device" if self.seen == 0 else f"{self.seen} CUDA device{'s' if self.seen > 1 else ''}"
        why = f"auto: torch sees {seen}" if self.asked == "auto" else f"--device {self.asked}"
        return f"device: {self.name} ({why})"


def canonical(asked: str) -> str:
    """"GPU" -> "cuda", "gpu:1" -> "cuda:1", " CPU " -> "cpu"; other text unchanged (checked by resolve_device)."""
    text = asked.strip().lower()
    kind, colon, index = text.partition(":")
    return ("cuda" if kind == "gpu" else kind) + colon + index


def resolve_device(asked: str) -> Device:
    """The device a command runs on: "auto" resolved, "gpu" read as "cuda", a CUDA device checked.

    Raises:
        InputError: an unknown name, or a CUDA device this machine does not have (one line, before any work).
    """
    import torch

    name = canonical(asked)
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return Device(asked, "cuda" if seen else "cpu", seen)
    parse_device(name, flag=f"--device {asked}")
    return Device(asked, name, seen)


def parse_device(name: str, flag: str | None = None) -> "torch.device":
    """Parse and check one device name ("cpu", "cuda", "cuda:1", "gpu:1"); `flag` names it in errors.

    Raises:
        InputError: an unknown name, or a CUDA device this machine does not have.
    """
    import torch

    said = flag or f"device {name}"
    try:
        device = torch.device(canonical(name))
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r}: use {CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{said}: torch sees no CUDA device here; use --device cpu or auto")
        index = 0 if device.index is None else device.index
        count = torch.cuda.device_count()
        if index >= count:
            raise InputError(f"{said}: torch sees only {count} CUDA device{'s' if count > 1 else ''} "
                             f"(cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise InputError(f"unknown device {name!r}: use {CHOICES}")
    return device


def announce(device: Device) -> None:
    """Print device.line() on stderr, once per run (under torchrun only rank 0 says it)."""
    if os.environ.get("RANK", "0") == "0":
        print(device.line(), file=sys.stderr, flush=True)
