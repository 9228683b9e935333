"""Shared fixtures: small generated JPEG trees in a temp folder (no downloads, no repository data)."""
from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.processes import usable_cpus

# Under pytest-xdist (`make test`: two workers) the CPUs are shared out: each worker, and every process it
# starts, computes on usable CPUs / workers threads unless OMP_NUM_THREADS says otherwise. On 2 cores two
# workers at two threads each took 2.2 s per AlexNet step where one thread each takes 0.95 s (oversubscribed
# OpenMP spins).
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    _threads = max(1, usable_cpus() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)

# The device for tests, taken from one place.
HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device; this machine has none")

CLASSES = ("n01440764", "n02102040", "n02979186")


def textured_image(rng: np.random.Generator, width: int, height: int, class_index: int) -> Image.Image:
    """A photo-like RGB image: colour waves whose frequencies depend on the class, plus noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / (9 + 7 * class_index) + rng.uniform(0, 6)),
            128 + 100 * np.cos(yy / (11 + 5 * class_index) + rng.uniform(0, 6)),
            128 + 80 * np.sin((xx + yy) / (13 + 3 * class_index)),
        ],
        axis=-1,
    )
    base += rng.normal(0, 12, size=base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def write_image_tree(
    root: Path, per_class: dict[str, int], classes: tuple[str, ...] = CLASSES, seed: int = 0
) -> dict[str, list[Path]]:
    """Write `root/<split>/<class>/<class>_<i>.JPEG` with `per_class[split]` images per class.

    Sizes vary (shorter side 160-400, both orientations) so resize and crop are exercised.
    Returns the written paths per split.
    """
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for split, count in per_class.items():
        written[split] = []
        for class_index, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                short, long = int(rng.integers(160, 400)), int(rng.integers(400, 520))
                width, height = (long, short) if i % 2 == 0 else (short, long)
                path = folder / f"{wnid}_{i}.JPEG"
                textured_image(rng, width, height, class_index).save(path, quality=90)
                written[split].append(path)
    return written


def write_lists(root: Path, written: dict[str, list[Path]], lists: Path, classes: tuple[str, ...] = CLASSES) -> Path:
    """train.txt / val.txt / classes.tsv for a `write_image_tree` tree, as prepare writes them (label = index of
    the class folder in `classes`), computed here independently of `prepare`. Returns `lists`."""
    lists.mkdir(parents=True, exist_ok=True)
    for split, paths in written.items():
        lines = "".join(f"{p.relative_to(root).as_posix()} {classes.index(p.parent.name)}\n" for p in paths)
        (lists / f"{split}.txt").write_text(lines, encoding="utf-8")
    (lists / "classes.tsv").write_text("".join(f"{i}\t{c}\tclass {i}\n" for i, c in enumerate(classes)),
                                       encoding="utf-8")
    return lists


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """A 3-class ImageFolder tree: train/ with 6 images per class, val/ with 3."""
    root = tmp_path / "imagenet"
    write_image_tree(root, {"train": 6, "val": 3})
    return root


# The files that take longest, longest first: pytest-xdist (`make test`: --dist loadfile
# --no-loadscope-reorder; without that flag it orders files by their number of tests) hands out files in
# collection order, so starting these first lets the two workers finish together instead of one waiting for
# the other's last long file.
SLOW_FILES_FIRST = ("test_tools_selftest.py", "test_model_ddp.py", "test_model_train_run.py", "test_tools_ablate.py",
                    "test_tools_demo.py", "test_model_train_overfit.py", "test_model_run_folder.py")


# torch.compile's compile alone takes 40-90 s: in a GPU session (`pytest -m gpu`) the compile test runs last, so
# that the others have finished and are in the log if the call's time runs out during it.
LAST = ("test_gpu_all_modes_bf16_channels_last",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept
    items.sort(key=lambda item: item.originalname in LAST)


class NumpySgd:
    """The paper's update rule done by hand in NumPy (float64) on its own copy of a network:
    v <- momentum v - decay(name) lr w - lr g;  w <- w + v   (§5), the gradient g taken at the current w.

    Args:
        net: the network (copied; the copy only supplies gradients).
        decay: weight decay of each parameter, by name.
    """

    def __init__(self, net: torch.nn.Module, lr: float, momentum: float, decay: Callable[[str], float]) -> None:
        self.reference = copy.deepcopy(net)
        self.lr, self.momentum, self.decay = lr, momentum, decay
        self.weights = {name: p.detach().double().numpy().copy() for name, p in self.reference.named_parameters()}
        self.initial = {name: w.copy() for name, w in self.weights.items()}
        self.velocity = {name: np.zeros_like(w) for name, w in self.weights.items()}

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.no_grad():
            for name, p in self.reference.named_parameters():
                p.copy_(torch.from_numpy(self.weights[name]).float())
        self.reference.zero_grad()
        torch.nn.functional.cross_entropy(self.reference(images), labels).backward()
        for name, p in self.reference.named_parameters():
            self.velocity[name] = (self.momentum * self.velocity[name] - self.decay(name) * self.lr * self.weights[name]
                                   - self.lr * p.grad.double().numpy())
            self.weights[name] = self.weights[name] + self.velocity[name]

    def displacement(self, name: str) -> np.ndarray:
        """How far parameter `name` moved from its start (the weights themselves would hide a wrong update)."""
        return self.weights[name] - self.initial[name]
