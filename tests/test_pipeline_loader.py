"""The loader factory (pipeline/loader.py): epochs, shards, last batches, layouts, errors; DALI and PIL."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import InputError
from pipeline.loader import make_loader
from tests.conftest import requires_cuda, write_image_tree
from tests.test_pipeline_graphs import make_cfg

BACKENDS = ["dali", "pil"]
# PIL loaders run in the test process (0 workers): spawning workers costs seconds each on a busy
# 2-core machine. One test below runs with a worker, so the worker path is covered too.
NO_WORKERS = 0


def collect(loader) -> tuple[list[torch.Tensor], list[int]]:
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels += y.tolist()
    return images, labels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", ["val", "ten_crop"])
def test_each_val_image_exactly_once_over_two_shards(image_tree: Path, backend: str, split: str) -> None:
    # 9 val images, labels = line numbers; batch 2: shards of 4 and 5, last batches partial.
    cfg = make_cfg(image_tree, batch_size=2, backend=backend, label_is_index=True, num_threads=NO_WORKERS)
    seen = []
    for shard in range(2):
        loader = make_loader(cfg, split, shard_id=shard, num_shards=2)
        for epoch in range(2):
            images, labels = collect(loader)
            assert len(images) == len(loader) and len(labels) == loader.num_images
            assert all(x.dtype == torch.float32 for x in images)
            view = (10, 3, 224, 224) if split == "ten_crop" else (3, 224, 224)
            assert all(tuple(x.shape[1:]) == view for x in images)
            if epoch == 0:
                seen += labels
    assert sorted(seen) == list(range(9))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("last_batch,batches", [("drop", 4), ("fill", 5)])
def test_train_epochs_reshuffle_and_last_batch(image_tree: Path, backend: str, last_batch: str, batches: int) -> None:
    # 18 train images, batch 4: drop -> 4 batches of 4, fill -> 5 batches of 4 (DALI: then 4, see loader.py).
    cfg = make_cfg(image_tree, backend=backend, train_last_batch=last_batch, label_is_index=True, num_threads=NO_WORKERS)
    loader = make_loader(cfg, "train")
    assert len(loader) == batches and loader.num_images == 4 * batches
    orders = []
    for _ in range(2):
        count = len(loader)
        images, labels = collect(loader)
        assert len(images) == count and all(x.shape == (4, 3, 224, 224) for x in images)
        assert len(labels) == 4 * count and len(set(labels[:16])) == 16  # an epoch's own images are distinct
        orders.append(labels)
    assert orders[0][:16] != orders[1][:16]
    if last_batch == "drop":
        assert len(orders[1]) == 16
    elif backend == "dali":  # the fill came from epoch 2, which then holds the 16 others: 36 = 2 x 18
        assert len(orders[1]) == 16 and sorted(orders[0] + orders[1]) == sorted(list(range(18)) * 2)
    else:  # the PIL sampler fills from the next permutation's start and starts every epoch afresh
        assert len(orders[1]) == 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_nhwc_is_channels_last_and_labels_int64(image_tree: Path, backend: str) -> None:
    cfg = make_cfg(image_tree, backend=backend, layout="NHWC", dtype="float16", num_threads=NO_WORKERS)
    images, labels = next(iter(make_loader(cfg, "val")))
    assert images.shape == (4, 3, 224, 224) and images.dtype == torch.float16
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.dtype == torch.int64 and labels.shape == (4,)
    nhwc, _ = next(iter(make_loader(make_cfg(image_tree, backend=backend, layout="NHWC", num_threads=0), "ten_crop")))
    nchw, _ = next(iter(make_loader(make_cfg(image_tree, backend=backend, num_threads=0), "ten_crop")))
    assert nhwc.shape == (4, 10, 3, 224, 224) and torch.equal(nhwc, nchw)


def test_dali_and_pil_val_batches_agree(image_tree: Path) -> None:
    dali, _ = collect(make_loader(make_cfg(image_tree, batch_size=9, backend="dali"), "val"))
    pil, _ = collect(make_loader(make_cfg(image_tree, batch_size=9, backend="pil", num_threads=0), "val"))
    difference = (dali[0] - pil[0]).abs()
    assert difference.mean() < 1.0 and difference.max() <= 8  # interpolation tolerance, as in test_pipeline_graphs


def test_same_seed_same_loader_batches(image_tree: Path) -> None:
    def epoch(seed: int) -> list[torch.Tensor]:
        return collect(make_loader(make_cfg(image_tree, seed=seed), "train"))[0]

    for x, y in zip(epoch(11), epoch(11)):
        assert torch.equal(x, y)


def corrupt(path: Path, kind: str) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "not an image":
        path.write_text("<html>404 not found</html>")
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["truncated", "not an image", "empty"])
def test_corrupt_file_mid_epoch_names_it(tmp_path: Path, backend: str, kind: str) -> None:
    root = tmp_path / "imagenet"
    written = write_image_tree(root, {"train": 4, "val": 2})
    bad = written["val"][3]  # in the second batch of 2
    corrupt(bad, kind)
    workers = 1 if kind == "truncated" else NO_WORKERS  # the error must also cross a worker process
    cfg = make_cfg(root, batch_size=2, backend=backend, num_threads=workers)
    start = time.monotonic()
    with pytest.raises(InputError) as caught:
        collect(make_loader(cfg, "val"))
    message = str(caught.value)
    assert str(bad) in message and "prepare" in message and "--check decode" in message
    assert "\n" not in message
    assert time.monotonic() - start < 60


def test_bad_arguments_are_input_errors(image_tree: Path) -> None:
    cfg = make_cfg(image_tree)
    with pytest.raises(InputError, match="shard_id 2"):
        make_loader(cfg, "val", shard_id=2, num_shards=2)
    with pytest.raises(InputError, match="unknown split"):
        make_loader(cfg, "test")  # type: ignore[arg-type]
    cases = [({"crop": 300}, "crop 300"), ({"normalize": "std"}, "unknown normalize"),
             ({"device": "tpu"}, "unknown device"), ({"batch_size": 0}, "batch size")]
    if not torch.cuda.is_available():
        cases.append(({"device": "gpu", "device_id": 0}, "needs a CUDA device"))
    for change, message in cases:
        with pytest.raises(InputError, match=message):
            make_loader(make_cfg(image_tree, **change), "train")
    with pytest.raises(InputError, match="no such file list"):
        make_loader(make_cfg(image_tree).__class__(root=image_tree, val_list=image_tree / "missing.txt"), "val")


@pytest.mark.gpu
@pytest.mark.timeout(60)
@requires_cuda
def test_gpu_graph_matches_cpu_graph(image_tree: Path) -> None:
    cpu, cpu_labels = collect(make_loader(make_cfg(image_tree, batch_size=9), "val"))
    gpu, gpu_labels = collect(make_loader(make_cfg(image_tree, batch_size=9, device="gpu", device_id=0), "val"))
    assert gpu[0].is_cuda and cpu_labels == gpu_labels
    difference = (gpu[0].cpu() - cpu[0]).abs()
    # nvJPEG and libjpeg-turbo differ in IDCT and chroma upsampling: a few grey levels.
    assert difference.mean() < 2.0 and np.isfinite(difference.numpy()).all()


@pytest.mark.parametrize("kind", ["grayscale", "cmyk", "png named .JPEG", "tiny 1x1"])
def test_odd_but_valid_images_decode(tmp_path: Path, kind: str) -> None:
    from PIL import Image

    root = tmp_path / "imagenet"
    written = write_image_tree(root, {"train": 1, "val": 1})
    odd = written["val"][0]
    with Image.open(odd) as image:
        image.load()
    if kind == "grayscale":
        image.convert("L").save(odd, "JPEG")
    elif kind == "cmyk":
        image.convert("CMYK").save(odd, "JPEG")
    elif kind == "png named .JPEG":
        image.save(odd, "PNG")
    else:
        Image.new("RGB", (1, 1), (200, 100, 50)).save(odd, "JPEG")
    images, labels = next(iter(make_loader(make_cfg(root, batch_size=3), "val")))
    assert images.shape == (3, 3, 224, 224) and torch.isfinite(images).all()
    first = images[0] + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255  # undo the mean
    if kind == "grayscale":
        assert (first.amax(0) - first.amin(0)).max() < 1e-3  # R = G = B
    if kind == "tiny 1x1":
        expected = torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1)
        assert (first - expected).abs().max() < 4  # one JPEG-coded colour, upscaled


def test_a_missing_file_under_a_relative_root_is_named_once(tmp_path: Path, monkeypatch) -> None:
    """DALI's "File mapping failed: ROOT/..." already holds the root: the message must not prefix it again."""
    root = tmp_path / "sdel"
    written = write_image_tree(root, {"train": 2, "val": 2})
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(Path("sdel"), batch_size=2, backend="dali", num_threads=1)
    missing = written["val"][1]
    missing.unlink()  # after the lists were written: listed, but gone
    with pytest.raises(InputError) as caught:
        collect(make_loader(cfg, "val"))
    message = str(caught.value)
    named = message.split(":")[0]
    assert named == str(missing.relative_to(tmp_path)) and Path(named).parent.is_dir()
    assert "sdel/sdel" not in message
