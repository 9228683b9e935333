"""The shards stage: the data stage's 256 copy packed into webdataset shards (`imagenet-tools pack`), the shards
prepared as a hub download would be (`imagenet-tools prepare SHARDS`), then the CPU graphs on them: validation
tensors equal to the file tree's for the same photos, exactly, and training as NumPy's crops of its own stored
images, every listed sample once an epoch. What a user with `timm/imagenet-1k-wds` runs, in seconds.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from pipeline.config import DataConfig
from pipeline.filelist import read_file_list
from pipeline.loader import make_loader
from tools.checkup.graph_checks import against_numpy, run_graph
from tools.checkup.pca_devices import list_root
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, Outcome, Recorder
from tools.shared.stages import Stages

# Samples a shard: small, so that even the quick run's training list spans several tars.
SHARD_SIZE = 8


def pack_and_prepare(runner: Stages, source: Path, tars: Path, lists: Path, settings: Settings) -> Outcome:
    """pack the file tree, prepare the shards: the same labels listed for each split."""
    runner.tool("pack", "pack", "--lists", source, "--root", list_root(source), "--out", tars, "--shard-size",
                SHARD_SIZE, "--workers", settings.workers)
    runner.tool("prepare", "prepare", tars, "--out", lists, "--workers", settings.workers)
    figures = {"tars": len(list(tars.glob("*.tar")))}
    for split in ("train", "val"):
        files, shards = (Counter(label for _, label in read_file_list(where / f"{split}.txt"))
                         for where in (source, lists))
        figures[split] = sum(shards.values())
        if files != shards:
            raise CheckFailed(f"{split}: the shards list {sum(shards.values())} samples with other labels than the "
                              f"{sum(files.values())} files", figures)
    return Outcome(f"{figures['train']} + {figures['val']} samples in {figures['tars']} tars", figures)


def file_twin(shard_list: Path, source: Path, out: Path) -> Path:
    """The file list of the same photos in the shard list's order (pack keeps validation's order and names each
    sample after its file), written to `out`."""
    files = read_file_list(source / "val.txt")
    shards = read_file_list(shard_list)
    keys = [path.rsplit(":", 1)[1] for path, _ in shards]
    if [Path(path).stem for path, _ in files] != keys:
        raise CheckFailed(f"{shard_list}: validation samples not in the files' order ({keys[:3]} ...)")
    out.write_text("".join(f"{path} {label}\n" for path, label in files), encoding="utf-8")
    return out


def val_against_files(source: Path, tars: Path, lists: Path, work: Path, settings: Settings) -> Outcome:
    """One validation epoch from the shards and from the files: the same tensors, the same labels."""
    twin = file_twin(lists / "val.txt", source, work / "files_val.txt")
    epochs = []
    for root, val_list in ((tars, lists / "val.txt"), (list_root(source), twin)):
        cfg = DataConfig(root=root, val_list=val_list, batch_size=settings.sizes.batch, device="cpu",
                         device_id=None, num_threads=settings.workers, seed=1)
        images, labels = zip(*make_loader(cfg, "val"))
        epochs.append((torch.cat(images), torch.cat(labels)))
    (shard_images, shard_labels), (file_images, file_labels) = epochs
    figures = {"images": len(shard_labels), "max_abs_diff": float((shard_images - file_images).abs().max())}
    if not torch.equal(shard_labels, file_labels) or not torch.equal(shard_images, file_images):
        raise CheckFailed(f"validation from shards differs from the files' (labels equal: "
                          f"{torch.equal(shard_labels, file_labels)}, largest difference {figures['max_abs_diff']:.3g})",
                          figures)
    return Outcome(f"validation: {figures['images']} images equal to the files' exactly", figures)


def train_on_shards(tars: Path, lists: Path, settings: Settings) -> Outcome:
    """The training graph's first batch against NumPy, then an epoch: each listed sample at most once, all but
    the dropped last partial batch."""
    cfg = DataConfig(root=tars, train_list=lists / "train.txt", batch_size=settings.sizes.batch, device="cpu",
                     device_id=None, num_threads=settings.workers, seed=1)
    figures = against_numpy(run_graph(cfg, "train"), "train", cfg)
    listed = Counter(label for _, label in read_file_list(lists / "train.txt"))
    seen = Counter(torch.cat([labels for _, labels in make_loader(cfg, "train")]).tolist())
    expected = sum(listed.values()) // cfg.batch_size * cfg.batch_size
    figures.update(epoch_images=sum(seen.values()), listed=sum(listed.values()))
    if sum(seen.values()) != expected or seen - listed:
        raise CheckFailed(f"a training epoch gave {sum(seen.values())} images (expected {expected}) or labels "
                          "not listed", figures)
    return Outcome(f"training: as NumPy's crops (largest difference {figures['raw_max_abs_diff']:.1g}); an epoch "
                   f"of {expected} of {figures['listed']} samples", figures)


def shards(record: Recorder, settings: Settings) -> None:
    paths = WorkPaths(Path(settings.work))
    work = paths.stage_dir("shards")
    work.mkdir(parents=True, exist_ok=True)
    tars, lists, source = work / "tars", work / "lists", paths.bench_lists256
    record.check("pack + prepare", pack_and_prepare, Stages(None, "selftest"), source, tars, lists, settings)
    if not record.passed("pack + prepare"):
        return
    record.check("val vs files", val_against_files, source, tars, lists, work, settings)
    record.check("train", train_on_shards, tars, lists, settings)
