"""`imagenet-tools ablate`: the runs it starts (same seed, data and budget; one switch each), the differences
and the paper's claims it reports, going on after an interruption, its one-line errors; and one real run.

Most tests replace the subprocesses with `FakeStages`, which does what `model.train` leaves behind (a
checkpoint with its position, metrics.jsonl, the `-e --ten-crop` result lines) with errors the test chose,
so the report is checked against numbers known beforehand. The last test runs `model.train` for real.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from model.train import main as train_main
from tests.conftest import write_image_tree, write_lists
from tests.shard_data import prepared_shards
from tools import ablate
from tools.ablation import run as ablation_run
from tools.shared.stages import Stages

# Chosen errors (centre top-1, top-5, 10-crop top-1, top-5) of each run, in %.
ERRORS = {"baseline": (40.0, 12.5, 37.5, 10.0), "no-lrn": (43.33, 13.0, 38.25, 12.5),
          "no-lighting": (39.5, 14.75, 40.0, 9.0), "no-dropout": (46.0, 12.5, 44.0, 11.25),
          "one-gpu": (41.0, 13.5, 39.0, 10.5), "plain-pool": (40.25, 12.0, 37.0, 10.25)}
PAPER = {"no-lrn": (1.4, 1.2), "no-lighting": (1.0, None), "no-dropout": (None, None), "one-gpu": (1.7, 1.2),
         "plain-pool": (0.4, 0.3)}


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


class FakeStages(Stages):
    """Stages whose `model.train` processes are replaced by what a real one leaves: training makes a
    checkpoint at the budget (or at `short[variant]` epochs, like a run stopped by a signal; with the variant
    in `fail` it then exits 1), evaluation prints the ERRORS lines. Every call is recorded in `calls`
    (variant, model.train's arguments)."""

    calls: list = []
    short: dict = {}
    fail: set = set()
    refuse: set = set()  # variants whose model.train exits 1 at once, writing nothing (a bad flag)

    def execute(self, argv: list[str], timeout: float | None = None) -> tuple[int, list[str], bool, None]:
        args = argv[3:]  # python -m model.train ...
        folder = Path(option(args, "--out"))
        variant = folder.name
        type(self).calls.append((variant, args))
        if "-e" in args:
            c1, c5, t1, t5 = ERRORS[variant]
            ckpt = option(args, "--resume")
            lines = [f"{ckpt} (centre, 30 images): loss 1.5000  top-1 error {c1:.2f} %  top-5 error {c5:.2f} %\n",
                     f"{ckpt} (10-crop, 30 images): loss 1.4000  top-1 error {t1:.2f} %  top-5 error {t5:.2f} %\n"]
            return 0, lines, False, None
        if variant in self.refuse:
            return 1, ["Error: --normalize image needs a pca.json with a mean image\n"], False, None
        epochs = self.short.get(variant, int(option(args, "--epochs")))
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": epochs, "epoch_step": 0, "step": 3 * epochs, "arch": "alexnet", "state_dict": {}},
                   folder / "checkpoint.pth.tar")
        with open(folder / "metrics.jsonl", "a") as metrics:
            metrics.write(json.dumps({"epoch": epochs - 1, "train_top1_err": 20.0 + epochs, "train_top5_err": 1.0})
                          + "\n")
        if variant in self.fail:
            return 1, ["epoch 0: ...\n", "Error: out of memory\n"], False, None
        return 0, ["epoch line\n"], False, None


@pytest.fixture
def fake(monkeypatch, tmp_path):
    FakeStages.calls, FakeStages.short, FakeStages.fail, FakeStages.refuse = [], {}, set(), set()
    monkeypatch.setattr(ablation_run, "Stages", FakeStages)
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.txt", "val.txt", "classes.tsv"):
        (lists / name).write_text("")
    (tmp_path / "root").mkdir()
    return tmp_path


def invoke(tmp_path: Path, *args: str):
    base = ["--root", str(tmp_path / "root"), "--lists", str(tmp_path / "lists"), "--out", str(tmp_path / "abl"),
            "--device", "cpu"]
    return CliRunner().invoke(ablate.main, base + list(args))


def trained(calls) -> list[str]:
    return [variant for variant, args in calls if "-e" not in args]


def test_every_run_has_the_same_flags_but_its_switch(fake):
    result = invoke(fake, "--epochs", "2", "-b", "16", "--lr", "0.005", "--seed", "7", "--no-dali", "--init",
                    "kaiming", "--normalize", "meanstd", "--max-steps", "50", "--workers", "3", "--channels-last")
    assert result.exit_code == 0, result.output
    train = {variant: args for variant, args in FakeStages.calls if "-e" not in args}
    assert list(train) == ["baseline", "one-gpu", "no-lrn", "plain-pool", "no-dropout", "no-lighting"]
    switches = {"one-gpu": ["--towers", "1"], "no-lrn": ["--no-lrn"], "plain-pool": ["--pool", "plain"],
                "no-dropout": ["--no-dropout"], "no-lighting": ["--lighting-std", "0"]}
    baseline = train["baseline"]
    for variant, args in train.items():
        same = [a.replace(f"/abl/{variant}", "/abl/baseline") for a in args]
        assert same == baseline + switches.get(variant, []), variant
    # What model.train's own parser makes of the baseline's command: the flags given, nothing else.
    params = train_main.make_context("model.train", list(baseline)).params
    assert (params["batch_size"], params["lr"], params["seed"], params["dali"], params["init"]) == (
        16, 0.005, 7, False, "kaiming")
    assert (params["normalize"], params["max_steps"], params["workers"], params["channels_last"]) == (
        "meanstd", 50, 3, True)
    assert params["epochs"] == 2 and params["device"] == "cpu" and params["resume"] is None
    assert (params["momentum"], params["wd"], params["lrn"], params["towers"]) == (0.9, 5e-4, None, None)
    for variant, args in FakeStages.calls:
        if "-e" in args:
            params = train_main.make_context("model.train", list(args)).params
            assert params["evaluate"] and params["ten_crop"]
            assert params["resume"] == str(fake / "abl" / variant / "checkpoint.pth.tar")
            # Scored as trained: the PIL baseline's decoder and resize, batch and workers as given.
            assert (params["dali"], params["batch_size"], params["workers"]) == (False, 16, 3)


def test_report_differences_and_the_papers_claims(fake):
    result = invoke(fake, "--epochs", "1", "--variants", "no-lrn,no-lighting,no-dropout")
    assert result.exit_code == 0, result.output
    report = json.loads((fake / "abl" / "ablation.json").read_text())
    runs = {run["variant"]: run for run in report["runs"]}
    assert list(runs) == ["baseline", "no-lrn", "no-lighting", "no-dropout"]
    assert report["plan"]["epochs"] == 1 and report["plan"]["seed"] == 0 and report["images"] == 30
    base = runs["baseline"]["evaluation"]
    for name, run in runs.items():
        ev = run["evaluation"]
        assert (ev["centre"]["top1_err"], ev["centre"]["top5_err"], ev["10-crop"]["top1_err"],
                ev["10-crop"]["top5_err"]) == ERRORS[name]
        assert run["train_top1_err"] == 21.0 and run["epoch"] == 1
        if name == "baseline":
            assert run["difference"] is None and run["paper"] is None
            continue
        for view in ("centre", "10-crop"):
            for err in ("top1", "top5"):
                expected = ev[view][f"{err}_err"] - base[view][f"{err}_err"]
                assert run["difference"][view][err] == pytest.approx(expected, abs=1e-9), (name, view, err)
        assert (run["paper"]["top1"], run["paper"]["top5"]) == PAPER[name]
    assert runs["no-lighting"]["paper"]["at_least"] and "overfitting" in runs["no-dropout"]["paper"]["words"]
    assert report["ten_crop"]["measured"] == {"top1": pytest.approx(-2.5), "top5": pytest.approx(-2.5)}
    assert (report["ten_crop"]["paper"]["top1"], report["ten_crop"]["paper"]["top5"]) == (-1.5, -1.3)
    # 40 % and 12.5 % of 30 images: sqrt(0.4 * 0.6 / 30) = 8.94 points, sqrt(0.125 * 0.875 / 30) = 6.04
    assert report["standard_error"] == {"top1": pytest.approx(8.94, abs=0.005), "top5": pytest.approx(6.04, abs=0.005)}
    md = (fake / "abl" / "ablation.md").read_text()
    assert "| no-lrn | `--no-lrn` | §3.3 | 43.33 / 13.00 | 38.25 / 12.50 | +3.33 / +0.50 | +0.75 / +2.50 | +1.4 / +1.2 |" in md
    assert "| no-lighting | `--lighting-std 0` | §4.1 | 39.50 / 14.75 | 40.00 / 9.00 | -0.50 / +2.25 | +2.50 / -1.00 | > +1.0 / – |" in md
    assert "![the differences beside the paper's](ablation.png)" in md
    with Image.open(fake / "abl" / "ablation.png") as png:
        assert png.format == "PNG" and png.size[0] > 400
    assert result.stdout.splitlines()[-1].startswith("wrote ")


def test_a_finished_variant_is_not_run_again(fake):
    assert invoke(fake, "--epochs", "1", "--variants", "no-lrn").exit_code == 0
    first = len(FakeStages.calls)
    again = invoke(fake, "--epochs", "1", "--variants", "no-lrn,plain-pool")
    assert again.exit_code == 0, again.output
    assert [variant for variant, _ in FakeStages.calls[first:]] == ["plain-pool", "plain-pool"]
    assert "[1/3] baseline: done before (centre top-1 error 40.00 %), kept" in again.output
    runs = json.loads((fake / "abl" / "ablation.json").read_text())["runs"]
    assert [run["variant"] for run in runs] == ["baseline", "no-lrn", "plain-pool"]


def test_an_interrupted_variant_continues_from_its_checkpoint(fake):
    FakeStages.fail = {"no-lrn"}  # fails after its first epoch's checkpoint
    FakeStages.short = {"no-lrn": 1}
    failed = invoke(fake, "--epochs", "2", "-b", "8", "--variants", "no-lrn,no-dropout")
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert failed.output.strip().splitlines()[-1] == (
        f"Error: ablation stage '[2/3] no-lrn: train' failed (exit 1): out of memory; see "
        f"{fake / 'abl' / 'ablation.log'}; run the same command again to continue (finished variants are kept)")
    assert trained(FakeStages.calls) == ["baseline", "no-lrn"]
    assert not (fake / "abl" / "no-lrn" / "ablation_result.json").exists()
    FakeStages.calls, FakeStages.fail, FakeStages.short = [], set(), {}
    again = invoke(fake, "--epochs", "2", "-b", "8", "--variants", "no-lrn,no-dropout")
    assert again.exit_code == 0, again.output
    assert [variant for variant, _ in FakeStages.calls] == ["no-lrn", "no-lrn", "no-dropout", "no-dropout"]
    resumed = FakeStages.calls[0][1]
    assert option(resumed, "--resume") == str(fake / "abl" / "no-lrn") and "--no-lrn" in resumed
    assert option(resumed, "--batch-size") == "8" and option(resumed, "--epochs") == "2"
    assert "[2/3] no-lrn: train, continued from epoch 1, 0 batches into it, step 3" in again.output


def test_a_variant_trained_but_not_evaluated_is_only_evaluated(fake):
    assert invoke(fake, "--epochs", "1", "--variants", "no-dropout").exit_code == 0
    (fake / "abl" / "no-dropout" / "ablation_result.json").unlink()  # as if killed during its evaluation
    FakeStages.calls = []
    again = invoke(fake, "--epochs", "1", "--variants", "no-dropout")
    assert again.exit_code == 0, again.output
    assert [(variant, "-e" in args) for variant, args in FakeStages.calls] == [("no-dropout", True)]
    assert "no-dropout: trained before (epoch 1, 0 batches into it, step 3), not trained again" in again.output


def test_a_run_stopped_short_of_its_budget_is_not_evaluated(fake):
    FakeStages.short = {"baseline": 1}  # model.train exited 0 after a signal, at epoch 1 of 3
    result = invoke(fake, "--epochs", "3", "--variants", "no-lrn")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: baseline: the training stopped at epoch 1, 0 batches into it, step 3, short of --epochs 3; "
        "run the same command again to continue (finished variants are kept)")
    assert [("-e" in args) for _, args in FakeStages.calls] == [False]


@pytest.mark.parametrize("args,words", [
    (["--variants", "no-lrn,wings"], "--variants: unknown variant 'wings'; the variants are one-gpu, no-lrn"),
    (["--variants", "baseline,no-lrn"], "--variants: the baseline is always trained"),
    (["--variants", "no-lrn,no-lrn"], "--variants: no-lrn is named twice"),
    (["--variants", " , "], "--variants ' , ': name at least one of"),
    (["--pca", "/nonexistent/pca.json"], "--pca /nonexistent/pca.json: no such file"),
    (["--device", "tpu"], "unknown device 'tpu': use auto, cpu, cuda or cuda:N"),  # before the plan is written
])
def test_bad_input_is_one_line(fake, args, words):
    result = invoke(fake, "--epochs", "1", *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {words}"), result.output
    assert FakeStages.calls == [] and not (fake / "abl").exists()


def test_inputs_and_out_are_checked_before_any_run(fake):
    (fake / "lists" / "val.txt").unlink()
    result = invoke(fake, "--epochs", "1")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: --lists {fake / 'lists'}: no val.txt; write the lists with "
        f"`imagenet-tools prepare ROOT --out {fake / 'lists'}`"]
    (fake / "lists" / "val.txt").write_text("")
    (fake / "afile").write_text("a file")
    result = invoke(fake, "--epochs", "1", "--out", str(fake / "afile" / "abl"))  # the last --out counts
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: --out {fake / 'afile' / 'abl'}: {fake / 'afile'} is a file, not a folder; choose another --out"]
    assert FakeStages.calls == []


def test_other_settings_on_the_same_out_are_refused(fake):
    assert invoke(fake, "--epochs", "1", "--variants", "no-lrn", "-b", "16").exit_code == 0
    calls = len(FakeStages.calls)
    for args, words in ((["-b", "32"], "holds an ablation run with --batch-size 16; this command has --batch-size 32"),
                        ([], "holds an ablation run with --batch-size 16; this command has --batch-size 128"),
                        (["-b", "16", "--epochs", "2"], "with --epochs 1; this command has --epochs 2"),
                        (["-b", "16", "--no-dali"], "with --dali; this command has --no-dali")):
        result = invoke(fake, "--epochs", "1", "--variants", "no-lrn", *args)
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert words in result.output, result.output
    # How a run runs may change between the commands of one ablation: device, threads, precision.
    assert invoke(fake, "--epochs", "1", "--variants", "no-lrn", "-b", "16", "--workers", "5", "--amp",
                  "bf16").exit_code == 0
    assert len(FakeStages.calls) == calls


def test_settings_may_change_until_a_run_has_a_checkpoint(fake):
    FakeStages.refuse = {"baseline"}
    first = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--normalize", "image")
    assert first.exit_code == 1 and "failed (exit 1): --normalize image needs a pca.json" in first.output
    FakeStages.refuse = set()
    again = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--normalize", "mean")
    assert again.exit_code == 0, again.output
    assert json.loads((fake / "abl" / "ablation_plan.json").read_text())["normalize"] == "mean"


def test_runs_without_a_plan_are_not_taken_over(fake):
    (fake / "abl" / "no-lrn").mkdir(parents=True)
    torch.save({"epoch": 1}, fake / "abl" / "no-lrn" / "checkpoint.pth.tar")
    result = invoke(fake, "--epochs", "1")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: --out {fake / 'abl'} holds runs (no-lrn) but no ablation_plan.json, so their settings are "
        "unknown; choose another --out"]


def test_other_statistics_on_the_same_out_are_refused_unless_accepted(fake):
    """The plan records the sha256 of the pca.json and mean image: the same path with other statistics is refused
    in one line naming both, a copy elsewhere with the same bytes is taken, --accept-pca-change goes on (and
    passes the flag to model.train, whose checkpoints record the old statistics)."""
    import shutil

    from tests.statistics_files import described, mean_image_of, sha256, write_pca_json

    stats = write_pca_json(fake / "stats" / "pca.json")
    FakeStages.short = {"no-lrn": 0}  # stopped before its budget: the next command continues it
    first = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--pca", str(stats))
    assert first.exit_code == 1, first.output
    plan = json.loads((fake / "abl" / "ablation_plan.json").read_text())
    assert plan["statistics"] == {"pca": str(stats), "pca_sha256": sha256(stats),
                                  "mean_image": str(mean_image_of(stats)),
                                  "mean_image_sha256": sha256(mean_image_of(stats))}
    trained_with = described(stats)
    shutil.copytree(stats.parent, fake / "copy")
    mean_image_of(stats).unlink()
    write_pca_json(stats, shift=0.01)
    calls = len(FakeStages.calls)
    refused = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--pca", str(stats))
    assert refused.exit_code == 1 and refused.output.strip().splitlines() == [
        f"Error: --out {fake / 'abl'} holds an ablation run with other colour statistics than the run's: trained "
        f"with {trained_with}, now {described(stats)}; pass --pca with the file it was trained with, or "
        "--accept-pca-change to go on with these"]
    assert len(FakeStages.calls) == calls
    FakeStages.short = {}
    copy = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--pca", str(fake / "copy" / "pca.json"))
    assert copy.exit_code == 0, copy.output
    assert "--accept-pca-change" not in FakeStages.calls[calls][1]
    (fake / "abl" / "no-lrn" / "ablation_result.json").unlink()  # evaluate it again, with the other statistics
    accepted = invoke(fake, "--epochs", "1", "--variants", "no-lrn", "--pca", str(stats), "--accept-pca-change")
    assert accepted.exit_code == 0, accepted.output
    assert f"note: --out {fake / 'abl'}: --accept-pca-change: going on with other colour statistics than the run's: " \
           f"trained with {described(fake / 'copy' / 'pca.json')}, now {described(stats)}" in accepted.output
    (variant, args), = FakeStages.calls[calls + 2:]
    assert variant == "no-lrn" and "-e" in args and "--accept-pca-change" in args


def test_a_plan_from_before_the_statistics_were_recorded_is_accepted_with_a_note(fake):
    assert invoke(fake, "--epochs", "1", "--variants", "no-lrn").exit_code == 0
    path = fake / "abl" / "ablation_plan.json"
    plan = json.loads(path.read_text())
    del plan["statistics"]
    path.write_text(json.dumps(plan))
    again = invoke(fake, "--epochs", "1", "--variants", "no-lrn")
    assert again.exit_code == 0, again.output
    assert f"note: {path} was written before ablation plans recorded the sha256 of their pca.json: not checked" \
        in again.output.splitlines()
    assert json.loads(path.read_text())["statistics"]["pca_sha256"] is None  # recorded from now on


@pytest.mark.slow
def test_real_runs_on_a_tiny_tree(tmp_path):
    """model.train for real (1 step each): the baseline and no-dropout, evaluated; a second command trains nothing."""
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 2, "val": 1}), tmp_path / "lists")
    out = tmp_path / "abl"
    args = ["--root", str(root), "--lists", str(lists), "--out", str(out), "--epochs", "1", "--max-steps", "1",
            "-b", "2", "--workers", "1", "--init", "kaiming", "--normalize", "meanstd", "--device", "cpu",
            "--variants", "no-dropout"]
    result = CliRunner().invoke(ablate.main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ablation.json").read_text())
    base, variant = report["runs"]
    assert (base["variant"], variant["variant"], variant["flags"]) == ("baseline", "no-dropout", ["--no-dropout"])
    for run in (base, variant):
        assert run["evaluation"]["centre"]["images"] == 3 and run["evaluation"]["10-crop"]["images"] == 3
        assert run["step"] == 1
        saved = torch.load(out / run["variant"] / "checkpoint.pth.tar", weights_only=True)
        assert saved["net"]["dropout"] is (run["variant"] == "baseline")
        assert saved["config"]["RunConfig"]["seed"] == 0 and saved["config"]["DataConfig"]["batch_size"] == 2
    # The two runs started from the same weights (same seed); one step later they differ (no dropout).
    for view in ("centre", "10-crop"):
        for err in ("top1", "top5"):
            measured = variant["evaluation"][view][f"{err}_err"] - base["evaluation"][view][f"{err}_err"]
            assert variant["difference"][view][err] == pytest.approx(measured, abs=1e-9)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.pth.tar")}
    again = CliRunner().invoke(ablate.main, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.pth.tar")} == mtimes
    assert "model.train" not in again.output and again.output.count("done before") == 2
    assert json.loads((out / "ablation.json").read_text())["runs"] == report["runs"]
    assert os.path.getsize(out / "ablation.png") > 0


@pytest.mark.slow
def test_real_runs_on_shards(tmp_path):
    """model.train for real on prepare's lists of webdataset tars (1 step each): trained and scored on the shards'
    3 validation samples, the labels of their .cls (three digits)."""
    prepared_shards(tmp_path, train_tars=1, per_tar=3, val_tars=1, labels=3, label_offset=100)
    out = tmp_path / "abl"
    args = ["--root", str(tmp_path / "wds"), "--lists", str(tmp_path / "lists"), "--out", str(out), "--epochs", "1",
            "--max-steps", "1", "-b", "2", "--workers", "1", "--init", "kaiming", "--normalize", "meanstd",
            "--device", "cpu", "--variants", "no-dropout"]
    result = CliRunner().invoke(ablate.main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ablation.json").read_text())
    assert [run["variant"] for run in report["runs"]] == ["baseline", "no-dropout"]
    for run in report["runs"]:
        assert run["evaluation"]["centre"]["images"] == 3 and run["evaluation"]["10-crop"]["images"] == 3
        assert run["step"] == 1
        saved = torch.load(out / run["variant"] / "checkpoint.pth.tar", weights_only=True)
        assert saved["config"]["DataConfig"]["root"] == str(tmp_path / "wds")
