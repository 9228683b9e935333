"""A stand-in for pipeline.loader.make_loader, for CLI tests of model.train where the images do not matter."""
from __future__ import annotations

from pathlib import Path

import torch

CLASSES = 2


def write_tiny_lists(folder: Path) -> Path:
    """train.txt, val.txt and classes.tsv of a 2-class run (the fake loader never opens the images)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("a.JPEG 0\nb.JPEG 1\n")
    (folder / "val.txt").write_text("a.JPEG 0\nb.JPEG 1\n")
    (folder / "classes.tsv").write_text("0\tn1\tone\n1\tn2\ttwo\n")
    return folder


def fake_make_loader(calls: list | None = None, batches: int = 1, views: int | None = None):
    """A make_loader that returns `batches` fixed batches of 2 random 224x224 images (10 views for
    ten_crop) and records each (split, DataConfig) in `calls`."""
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(2, 3, 224, 224, generator=generator) for _ in range(batches)]

    def make_loader(cfg, split, shard_id=0, num_shards=1):
        if calls is not None:
            calls.append((split, cfg))
        if split == "ten_crop":
            return [(x[:, None].expand(-1, 10, -1, -1, -1).contiguous(), torch.tensor([0, 1])) for x in images]
        return [(x, torch.tensor([0, 1])) for x in images]

    return make_loader


def install(monkeypatch, calls: list | None = None, batches: int = 1) -> list:
    """Make model.train and model.run build fake loaders; returns the list of recorded calls."""
    from model import run as run_module
    from model import train as train_module

    calls = [] if calls is None else calls
    fake = fake_make_loader(calls, batches)
    monkeypatch.setattr(run_module, "make_loader", fake)
    monkeypatch.setattr(train_module, "make_loader", fake)
    return calls
