"""The options of `imagenet-tools bench`: what one run sweeps and keeps fixed, and the checks of its flags."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.filelist import read_file_list
from pipeline.loader import MIN_EPOCH_BATCHES, WORKER_BATCHES, epoch_batches_needed
from pipeline.processes import usable_cpus

# The default training configuration (§5): the paper's net, 1000 classes.
ARCH, NUM_CLASSES = "alexnet", 1000

AMP_CHOICES = ("off", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One data set to time: images under `root`, listed (relative to root) in `train_list`."""

    name: str
    root: Path
    train_list: Path
    images: int = 0  # lines of train_list


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """Everything one bench run sweeps over and keeps fixed."""

    datasets: tuple[Dataset, ...]
    device: str  # "cpu", "cuda" or "cuda:N" (pipeline/devices.py)
    threads: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    hw_decoder_loads: tuple[float | None, ...]
    amps: tuple[str, ...]
    channels_last: bool
    compile_mode: str | None
    steps: int
    warmup: int
    modes: tuple[str, ...]
    arch: str = ARCH
    repeat: int = 1


def split_values(text: str, kind: Callable[[str], Any], flag: str) -> tuple:
    """`"1,2,4"` -> (1, 2, 4); an InputError naming the flag if a value does not parse."""
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated values, e.g. {flag} 1,2,4") from None
    if not values:
        raise InputError(f"{flag} is empty; give at least one value")
    return values


def resolve_datasets(roots: Sequence[Path], lists_dirs: Sequence[Path], lists: Sequence[Path]) -> tuple[Dataset, ...]:
    """Pair each --root with its train list (--lists DIR means DIR/train.txt); one list serves every root.

    Raises:
        InputError: no root, a missing folder or list, or list and root counts that do not pair up.
    """
    train_lists = [Path(d) / "train.txt" for d in lists_dirs] + [Path(p) for p in lists]
    if not roots:
        raise InputError("no --root given: point --root at an image folder and --lists at prepare's output")
    if not train_lists:
        raise InputError("no --lists DIR (prepare's output, with train.txt) or --list FILE given")
    if len(train_lists) not in (1, len(roots)):
        raise InputError(f"{len(roots)} --root but {len(train_lists)} lists: give one list, or one per root")
    if len(train_lists) == 1:
        train_lists = train_lists * len(roots)
    names = [Path(root).name or str(root) for root in roots]
    if len(set(names)) < len(names):
        names = [f"{i}:{name}" for i, name in enumerate(names)]
    datasets = []
    for name, root, train_list in zip(names, roots, train_lists):
        if not Path(root).is_dir():
            raise InputError(f"{root}: no such image folder (--root)")
        if not train_list.is_file():
            raise InputError(f"{train_list}: no such file list; write one with `imagenet-tools prepare ROOT --out DIR`")
        datasets.append(Dataset(name, Path(root), train_list, len(read_file_list(train_list))))
    return tuple(datasets)


def check_epochs(options: BenchOptions) -> str | None:
    """One warning line when a data set gives fewer batches per epoch than a fair measurement needs, else None.

    Raises:
        InputError: a data set with fewer images than a batch (no batch at all).
    """
    short = []
    for dataset in options.datasets:
        for batch in options.batch_sizes:
            if dataset.images < batch:
                raise InputError(f"{dataset.train_list}: {dataset.images} images, fewer images than --batch-size "
                                 f"{batch}; use a smaller --batch-size or a longer list")
            for threads in options.threads:
                have, need = dataset.images // batch, epoch_batches_needed(threads)
                if have < need:
                    short.append((have / need, dataset, batch, threads, have, need))
    if not short:
        return None
    _, dataset, batch, threads, have, need = min(short, key=lambda entry: entry[0])
    more = f" (and {len(short) - 1} more sweep points)" if len(short) > 1 else ""
    return (f"Warning: {dataset.name}: {dataset.images} images are {have} batches of {batch} an epoch, fewer than "
            f"{need} (at least {MIN_EPOCH_BATCHES}, and {WORKER_BATCHES} x the {threads} workers){more}: each epoch's "
            f"end drains the DataLoader's queue and DALI drops its partial batch, so the figures come out low; "
            f"list more images or use a smaller --batch-size")


def config_json(options: BenchOptions) -> dict[str, Any]:
    """The options as plain JSON values."""
    config = dataclasses.asdict(options)
    config["datasets"] = [{"name": d.name, "root": str(d.root), "list": str(d.train_list), "images": d.images}
                          for d in options.datasets]
    return config


def default_threads() -> str:
    return str(usable_cpus())


def positive(values: tuple, flag: str) -> tuple:
    if any(value < 1 for value in values):
        raise InputError(f"{flag}: every value must be at least 1, got {','.join(map(str, values))}")
    return values


def hw_loads(text: str | None, device: str) -> tuple[float | None, ...]:
    """--hw-decoder-load values; without the flag, DataConfig's default on a GPU (recorded in the JSON)
    and None on the CPU, where no hardware decoder takes part."""
    if text is None:
        return (DataConfig.__dataclass_fields__["hw_decoder_load"].default,) if device != "cpu" else (None,)
    values = split_values(text, float, "--hw-decoder-load")
    if any(not 0.0 <= value <= 1.0 for value in values):
        raise InputError(f"--hw-decoder-load: every value must lie in [0, 1], got {','.join(map(str, values))}")
    return values


def choices(values: tuple, allowed: Sequence[str], flag: str) -> tuple:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise InputError(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return values
