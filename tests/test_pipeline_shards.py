"""Shard lists through both loaders on CPU (device_id=None): the same pixels as the same photos read as files,
labels from .cls exactly (three digits), every validation sample once across two ranks, same seed same batches."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.loader import make_loader
from tests.shard_data import write_shards
from tools.prepare_imagenet import main as prepare_main

LABEL_OFFSET = 100  # labels 100..: three digits


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict:
    """Shards with one label per sample (so a label names its sample), prepared; the same JPEGs as files."""
    base = tmp_path_factory.mktemp("shards")
    expected = write_shards(base / "wds", train_tars=2, per_tar=6, val_tars=2, labels=12, label_offset=LABEL_OFFSET)
    result = CliRunner().invoke(prepare_main, [str(base / "wds"), "--out", str(base / "out"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = []
    for path, label in expected["val"]:  # the same photos as a file tree, in the same order
        shard, key = path.split(":")
        with tarfile.open(base / "wds" / shard) as tar:
            data = tar.extractfile(f"{key}.jpg").read()
        (base / "files" / "val").mkdir(parents=True, exist_ok=True)
        (base / "files" / "val" / f"{key}.JPEG").write_bytes(data)
        lines.append(f"val/{key}.JPEG {label}\n")
    (base / "files.txt").write_text("".join(lines))
    return {"base": base, "expected": expected}


def config(shards: dict, **changes) -> DataConfig:
    base = shards["base"]
    values = dict(root=base / "wds", train_list=base / "out" / "train.txt", val_list=base / "out" / "val.txt",
                  batch_size=4, device="cpu", device_id=None, num_threads=1, seed=3)
    values.update(changes)
    return DataConfig(**values)


def epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*list(loader))
    return torch.cat(images), torch.cat(labels)


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_validation_reads_the_same_pixels_as_files(shards: dict, backend: str) -> None:
    images, labels = epoch(make_loader(config(shards, backend=backend), "val"))
    assert labels.tolist() == [label for _, label in shards["expected"]["val"]]
    files = config(shards, backend=backend, root=shards["base"] / "files", val_list=shards["base"] / "files.txt")
    file_images, file_labels = epoch(make_loader(files, "val"))
    assert torch.equal(file_labels, labels)
    assert torch.equal(file_images, images)


@pytest.mark.parametrize("backend", ["dali", "pil"])
def test_two_ranks_see_every_validation_sample_once(shards: dict, backend: str) -> None:
    seen = []
    for rank in range(2):
        loader = make_loader(config(shards, backend=backend, batch_size=4), "val", shard_id=rank, num_shards=2)
        _, labels = epoch(loader)
        assert len(labels) == loader.num_images == 6
        seen += labels.tolist()
    assert sorted(seen) == sorted(label for _, label in shards["expected"]["val"])


def test_training_epochs_cover_the_samples_and_repeat_with_the_seed(shards: dict) -> None:
    everything = sorted(label for _, label in shards["expected"]["train"])
    first = make_loader(config(shards), "train")
    again = make_loader(config(shards), "train")
    epochs = []
    for _ in range(2):
        images, labels = epoch(first)
        other_images, other_labels = epoch(again)
        assert sorted(labels.tolist()) == everything  # 12 samples, batches of 4: one epoch is each once
        assert torch.equal(labels, other_labels) and torch.equal(images, other_images)
        epochs.append(labels.tolist())
    other_seed = epoch(make_loader(config(shards, seed=4), "train"))[1].tolist()
    assert epochs[0] != epochs[1] or epochs[0] != other_seed


def test_a_sample_missing_from_the_index_is_one_line(shards: dict, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "val.txt").write_text("imagenet1k-validation-00.tar:nosuchkey 1\n")
    with pytest.raises(InputError, match="no index file"):
        make_loader(config(shards, train_list=None, val_list=lists / "val.txt"), "val")
    (lists / "index").symlink_to(shards["base"] / "out" / "index")
    with pytest.raises(InputError, match="nosuchkey: not in the index"):
        make_loader(config(shards, train_list=None, val_list=lists / "val.txt"), "val")


def test_a_list_that_mixes_files_and_samples_is_refused(shards: dict, tmp_path: Path) -> None:
    (tmp_path / "val.txt").write_text("imagenet1k-validation-00.tar:x 1\nval/a.JPEG 2\n")
    with pytest.raises(InputError, match="mixes shard samples"):
        make_loader(config(shards, val_list=tmp_path / "val.txt"), "val")


def test_pixels_are_the_jpegs(shards: dict) -> None:
    """Independent of both loaders: the first val image decoded by PIL, resized as §2 says, centre-cropped."""
    from PIL import Image

    from pipeline.pil_image import centre_crop, stored_pixels

    path = shards["expected"]["val"][0][0]
    shard, key = path.split(":")
    with tarfile.open(shards["base"] / "wds" / shard) as tar, Image.open(tar.extractfile(f"{key}.jpg")) as image:
        reference = centre_crop(stored_pixels(image), 224).astype(np.float32)
    images, _ = epoch(make_loader(config(shards, backend="pil", normalize="mean"), "val"))
    from pipeline.lighting import colour_stats

    stats = colour_stats(None, "mean", "stdev", "centre")
    expected = (reference - stats.mean) / stats.std
    assert np.allclose(images[0].permute(1, 2, 0).numpy(), expected, atol=1e-4)
