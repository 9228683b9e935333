"""The selftest's plan and its bounds (issues 20 and 21): `--plan` runs nothing and sums the stages' limits; a
budget too small for any stage is an error; earlier results are not overwritten silently; the DDP check's
deadline ends before its stage's limit; the bench stage's lists give every timed mode enough batches an epoch."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pipeline.filelist import read_file_list
from tools import selftest
from tools.checkup import ddp
from tools.checkup.plan import STAGES, Settings, WorkPaths
from tools.checkup.stage import ENDS_AT_ENV, main as stage_main
from tools.checkup.throughput import bench_args

BY_NAME = {spec.name: spec for spec in STAGES}


def invoke(*args: str):
    return CliRunner().invoke(selftest.main, list(args))


def test_plan_of_a_gpu_run_is_printed_without_running_anything(tmp_path):
    result = invoke("--plan", "--bench", "--budget", "600", "--device", "cuda", "--out", str(tmp_path / "st"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "st").exists()  # nothing ran, nothing was written
    lines = result.stdout.splitlines()
    running = [name for name in BY_NAME if name != "compile"]  # --compile not given
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert list(rows) == list(BY_NAME)
    for name in running:  # the GPU estimates and limits (index 2 of StageSpec's triples), as on a CUDA machine
        spec = BY_NAME[name]
        assert rows[name][1:6] == ["runs", str(round(spec.seconds[2])), "s", str(round(spec.limit[2])), "s"], name
    assert rows["compile"][1] == "skipped"
    estimate = sum(BY_NAME[name].seconds[2] for name in running)
    limits = sum(BY_NAME[name].limit[2] for name in running)
    assert lines[-1] == (f"sum: {len(running)} stages, estimated {estimate:.0f} s, at most {min(limits, 600):.0f} s "
                         f"(--budget 600 s; their limits sum to {limits:.0f} s), plus the selftest's start (~5 s)")
    if not torch.cuda.is_available():
        assert lines[0] == "selftest plan (default run) for a machine with CUDA (--device cuda; torch sees none here):"


def test_plan_follows_the_budget_as_the_run_does():
    result = invoke("--plan", "--quick", "--device", "cpu", "--budget", "20")
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:-1]}
    # quick estimates: environment 5 s, data 8 s (13 s of 20); pca-cpu 5 s (18 s); pipelines-cpu 5 s no longer fits.
    assert [name for name, line in rows.items() if " runs " in line] == ["environment", "data", "pca-cpu"]
    assert rows["pipelines-cpu"].endswith("budget: needs ~5 s, 2 s of --budget left")


def test_a_budget_too_small_for_any_stage_fails_and_says_what_would_do(tmp_path):
    result = invoke("--quick", "--budget", "5", "--out", str(tmp_path / "st"))
    assert result.exit_code == 1
    report = json.loads((tmp_path / "st" / "selftest.json").read_text())
    assert not any(stage["status"] == "pass" for stage in report["stages"])
    error = result.output.strip().splitlines()[-1]
    # environment's quick estimate is 5 s; the quick CPU plan's stages together 5+8+5+5+35+50+10 (shards) = 118 s.
    assert error.startswith("Error: no stage passed: --budget 5 s is too small for any stage; the first, "
                            "environment, needs ~5 s (--budget "), error
    smallest = int(error.split("(--budget ")[1].split()[0])
    assert 5 * 1.5 + 1 <= smallest <= 5 * 1.5 + 1 + 30  # the estimate and half again, the start-up so far, 1 s
    assert "all of them ~118 s" in error and report["none_passed"] == error[len("Error: "):]


def test_earlier_results_are_refused_without_overwrite(tmp_path):
    out = tmp_path / "st"
    invoke("--quick", "--budget", "1", "--out", str(out))
    before = (out / "selftest.json").read_text()
    again = invoke("--quick", "--budget", "1", "--out", str(out))
    assert again.exit_code == 1 and again.output.strip().splitlines() == [
        f"Error: --out {out} holds an earlier selftest's results (selftest.json, selftest.md, selftest.log); "
        "choose another --out to keep them, or add --overwrite to replace them"]
    assert (out / "selftest.json").read_text() == before
    replaced = invoke("--quick", "--budget", "1", "--out", str(out), "--overwrite")
    assert "no stage passed" in replaced.output and "holds an earlier" not in replaced.output
    assert json.loads((out / "selftest.json").read_text())["command"].endswith("--overwrite")


def test_the_ddp_deadline_ends_before_its_stage(tmp_path, monkeypatch):
    monkeypatch.delenv(ENDS_AT_ENV, raising=False)
    assert ddp.deadline_s() == ddp.DEADLINE_S  # outside a selftest stage
    settings = Settings(quick=True, device="cpu", cuda=False, workers=1, work=str(tmp_path), inject={"model-cpu": "fail"})
    settings.save(tmp_path / "settings.json")
    for name in ("model-cpu", "model-gpu"):  # the stages that run the DDP check
        for kind in range(3):
            limit = BY_NAME[name].limit[kind]
            ends_at = time.time() + limit
            stage_main(["model-cpu", str(tmp_path / "settings.json"), str(tmp_path / "r.json"), f"{ends_at:.1f}"])
            assert float(os.environ[ENDS_AT_ENV]) == pytest.approx(ends_at, abs=0.1)
            assert ddp.deadline_s() <= limit - ddp.MARGIN_S + 1  # the DDP error, not the stage's timeout


@pytest.mark.parametrize("device, workers", [("gpu", 16), ("cpu", 2)])
def test_bench_stage_lists_give_enough_batches_an_epoch(tmp_path, device, workers):
    paths = WorkPaths(tmp_path)
    settings = Settings(quick=False, device=device, cuda=device == "gpu", workers=workers, work=str(tmp_path))
    count = settings.sizes.bench_train  # the data stage's images (768 on a GPU: 3 batches of 256)
    for root, lists in ((paths.bench, paths.bench_lists), (paths.bench256, paths.bench_lists256)):
        (root / "train" / "n0").mkdir(parents=True)
        for i in range(count):
            (root / "train" / "n0" / f"{i}.JPEG").write_bytes(b"%d" % i)
        lists.mkdir()
        (lists / "train.txt").write_text("".join(f"train/n0/{i}.JPEG 0\n" for i in range(count)))
    args = [str(a) for a in bench_args(paths, settings, tmp_path / "bench.json")]
    batch, steps, warmup = (int(args[args.index(flag) + 1]) for flag in ("--batch-size", "--steps", "--warmup"))
    lists = [Path(args[i + 1]) for i, a in enumerate(args) if a == "--list"]
    roots = [Path(args[i + 1]) for i, a in enumerate(args) if a == "--root"]
    assert len(lists) == len(roots) == 2
    for root, list_path, source in zip(roots, lists, (paths.bench, paths.bench256)):
        lines = list_path.read_text().splitlines()
        batches = len(lines) // batch
        assert batches >= max(20, 4 * workers, warmup + steps), (len(lines), batch)
        assert len(set(lines)) == len(lines)  # each path once, as a file list must
        first, last = (root / line.split()[0] for line in (lines[0], lines[-1]))
        assert first.read_bytes() == b"0" and os.path.samefile(first, source / "train" / "n0" / "0.JPEG")
        assert last.read_bytes() == b"%d" % ((len(lines) - 1) % count)
        assert read_file_list(list_path)  # the list is one the loaders accept
