"""imagenet-tools start-stats on a tiny generated tree: the records hold what the init and LRN's formula fix."""
from __future__ import annotations

import json
import math

import pytest

from click.testing import CliRunner

from model.alexnet import LRN_BETA, LRN_K
from tests.conftest import write_image_tree, write_lists
from model.layer_stats import LAYERS
from tools.start_stats import main


def test_start_stats_records_every_layer_from_the_first_step(tmp_path):
    root = tmp_path / "tree"
    lists = write_lists(root, write_image_tree(root, {"train": 2}), tmp_path / "lists")
    out = tmp_path / "stats.jsonl"
    result = CliRunner().invoke(main, ["--root", str(root), "--lists", str(lists), "--out", str(out), "--steps", "3",
                                       "-b", "2", "--workers", "1", "--bias-one", "0.5", "--lr-warmup-epochs", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    # 6 images at batch 2: 3 steps an epoch, warmed up over all three
    assert [r["lr"] for r in records] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])
    first = records[0]
    assert math.isclose(first["loss"], first["loss"]) and first["loss"] > 0
    # the paper's init: biases bias_one in conv2/4/5, fc6/7, 0 elsewhere (recorded before the first update)
    assert [first[name]["b_mean"] for name in LAYERS] == [0.0, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.0]
    for name in LAYERS:
        assert 0.0 <= first[name]["shared"] <= 1.0 + 1e-6
        assert first[name]["dead"] is None if name == "fc8" else 0.0 <= first[name]["dead"] <= 1.0
    # LRN divides by (k + alpha/n sum a^2)^beta >= k^beta, once after conv1 and once after conv2
    assert len(first["lrn_divisor"]) == 2 and all(d >= LRN_K ** LRN_BETA - 1e-4 for d in first["lrn_divisor"])


def test_start_stats_without_a_train_list_is_one_line(tmp_path):
    (tmp_path / "lists").mkdir()
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "--lists", str(tmp_path / "lists"),
                                       "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 1 and "no train.txt" in result.output and "Traceback" not in result.output
