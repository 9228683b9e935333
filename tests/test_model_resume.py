"""--resume and -e take the checkpoint's settings (model/resume.py): what would break an exact continuation
is refused when given otherwise, learning-rate-like changes are applied and announced, and -e evaluates
with the inputs the checkpoint was trained on."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from model.alexnet import AlexNet
from model.checkpoint import save_checkpoint
from model.train import main
from tests.conftest import write_image_tree, write_lists
from tests.fake_data import install, write_tiny_lists
from tests.test_model_predict import SCALE, reference_probabilities

EVAL_LINE = re.compile(r"\(centre, (\d+) images\): loss ([\d.]+)")


def test_evaluate_uses_the_checkpoints_normalisation(tmp_path):
    """A meanstd checkpoint evaluated without --normalize: the loss is the one of meanstd inputs (computed
    here with PIL and NumPy), not of the command line's default (mean)."""
    root = tmp_path / "tree"
    written = write_image_tree(root, {"train": 1, "val": 2}, seed=2)
    lists = write_lists(root, written, tmp_path / "lists")
    torch.manual_seed(0)
    net = AlexNet(num_classes=3).eval()
    with torch.no_grad():
        net.fc8.weight.mul_(SCALE)
    state = {"epoch": 1, "step": 1, "arch": "alexnet", "num_classes": 3, "state_dict": net.state_dict(),
             "config": {"DataConfig": {"normalize": "meanstd", "pca": None, "crop": 224}}}
    save_checkpoint(state, tmp_path / "run", is_best=False)
    checkpoint = str(tmp_path / "run" / "checkpoint.pth.tar")
    common = ["--root", str(root), "--lists", str(lists), "-e", "--resume", checkpoint, "--no-dali", "--workers", "1"]
    result = CliRunner().invoke(main, common)
    assert result.exit_code == 0, result.output
    count, loss = EVAL_LINE.search(result.output).groups()
    labels = [int(line.split()[-1]) for line in (lists / "val.txt").read_text().splitlines()]
    expected = np.mean([-np.log(reference_probabilities(net, path)[label])
                        for path, label in zip(written["val"], labels)])
    assert int(count) == 6 and float(loss) == pytest.approx(expected, rel=1e-3)

    refused = CliRunner().invoke(main, [*common, "--normalize", "mean"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: -e --resume {checkpoint}: the run was trained with --normalize meanstd; --normalize "
                      "mean would feed it other inputs than it was trained on; drop the flag (-e uses the checkpoint's)"]


def run(tmp_path, *extra: str):
    lists = write_tiny_lists(tmp_path / "lists")
    return CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(lists), "--out", str(tmp_path / "run"),
                                     "--lr", "0.001", *extra])


@pytest.fixture
def first_epoch(tmp_path, monkeypatch):
    """One epoch of a run with -b 2 --seed 3 --lr 0.001 --epochs 1 (fake loaders)."""
    install(monkeypatch)
    result = run(tmp_path, "-b", "2", "--seed", "3", "--epochs", "1")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


@pytest.mark.parametrize("flags, was", [
    (["-b", "4"], "-b 2"),
    (["--seed", "0"], "--seed 3"),
    (["--no-dali"], "--dali"),
    (["--normalize", "meanstd"], "--normalize mean"),
])
def test_resume_refuses_settings_that_break_the_continuation(tmp_path, first_epoch, flags, was):
    before = (first_epoch / "checkpoint.pth.tar").read_bytes()
    result = run(tmp_path, "--resume", str(first_epoch), "--epochs", "2", *flags)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and "Traceback" not in result.output and len(errors) == 1
    assert errors[0].startswith(f"Error: --resume {first_epoch}: the run was trained with {was}; ")
    assert "would not continue it exactly" in errors[0]
    assert (first_epoch / "checkpoint.pth.tar").read_bytes() == before


def test_resume_keeps_the_runs_settings_and_applies_a_new_lr(tmp_path, first_epoch, monkeypatch):
    calls = install(monkeypatch)
    result = run(tmp_path, "--resume", str(first_epoch / "checkpoint.pth.tar"), "--epochs", "2", "--lr", "0.002")
    assert result.exit_code == 0, result.output
    assert f"resumed from {first_epoch / 'checkpoint.pth.tar'}: epoch 1 (step 1); kept the run's -b 2, --seed 3" \
        in result.output
    assert "resume: --lr 0.002: learning rate 0.001 -> 0.002" in result.output
    assert "resume: --epochs 2 (the run had 1)" in result.output
    train = [cfg for split, cfg in calls if split == "train"]
    assert [(cfg.batch_size, cfg.seed) for cfg in train] == [(2, 3 + 1)]  # epoch 1 of seed 3
    checkpoint = torch.load(first_epoch / "checkpoint.pth.tar", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.002
    assert checkpoint["config"]["OptimConfig"]["lr"] == 0.002


def test_evaluate_names_a_pca_json_that_is_gone_and_takes_a_copy(tmp_path, monkeypatch):
    import json
    import shutil

    from pipeline.constants import IMAGENET_MEAN_255, IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, IMAGENET_STD_255

    install(monkeypatch)
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({
        "eigval": list(IMAGENET_PCA_EIGVAL), "eigvec": [list(row) for row in IMAGENET_PCA_EIGVEC],
        "mean": [v / 255 for v in IMAGENET_MEAN_255], "std": [v / 255 for v in IMAGENET_STD_255]}))
    assert run(tmp_path, "--pca", str(stats), "--epochs", "1").exit_code == 0
    shutil.move(stats, tmp_path / "copy.json")
    lists = tmp_path / "lists"
    evaluate = ["--root", str(tmp_path), "--lists", str(lists), "-e", "--resume", str(tmp_path / "run")]
    gone = CliRunner().invoke(main, evaluate)
    assert gone.exit_code == 1 and "Traceback" not in gone.output
    assert f"Error: the checkpoint was trained with --pca {stats}, which is gone; pass --pca with the path of a copy" \
        in gone.output.splitlines()
    copied = CliRunner().invoke(main, [*evaluate, "--pca", str(tmp_path / "copy.json")])
    assert copied.exit_code == 0 and "(centre, 2 images)" in copied.output, copied.output


def test_a_new_wd_on_resume_decays_the_weights_and_leaves_the_biases_undecayed(tmp_path, first_epoch, monkeypatch):
    """Biases are not decayed (model/optim.py); a --wd given on resume changes the weights' group only."""
    install(monkeypatch)
    result = run(tmp_path, "--resume", str(first_epoch), "--epochs", "2", "--wd", "0.001")
    assert result.exit_code == 0, result.output
    assert "resume: --wd 0.001 (the run had 0.0005)" in result.output
    groups = torch.load(first_epoch / "checkpoint.pth.tar", weights_only=True)["optimizer"]["param_groups"]
    assert [group["weight_decay"] for group in groups] == [0.001, 0.0]


@pytest.mark.parametrize("flags, was", [
    (["--lighting-scale", "eigval"], "--lighting-scale stdev"),
    (["--lighting-std", "0"], "--lighting-std 0.1"),
    (["--lighting-rescale"], "--lighting-rescale off"),
])
def test_resume_refuses_another_lighting(tmp_path, first_epoch, flags, was):
    """The lighting decides the augmentations of the remaining steps: kept like -b and --seed."""
    result = run(tmp_path, "--resume", str(first_epoch), "--epochs", "2", *flags)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert errors[0].startswith(f"Error: --resume {first_epoch}: the run was trained with {was}; ")


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error")]


def test_a_replaced_pca_json_is_refused_unless_accepted(tmp_path, monkeypatch):
    """compute-pca --overwrite puts other statistics under the run's path: -e and --resume refuse them in one line
    naming both (what the checkpoint recorded, what is there now); a copy of the original is accepted wherever it
    is; --accept-pca-change goes on with a note."""
    import shutil

    from tests.statistics_files import described, write_pca_json

    install(monkeypatch)
    stats = write_pca_json(tmp_path / "stats" / "pca.json")
    assert run(tmp_path, "--pca", str(stats), "--epochs", "1").exit_code == 0
    trained_with = described(stats)
    shutil.copytree(stats.parent, tmp_path / "copy")
    for side in stats.parent.glob("*.npy"):  # as compute-pca --overwrite does: a new pair, the old side file gone
        side.unlink()
    write_pca_json(stats, shift=0.01)
    checkpoint = tmp_path / "run" / "checkpoint.pth.tar"
    before = checkpoint.read_bytes()
    lists = tmp_path / "lists"
    evaluate = ["--root", str(tmp_path), "--lists", str(lists), "-e", "--resume", str(tmp_path / "run")]
    for source, result in ((f"-e --resume {tmp_path / 'run'}", CliRunner().invoke(main, evaluate)),
                           (f"--resume {tmp_path / 'run'}", run(tmp_path, "--resume", str(tmp_path / "run"),
                                                                "--epochs", "2"))):
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert error_lines(result) == [
            f"Error: {source}: other colour statistics than the run's: trained with {trained_with}, now "
            f"{described(stats)}; pass --pca with the file it was trained with, or --accept-pca-change to go on "
            "with these"]
    assert checkpoint.read_bytes() == before
    copy = CliRunner().invoke(main, [*evaluate, "--pca", str(tmp_path / "copy" / "pca.json")])
    assert copy.exit_code == 0 and "(centre, 2 images)" in copy.output, copy.output
    accepted = CliRunner().invoke(main, [*evaluate, "--accept-pca-change"])
    assert accepted.exit_code == 0 and "(centre, 2 images)" in accepted.output, accepted.output
    assert [line for line in accepted.output.splitlines() if line.startswith("note")] == [
        f"note: -e --resume {tmp_path / 'run'}: --accept-pca-change: going on with other colour statistics than "
        f"the run's: trained with {trained_with}, now {described(stats)}"]


def test_lists_with_other_classes_are_refused(tmp_path, first_epoch):
    """Two classes swapped (same count): --resume and -e name the first label that differs."""
    table = tmp_path / "lists" / "classes.tsv"
    table.write_text("0\tn2\ttwo\n1\tn1\tone\n")
    before = (first_epoch / "checkpoint.pth.tar").read_bytes()
    common = ["--root", str(tmp_path), "--lists", str(tmp_path / "lists"), "--resume", str(first_epoch),
              "--out", str(first_epoch)]
    evaluate = CliRunner().invoke(main, [*common, "-e"])
    resumed = CliRunner().invoke(main, [*common, "--epochs", "2"])
    for source, result in ((f"-e --resume {first_epoch}", evaluate), (f"--resume {first_epoch}", resumed)):
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert error_lines(result) == [f"Error: {source}: {table} labels other classes than the run was trained on: "
                                       f"label 0 is n1 in the checkpoint, n2 in {table}; use the lists the run was "
                                       "trained with"]
    assert (first_epoch / "checkpoint.pth.tar").read_bytes() == before


def test_a_checkpoint_from_before_the_records_is_accepted_with_a_note(tmp_path, first_epoch, monkeypatch):
    install(monkeypatch)
    path = first_epoch / "checkpoint.pth.tar"
    state = torch.load(path, weights_only=True)
    del state["statistics"], state["classes"]
    torch.save(state, path)
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(tmp_path / "lists"), "-e",
                                       "--resume", str(path)])
    assert result.exit_code == 0 and "(centre, 2 images)" in result.output, result.output
    assert [line for line in result.output.splitlines() if line.startswith("note")] == [
        f"note: {path} was written before checkpoints recorded the sha256 of its pca.json and its class table: "
        "not checked"]
