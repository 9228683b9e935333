"""Checkpoints: weights_only loading, atomic writes, a full disk, and the one-line errors for bad files."""
from __future__ import annotations

import os
import random
import resource
import signal

import numpy as np
import pytest
import torch

from model.checkpoint import (BEST_NAME, CHECKPOINT_NAME, atomic_save, load_checkpoint, rng_state,
                              save_checkpoint, set_rng_state)
from pipeline.errors import InputError


def small_checkpoint(arch: str = "alexnet", classes: int = 3, fill: float = 0.0) -> dict:
    """A checkpoint dict with the real keys; a small fake fc8 keeps the files tiny."""
    state_dict = {"fc8.weight": torch.full((classes, 4), fill), "fc8.bias": torch.zeros(classes)}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.01, momentum=0.9)
    return {"epoch": 1, "epoch_step": 0, "step": 5, "arch": arch, "num_classes": classes, "state_dict": state_dict,
            "best_acc1": 50.0, "optimizer": optimizer.state_dict(), "scheduler": {"last_epoch": 1},
            "scaler": {}, "rng": rng_state(), "epoch_meter": None, "config": {"RunConfig": {"seed": 0, "out": "x"}}}


def test_saved_checkpoint_loads_with_weights_only_and_best_is_a_separate_file(tmp_path):
    save_checkpoint(small_checkpoint(fill=1.0), tmp_path, is_best=True)
    save_checkpoint(small_checkpoint(fill=2.0), tmp_path, is_best=False)
    latest = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    best = torch.load(tmp_path / BEST_NAME, weights_only=True)
    assert latest["state_dict"]["fc8.weight"][0, 0] == 2.0
    assert best["state_dict"]["fc8.weight"][0, 0] == 1.0  # the best stays the earlier one
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME, BEST_NAME]  # no temp files left
    assert load_checkpoint(tmp_path, arch="alexnet", num_classes=3)["step"] == 5  # a run folder works too


def test_rng_state_round_trip():
    saved = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_rng_state_of_an_older_checkpoint_still_restores():
    """Before 2026-11-22 "cuda" was a bare list of every GPU's state; such a checkpoint must still resume
    (here on a machine without CUDA: the CPU generators are restored, the GPU ones have nowhere to go)."""
    saved = rng_state()
    expected = torch.rand(3)
    old_format = {**saved, "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    set_rng_state(old_format, (torch.device("cpu"),))
    assert torch.equal(torch.rand(3), expected)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """A real failing write: the file-size limit makes the kernel refuse the write (EFBIG)."""
    save_checkpoint(small_checkpoint(fill=1.0), tmp_path, is_best=False)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    big = small_checkpoint(fill=3.0)
    big["state_dict"]["fc6.weight"] = torch.ones(1000, 1000)  # 4 MB, over the limit below
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        with pytest.raises(InputError, match="could not write .*previous checkpoint is intact"):
            save_checkpoint(big, tmp_path, is_best=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]


def test_atomic_save_failure_in_the_middle_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    atomic_save({"a": 1}, path)

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(InputError, match="No space left on device"):
        atomic_save({"a": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such checkpoint"),
    ("truncated", "not a readable checkpoint"),
    ("garbage", "not a readable checkpoint"),
    ("empty", "not a readable checkpoint"),
    ("bare_state_dict", "not a training checkpoint"),
    ("other_arch", "checkpoint of -a alexnet_owt, but this run is -a alexnet"),
    ("other_classes", "checkpoint has 5 classes, the class table has 3"),
    ("pickled_object", "not a readable checkpoint"),
])
def test_bad_checkpoints_give_one_clear_line(tmp_path, case, message):
    path = tmp_path / "ckpt.pth.tar"
    good = small_checkpoint()
    if case == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "garbage":
        path.write_bytes(os.urandom(2000))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "bare_state_dict":
        torch.save(good["state_dict"], path)
    elif case == "other_arch":
        torch.save(small_checkpoint(arch="alexnet_owt"), path)
    elif case == "other_classes":
        torch.save(small_checkpoint(classes=5), path)
    elif case == "pickled_object":
        torch.save({"epoch": 1, "arch": "alexnet", "state_dict": {}, "evil": InputError("x")}, path)
    with pytest.raises(InputError) as error:
        load_checkpoint(path, arch="alexnet", num_classes=3, for_resume=True)
    text = str(error.value)
    assert message in text and "\n" not in text and str(path) in text


def test_weights_without_optimizer_cannot_resume_but_can_be_evaluated(tmp_path):
    state = small_checkpoint()
    del state["optimizer"]
    torch.save(state, tmp_path / "w.pth")
    assert load_checkpoint(tmp_path / "w.pth")["arch"] == "alexnet"
    with pytest.raises(InputError, match="cannot resume"):
        load_checkpoint(tmp_path / "w.pth", for_resume=True)


def test_model_from_a_checkpoint_and_weights_that_do_not_fit(tmp_path):
    """The one way a trained network is rebuilt (predict, the pictures): same weights, eval mode; a mismatch is
    one InputError line naming the file."""
    from model.alexnet import build_model
    from model.checkpoint import model_from

    torch.manual_seed(0)
    trained = build_model("alexnet", 3)
    state = {**small_checkpoint(), "state_dict": trained.state_dict()}
    save_checkpoint(state, tmp_path, is_best=False)
    path = tmp_path / CHECKPOINT_NAME
    model = model_from(load_checkpoint(path), path)
    assert not model.training
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    save_checkpoint(small_checkpoint(), tmp_path, is_best=False)  # only a small fake fc8
    with pytest.raises(InputError) as error:
        model_from(load_checkpoint(path), path)
    assert str(error.value).startswith(f"{path}: its weights do not fit -a alexnet (") and "\n" not in str(error.value)


def test_full_disk_on_the_first_checkpoint_does_not_speak_of_a_previous_one(tmp_path):
    big = small_checkpoint()
    big["state_dict"]["fc6.weight"] = torch.ones(1000, 1000)  # 4 MB, over the limit below
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        with pytest.raises(InputError) as caught:
            save_checkpoint(big, tmp_path, is_best=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    message = str(caught.value)
    assert "could not write" in message and "previous checkpoint" not in message and "--resume" not in message
    assert "no checkpoint was written before" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_respect_the_umask_like_other_outputs(tmp_path, umask):
    previous = os.umask(umask)
    try:
        save_checkpoint(small_checkpoint(), tmp_path, is_best=True)
        with open(tmp_path / "metrics.jsonl", "w") as handle:  # how every other output is created
            handle.write("{}\n")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert (tmp_path / "metrics.jsonl").stat().st_mode & 0o777 == expected
    assert (tmp_path / CHECKPOINT_NAME).stat().st_mode & 0o777 == expected
    assert (tmp_path / BEST_NAME).stat().st_mode & 0o777 == expected


@pytest.mark.parametrize("with_pca", [True, False])
def test_a_run_records_its_statistics_and_class_table(tmp_path, monkeypatch, with_pca):
    """Every checkpoint holds the sha256 of the pca.json and mean image it was trained with (hashed here with
    hashlib) and the wnids in label order, as primitives (weights_only loading)."""
    from click.testing import CliRunner

    from model.train import main
    from tests.fake_data import install, write_tiny_lists
    from tests.statistics_files import mean_image_of, sha256, write_pca_json

    install(monkeypatch)
    lists = write_tiny_lists(tmp_path / "lists")
    (lists / "classes.tsv").write_text("0\tn09999999\tzebra\n1\tn00000001\taardvark\n")  # label order, not sorted
    pca = write_pca_json(tmp_path / "stats" / "pca.json") if with_pca else None
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                       "--epochs", "1", "--lr", "0.001", *(["--pca", str(pca)] if pca else [])])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    expected = {"pca": None, "pca_sha256": None, "mean_image": None, "mean_image_sha256": None}
    if with_pca:
        expected = {"pca": str(pca), "pca_sha256": sha256(pca), "mean_image": str(mean_image_of(pca)),
                    "mean_image_sha256": sha256(mean_image_of(pca))}
    assert state["statistics"] == expected
    assert state["classes"] == ["n09999999", "n00000001"]
