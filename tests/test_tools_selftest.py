"""`imagenet-tools selftest`: one --quick run (shared by the tests below) checked against what it generated
on disk and against numbers worked out by hand; a crashed, a failed, a hung and an over-budget stage."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tools import selftest
from tools.checkup.plan import STAGE_NAMES, STAGES
from tools.checkup.run import Options, not_run, selected

GPU_STAGES = {stage.name for stage in STAGES if stage.gpu}
CPU_STAGES = {"environment", "data", "pca-cpu", "pipelines-cpu", "model-cpu", "train"}
FIELDS = {"name", "status", "seconds", "reason", "summary", "figures", "checks"}


def run(args: list[str]) -> tuple[int, str, dict]:
    """The command as a user runs it; (exit status, its output, selftest.json)."""
    result = CliRunner().invoke(selftest.main, args)
    out = Path(args[args.index("--out") + 1])
    report = json.loads((out / "selftest.json").read_text()) if (out / "selftest.json").is_file() else {}
    return result.exit_code, result.output, report


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    folder = tmp_path_factory.mktemp("selftest")
    code, output, report = run(["--quick", "--out", str(folder / "out"), "--work", str(folder / "work"),
                                "--workers", "2"])
    return code, output, report, folder


def stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def test_quick_run_passes_and_reports_every_stage(quick):
    code, output, report, folder = quick
    assert code == 0, output
    assert [s["name"] for s in report["stages"]] == list(STAGE_NAMES) and report["complete"]
    assert report["command"] == (f"imagenet-tools selftest --out {folder / 'out'} --quick --workers 2 "
                                 f"--work {folder / 'work'}")
    for entry in report["stages"]:
        assert FIELDS <= set(entry), entry["name"]
        expected = "pass" if entry["name"] in CPU_STAGES or (entry["gpu"] and torch.cuda.is_available()) else None
        if entry["name"] in GPU_STAGES and not torch.cuda.is_available():
            assert (entry["status"], entry["reason"]) == ("n/a", "no CUDA device")
        elif entry["name"] in ("compile", "bench"):
            assert entry["status"] == "skipped" and f"--{entry['name']}" in entry["reason"]
        else:
            assert entry["status"] == expected, (entry["name"], entry["reason"])
            assert entry["checks"] and all(c["status"] == "pass" for c in entry["checks"]), entry["name"]
    device, *lines = output.splitlines()  # where training, --bench and --compile run, first (pipeline/devices.py)
    assert device.startswith("device: cuda (auto: torch sees " if torch.cuda.is_available() else
                             "device: cpu (auto: torch sees no CUDA device)")
    assert lines[0].split() == ["stage", "result", "time", "figure"]
    assert [line.split()[0] for line in lines[1:1 + len(STAGES)]] == list(STAGE_NAMES)
    passed = sum(s["status"] == "pass" for s in report["stages"])
    assert lines[1 + len(STAGES)].startswith(f"selftest: {passed} passed, ")
    markdown = (folder / "out" / "selftest.md").read_text()
    assert all(f"| {name} |" in markdown for name in STAGE_NAMES)
    assert "== train, resumed: python -m model.train" in (folder / "out" / "selftest.log").read_text()


def test_data_figures_match_the_files_on_disk(quick):
    _, _, report, folder = quick
    work = folder / "work"
    generated = len(list((work / "bench" / "train").rglob("*.JPEG")))
    listed = (work / "bench_lists" / "train.txt").read_text().splitlines()
    prepare = stage(report, "data")["figures"]["prepare"]
    assert generated == 24 + 4  # --quick's 24 and the 4 odd files
    assert prepare["train"] == len(listed) == generated - 1  # the text file is rejected
    assert (prepare["repaired"], prepare["rejected"]) == (3, 1)
    assert sum("/repaired/" in line for line in listed) == 3
    buffers = stage(report, "data")["figures"]["nvjpeg buffers"]
    # DALI's defaults, 3 pipelines x 16 threads: 48 x 16 MiB and 96 x 8 MiB = 0.75 GiB each; before: 48 x
    # 211025920 bytes = 9.43 GiB and 96 x 140544512 = 12.57 GiB.
    assert (buffers["resized_256"]["device_mib"], buffers["resized_256"]["host_mib"]) == (16, 8)
    assert buffers["resized_256"]["device_gib"] == buffers["resized_256"]["pinned_gib"] == 0.75
    assert round(buffers["previous_default"]["device_gib"], 2) == 9.43
    assert round(buffers["previous_default"]["pinned_gib"], 2) == 12.57


def test_measured_figures_are_sane(quick):
    _, _, report, folder = quick
    learned = stage(report, "train")["figures"]["loss goes down"]
    assert len(learned["train_loss"]) == 2 and learned["train_loss"][-1] < learned["train_loss"][0]
    assert stage(report, "train")["figures"]["--resume"]["identical"] is True
    ten = stage(report, "train")["figures"]["-e --ten-crop"]
    assert ten["centre"]["images"] == ten["10-crop"]["images"] == 3  # 3 classes x 1 validation image
    graphs = stage(report, "pipelines-cpu")["figures"]["cpu graphs, full size"]
    assert graphs["train"]["images_shape"] == [4, 3, 224, 224]
    assert graphs["ten_crop"]["images_shape"] == [4, 10, 3, 224, 224]
    assert max(g["raw_max_abs_diff"] for g in graphs.values()) < 2e-3
    model = stage(report, "model-cpu")["figures"]
    assert model["ddp"]["ranks"] == [["cpu", "gloo"], ["cpu", "gloo"]] and model["ddp"]["grad_rel_diff"] < 1e-4
    assert model["towers"]["grad_rel_diff"] < 1e-4 and 0 < model["alexnet"]["bf16_grad_rel_diff"] < 0.2
    pca = stage(report, "pca-cpu")["figures"]["dali vs pil, full size"]
    assert pca["images"] == [27, 27] and pca["mean_max_abs_diff"] < 2e-3
    environment = stage(report, "environment")["figures"]
    assert environment["dali"]["flavour"] in ("cuda120", "cuda130") and environment["torch"]["torch"] == torch.__version__


def test_a_failed_and_a_crashed_stage_are_reported_and_the_others_run(tmp_path):
    out = tmp_path / "out"
    code, output, report = run(["--quick", "--only", "environment,pca-cpu", "--inject", "environment:crash",
                                "--inject", "pca-cpu:fail", "--out", str(out), "--work", str(tmp_path / "w")])
    assert code == 1
    crashed, data, failed = (stage(report, name) for name in ("environment", "data", "pca-cpu"))
    assert crashed["status"] == "fail" and "killed by SIGABRT" in crashed["reason"]
    assert data["status"] == "pass"  # ran after the crash, and pca-cpu after it
    assert failed["status"] == "fail" and failed["reason"] == "injected: RuntimeError: injected failure " \
                                                              "(--inject pca-cpu:fail)"
    assert output.strip().splitlines()[-1] == (f"Error: 2 stages failed: environment, pca-cpu; the reasons are in "
                                               f"the table above and in {out / 'selftest.md'}")


def test_a_stage_past_its_time_limit_is_killed_with_its_children(tmp_path):
    work = tmp_path / "w"
    code, _, report = run(["--quick", "--only", "environment", "--inject", "environment:hang", "--limit",
                           "environment:3", "--out", str(tmp_path / "out"), "--work", str(work)])
    assert code == 1
    hung = stage(report, "environment")
    assert (hung["status"], hung["reason"]) == ("timeout", "killed at its 3 s limit")
    assert 3 <= hung["seconds"] < 30
    alive = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True)
    assert alive.stdout == ""


def test_a_tiny_budget_skips_every_stage_and_still_writes_the_report(tmp_path):
    code, output, report = run(["--quick", "--budget", "1", "--out", str(tmp_path / "out")])
    assert code == 1 and "no stage passed: --budget 1 s is too small for any stage" in output, output  # issue 20
    for entry in report["stages"]:
        if entry["name"] in GPU_STAGES and not torch.cuda.is_available():
            assert entry["status"] == "n/a"
        elif entry["name"] in ("environment", "data", "model-cpu"):  # those that need no other stage
            assert entry["status"] == "skipped" and entry["reason"].startswith("budget: needs ~"), entry
        elif entry["name"] not in ("compile", "bench"):
            assert (entry["status"], entry["reason"]) == ("skipped", "needs data, which was skipped")
    assert report["complete"] and report["failed"] == []


def test_only_adds_the_stages_a_stage_needs():
    assert selected(Options(out=Path("x"), only=("train",))) == {"train", "data"}
    assert selected(Options(out=Path("x"))) == set(STAGE_NAMES)
    with pytest.raises(Exception, match="no such stage"):
        selected(Options(out=Path("x"), only=("trian",)))


def test_a_stage_whose_input_failed_is_skipped():
    from tools.checkup.plan import Settings

    settings = Settings(quick=True, device="cpu", cuda=False, workers=1, work="w")
    spec = next(s for s in STAGES if s.name == "train")
    done = {"data": {"status": "fail"}}
    assert not_run(spec, Options(out=Path("x")), settings, set(STAGE_NAMES), done, None) == \
        ("skipped", "needs data, which failed")


@pytest.mark.parametrize("args, message", [
    (["--inject", "train:explode"], "--inject train:explode: expected STAGE:fail|crash|hang"),
    (["--limit", "train:soon"], "--limit train:soon: the limit is a number of seconds"),
    (["--only", "trian"], "--only trian: no such stage"),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(selftest.main, ["--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {message}"), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()  # refused before any folder


def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(selftest.main, ["--quick", "--out", str(tmp_path / "file" / "st")])
    assert result.exit_code == 1 and "is a file, not a folder" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="refused only where torch sees no CUDA device")
@pytest.mark.parametrize("name", ["gpu", "cuda"])
def test_device_gpu_without_cuda_is_refused(tmp_path, name):
    result = CliRunner().invoke(selftest.main, ["--device", name, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # refused before any folder is made
    assert result.exit_code == 1 and f"--device {name}: torch sees no CUDA device" in result.output


# --- the GPU stages' code, as far as it runs without a GPU --------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="forces the GPU stages onto a machine without CUDA")
@pytest.mark.parametrize("name", ["dali-gpu", "pipelines-gpu"])
def test_gpu_stages_forced_without_cuda_fail_with_one_line_each(quick, tmp_path, name):
    from tools.checkup.plan import Settings
    from tools.checkup.stage import main as stage_main

    _, _, _, folder = quick
    settings = Settings(quick=True, device="gpu", cuda=True, workers=1, work=str(folder / "work"))
    settings.save(tmp_path / "settings.json")
    assert stage_main([name, str(tmp_path / "settings.json"), str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "fail" and result["checks"]
    for check in result["checks"]:
        assert check["status"] == "fail" and "\n" not in check["reason"] and "CUDA" in check["reason"], check


def test_gpu_vs_cpu_comparison_of_identical_outputs_is_zero(quick):
    from tools.checkup.pipelines import data_config, gpu_vs_cpu, on_device
    from tools.checkup.plan import Settings, WorkPaths

    _, _, _, folder = quick
    settings = Settings(quick=True, device="cpu", cuda=False, workers=1, work=str(folder / "work"))
    cfg = data_config(WorkPaths(folder / "work"), "256", settings, "cpu")
    outputs = on_device(cfg, "256").value
    figures = gpu_vs_cpu(outputs, outputs, cfg, "256").figures
    assert set(figures) == {"stored (decode)", "train crops, flips, lighting", "val images", "10-crop images"}
    assert figures["stored (decode)"] == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0}
    assert figures["train crops, flips, lighting"]["max_abs_diff"] < 2e-3  # NumPy's lighting in float64


def test_the_gpu_model_check_compares_with_the_cpu_reference():
    from tools.checkup.network import cpu_fp32, precisions

    reference = cpu_fp32("alexnet_owt", 1).value
    figures = precisions("alexnet_owt", torch.device("cpu"), 1, reference).figures
    assert figures["vs_cpu_logits_rel_diff"] == figures["vs_cpu_grad_rel_diff"] == 0.0  # the same computation


def test_bench_targets_judged_by_hand():
    from tools.checkup.throughput import targets, words

    row = {"modes": {"e2e": {"images_per_s": 33000.0}}, "ratios": {"e2e_over_model": 0.94, "dali_over_pil_pipeline": 5.2}}
    judged = targets(row, 16)
    assert [judged[k]["held"] for k in ("e2e_over_model", "dali_over_pil_pipeline", "e2e_images_per_s")] == \
        [False, True, True]  # 0.94 < 0.95; 5.2 >= 5; 33,000 >= 90 x 1,281,167 / 3600 = 32,029.2
    assert judged["e2e_images_per_s"]["target"] == 32029.2
    assert words("256", judged) == ("256: e2e 33,000 img/s (held), 0.94 x model (missed), "
                                    "DALI 5.2 x the DataLoader (held)")
    missing = targets({"modes": {}, "ratios": {}}, 2)
    assert not any(entry["held"] for entry in missing.values()) and "e2e - img/s (missed)" in words("x", missing)


def test_nvml_without_a_driver_says_why():
    from tools.checkup.nvml import Nvml

    nvml = Nvml()
    if nvml.lib is not None:
        pytest.skip("this machine has NVML")
    assert nvml.jpeg_utilization(0) == (None, nvml.error) and nvml.error.startswith("no NVML")
    assert nvml.driver_version() is None
