"""Resuming mid-epoch from DALI's reader state (model/reader_state.py): a loader restored after k batches yields
exactly the batches (images and labels) and the count that reading on would have, from files and from shards;
when the state cannot be used the run reads the trained batches again and says why."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model import parallel
from model.reader_state import list_digest, resumed_loader, saved_state, unusable
from pipeline.config import DataConfig
from pipeline.errors import ReaderStateRefused
from pipeline.loader import make_loader
from tests.conftest import write_image_tree, write_lists
from tests.shard_data import prepared_shards


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, DataConfig]:
    """The same kind of training set as files (12 a class, 3 classes) and as shards (4 tars of 9)."""
    base = tmp_path_factory.mktemp("reader_state")
    written = write_image_tree(base / "tree", {"train": 12, "val": 1}, seed=2)
    lists = write_lists(base / "tree", written, base / "lists")
    files = DataConfig(root=base / "tree", train_list=lists / "train.txt", val_list=lists / "val.txt", batch_size=4,
                       device="cpu", device_id=None, num_threads=1, seed=7)
    prepared_shards(base / "shards", train_tars=4, per_tar=9, val_tars=1)
    shards = replace(files, root=base / "shards" / "wds", train_list=base / "shards" / "lists" / "train.txt",
                     val_list=base / "shards" / "lists" / "val.txt")
    return {"files": files, "shards": shards}


def stored(local, states, epoch, epoch_step, cfg):
    """saved_state as write_checkpoint calls it, with the digest of cfg's training list."""
    return saved_state(local, states, epoch, epoch_step, cfg.device, list_digest(cfg.train_list))


def why(saved, epoch, epoch_step, cfg, world_size, reread):
    """unusable as resumed_loader calls it, with the digest of cfg's training list as it is now."""
    return unusable(saved, epoch, epoch_step, cfg, world_size, reread, list_digest(cfg.train_list))


def state_after(cfg, batches: int) -> str:
    """The reader state of a fresh training loader of cfg after it has yielded `batches` batches."""
    loader = make_loader(cfg, "train")
    read = iter(loader)
    for _ in range(batches):
        next(read)
    return loader.checkpoint()


def read_all(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in batches]


@pytest.mark.parametrize("source", ["files", "shards"])
def test_a_restored_loader_gives_the_batches_reading_on_would(sources, source):
    cfg = sources[source]
    loader = make_loader(cfg, "train")
    total = len(loader)
    assert total == 9  # 36 images in batches of 4
    batches = iter(loader)
    first = read_all(next(batches) for _ in range(3))
    state = loader.checkpoint()  # taken with batches prefetched past the third: DALI accounts for them
    rest = read_all(batches)
    assert len(first) + len(rest) == total
    restored = make_loader(cfg, "train", checkpoint=state)
    again = read_all(restored)
    assert len(again) == total - 3
    for (images, labels), (images2, labels2) in zip(rest, again):
        assert torch.equal(labels, labels2) and torch.equal(images, images2)
    # a fresh loader of the same seed reads the same epoch from its start: the state is what moved on
    assert all(torch.equal(a[1], b[1]) for a, b in zip(read_all(make_loader(cfg, "train")), first + rest))


def test_validation_loaders_have_no_state_and_the_pil_baseline_none(sources):
    cfg = sources["files"]
    assert make_loader(cfg, "val").checkpoint() is None
    assert make_loader(replace(cfg, backend="pil", num_threads=0), "train").checkpoint() is None


def test_a_state_dali_cannot_read_is_refused_with_its_reason(sources):
    with pytest.raises(ReaderStateRefused):
        make_loader(sources["files"], "train", checkpoint="not a checkpoint")


CTX = parallel.init_parallel("none", "cpu", None)


def test_resumed_loader_falls_back_to_reading_and_says_why(sources, capsys):
    cfg = sources["files"]
    saved = stored("x", ["x"], 2, 3, cfg)
    loader, restored = resumed_loader(cfg, CTX, saved, epoch=2, skip=3, reread=False,
                                      digest=list_digest(cfg.train_list))
    assert not restored and len(loader) == 9  # a fresh loader: the caller reads the 3 batches again
    assert "resuming epoch 2 at batch 3: reading the 3 trained batches again: DALI could not restore" in capsys.readouterr().err
    good = state_after(cfg, 3)
    saved = stored(good, [good], 2, 3, cfg)
    loader, restored = resumed_loader(cfg, CTX, saved, epoch=2, skip=3, reread=False,
                                      digest=list_digest(cfg.train_list))
    assert restored and loader.batches_left() == 6 and sum(1 for _ in loader) == 6
    assert "restored DALI's reader state: nothing decoded again" in capsys.readouterr().err
    _, restored = resumed_loader(cfg, CTX, saved, epoch=2, skip=3, reread=True,
                                 digest=list_digest(cfg.train_list))
    assert not restored and "again: --resume-reread" in capsys.readouterr().err


def test_a_state_of_another_training_list_is_not_used(sources, tmp_path, capsys):
    """DALI would restore the old list's position and epoch length on the new list without a word."""
    cfg = sources["files"]
    shorter = tmp_path / "train.txt"
    shorter.write_text("".join(cfg.train_list.read_text().splitlines(keepends=True)[:24]))
    old = replace(cfg, train_list=shorter)
    state = state_after(old, 2)
    saved = stored(state, [state], 0, 2, old)
    loader, restored = resumed_loader(cfg, CTX, saved, epoch=0, skip=2, reread=False,
                                      digest=list_digest(cfg.train_list))
    assert not restored and len(loader) == 9
    assert "another training list than" in capsys.readouterr().err
    # and were the digest to match, the restored reader's own count would give it away
    saved["train_list_sha256"] = list_digest(cfg.train_list)
    loader, restored = resumed_loader(cfg, CTX, saved, epoch=0, skip=2, reread=False,
                                      digest=list_digest(cfg.train_list))
    assert not restored and "batches left where the epoch has 7" in capsys.readouterr().err


def test_why_a_saved_state_is_not_used(tmp_path):
    listed = tmp_path / "t"
    listed.write_text("a.JPEG 0\n")
    cfg = DataConfig(root=Path("r"), train_list=listed, val_list=None, device="cpu")
    saved = stored("s", ["s", "s"], 1, 5, cfg)
    assert why(saved, 1, 5, cfg, 2, reread=False) is None
    assert "2 processes, this run has 1" in why(saved, 1, 5, cfg, 1, reread=False)
    assert "a cpu pipeline, this run builds a gpu one" in why(saved, 1, 5, replace(cfg, device="gpu"), 2, False)
    assert "epoch 1 batch 5" in why(saved, 1, 6, cfg, 2, reread=False)
    assert "PIL baseline" in why(saved, 1, 5, replace(cfg, backend="pil"), 2, reread=False)
    assert "stores no DALI reader state" in why(None, 1, 5, cfg, 2, reread=False)
    listed.write_text("b.JPEG 0\n")
    assert "another training list" in why(saved, 1, 5, cfg, 2, reread=False)
    del saved["train_list_sha256"]
    assert "records no training list" in why(saved, 1, 5, cfg, 2, reread=False)
    # nothing is stored at an epoch's start, nor when one rank has no state
    assert stored("s", ["s"], 1, 0, cfg) is None and stored("s", ["s", None], 1, 5, cfg) is None
    # a list that is gone: no digest, so nothing is stored, and a resume reads again (the loader then names it)
    gone = replace(cfg, train_list=tmp_path / "gone.txt")
    assert list_digest(gone.train_list) == "" and stored("s", ["s"], 1, 5, gone) is None
    assert "another training list" in why(saved_state("s", ["s"], 1, 5, "cpu", "x"), 1, 5, gone, 1, False)


def test_a_state_taken_at_the_epochs_end_gives_an_empty_rest(sources):
    """A stop on the epoch's last batch stores the state after it: the resumed epoch has nothing left to read."""
    cfg = sources["files"]
    restored = make_loader(cfg, "train", checkpoint=state_after(cfg, len(make_loader(cfg, "train"))))
    assert read_all(restored) == []


@pytest.mark.parametrize("source", ["files", "shards"])
def test_tracking_the_state_changes_no_batch(sources, source, monkeypatch):
    """DALI warns that shuffle_after_epoch "might shuffle samples differently" with checkpointing on: each epoch
    has its own pipeline here, so a whole epoch's images and labels are those of a pipeline without it."""
    import pipeline.graphs as graphs

    cfg = sources[source]
    tracked = read_all(make_loader(cfg, "train"))
    plain_pipeline = graphs.conditional_pipeline

    def untracked(define, **args):
        args["enable_checkpointing"] = False
        return plain_pipeline(define, **args)

    monkeypatch.setattr(graphs, "conditional_pipeline", untracked)
    plain = make_loader(cfg, "train")
    assert graphs.tracks_state(plain.split) and not plain._iterator._enable_checkpointing  # really built without it
    untracked_batches = read_all(plain)
    assert len(tracked) == len(untracked_batches) == 9
    for (images, labels), (images2, labels2) in zip(tracked, untracked_batches):
        assert torch.equal(labels, labels2) and torch.equal(images, images2)
