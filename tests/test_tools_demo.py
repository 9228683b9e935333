"""The demo end to end in miniature (3 classes, a few images, 2 training steps), and its pieces."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from tools import demo
from tools.demo_run.run import DEMO_RECIPE, training_args


def test_training_args_carry_the_recipe():
    args = training_args(DEMO_RECIPE, "R", "L", "p.json", "run", "cpu", 2, max_steps=3)
    pairs = {flag: args[args.index(flag) + 1] for flag in
             ("-a", "--device", "--max-steps", "--lr", "--init", "--normalize")}
    assert pairs["-a"] == "alexnet" and pairs["--device"] == "cpu" and pairs["--max-steps"] == "3"
    assert pairs["--lr"] == str(DEMO_RECIPE["lr"]) and pairs["--init"] == DEMO_RECIPE["init"]
    assert pairs["--normalize"] == DEMO_RECIPE["normalize"] and "--dali" in args
    assert "--overwrite" in args  # a second demo into the same folder replaces its run instead of being refused


@pytest.mark.slow
def test_miniature_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--device", "cpu", "--classes", "3", "--train-per-class", "4", "--val-per-class", "2",
            "--epochs", "1", "-b", "4", "--max-steps", "2", "--max-train-neighbours", "12"]
    result = CliRunner().invoke(demo.main, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()  # stage logs go to stderr, the summary to stdout
    assert lines[0].startswith("validation, centre crop (6 images): top-1 accuracy ")
    assert lines[1].startswith("validation, 10 crops    (6 images): top-1 accuracy ")
    assert lines[2].startswith("wall time ") and lines[3] == f"report: {out / 'run' / 'report.md'}"
    # Every stage left its product behind.
    assert len(list((out / "data" / "train").rglob("*.JPEG"))) == 12
    assert len((out / "lists" / "train.txt").read_text().splitlines()) == 12
    assert len((out / "lists" / "val.txt").read_text().splitlines()) == 6
    assert set(json.loads((out / "pca.json").read_text())) >= {"eigval", "eigvec"}
    summary = json.loads((out / "run" / "demo_summary.json").read_text())
    assert list(summary["stage_seconds"]) == ["data", "prepare", "pca", "train", "10-crop", "pictures"]
    assert summary["evaluation"]["centre"]["images"] == 6
    report = (out / "run" / "report.md").read_text()
    for name in ("augment", "curves", "conv1_kernels", "neighbours"):
        png = out / "run" / "pictures" / f"{name}.png"
        assert f"(pictures/{name}.png)" in report
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert "centre top-1 accuracy (%)" in report and "10-crop top-1 accuracy (%)" in report


def test_a_failing_stage_ends_in_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data").write_text("a file where make-demo-data wants its folder")
    result = CliRunner().invoke(demo.main, ["--out", str(tmp_path / "d"), "--classes", "1", "--train-per-class", "1",
                                            "--device", "cpu"])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: demo stage 'data' failed (exit 2): ") and "demo.log" in last and last.count("Error:") == 1
    assert result.stdout == ""
