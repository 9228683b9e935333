"""The selftest's run: each stage of the plan in its own process, under its time limit and the --budget,
its result merged into selftest.json / selftest.md as soon as it ends. `tools/selftest.py` is the command line.
"""
from __future__ import annotations

import datetime
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from pipeline.devices import Device, announce, canonical
from pipeline.devices import resolve_device as resolve_device_of
from pipeline.errors import InputError
from pipeline.writable import writable_folder
from tools.checkup.plan import STAGE_NAMES, STAGES, Settings, StageSpec, WorkPaths
from tools.checkup.forecast import forecast, smallest_budget, totals
from tools.checkup.report import FAILED, LOG_NAME, RESULT_NAMES, final_line, header, row, write_report
from tools.shared.stages import Stages, StageFailed, exit_words


NOT_PASSED = {"fail": "failed", "timeout": "timed out", "skipped": "was skipped", "n/a": "is n/a"}


@dataclass(frozen=True)
class Options:
    """The command line's choices (tools/selftest.py)."""

    out: Path
    quick: bool = False
    bench: bool = False
    compile: bool = False
    device: str = "auto"
    workers: int = 1
    budget: float | None = None
    only: tuple[str, ...] = ()
    work: Path | None = None
    inject: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)
    command: str = "imagenet-tools selftest"
    overwrite: bool = False


def selected(options: Options) -> set[str]:
    """--only's stages and every stage they need; all stages without --only."""
    if not options.only:
        return set(STAGE_NAMES)
    chosen, by_name = set(), {stage.name: stage for stage in STAGES}
    pending = list(options.only)
    while pending:
        name = pending.pop()
        if name not in by_name:
            raise InputError(f"--only {name}: no such stage; the stages are {', '.join(STAGE_NAMES)}")
        chosen.add(name)
        pending += [need for need in by_name[name].needs if need not in chosen]
    return chosen


def resolve_device(asked: str) -> tuple[Device, str, bool]:
    """(the --device resolved, "cpu" | "gpu" for Settings.device, whether torch sees a CUDA device)."""
    chosen = resolve_device_of(asked)
    if chosen.index not in (None, 0):
        raise InputError(f"--device {asked}: the selftest's GPU stages run on cuda:0 (and cuda:1 for the towers); "
                         f"to test another GPU, make it the first with CUDA_VISIBLE_DEVICES={chosen.index}")
    return chosen, chosen.dali, chosen.seen > 0


def not_run(spec: StageSpec, options: Options, settings: Settings, chosen: set[str], done: dict[str, dict],
            left: float | None) -> tuple[str, str] | None:
    """(status, reason) of a stage that does not start, or None."""
    if spec.flag and not getattr(options, spec.flag.lstrip("-")):
        return "skipped", f"not asked for (add {spec.flag})"
    if spec.name not in chosen:
        return "skipped", "not selected (--only)"
    if spec.gpu and not settings.cuda:
        return "n/a", "no CUDA device"
    if spec.gpu and canonical(options.device) == "cpu":
        return "n/a", "--device cpu"
    for need in spec.needs:
        status = done.get(need, {}).get("status")
        if status != "pass":
            return "skipped", f"needs {need}, which {NOT_PASSED.get(status, 'did not run')}"
    estimate = spec.seconds[settings.kind]
    if left is not None and estimate > left:
        return "skipped", f"budget: needs ~{estimate:.0f} s, {max(left, 0):.0f} s of --budget left"
    return None


def stage_entry(spec: StageSpec, status: str, reason: str = "", seconds: float | None = None) -> dict:
    return {"name": spec.name, "status": status, "seconds": seconds, "reason": reason, "summary": "",
            "checks_what": spec.checks, "gpu": spec.gpu, "figures": {}, "checks": []}


def run_stage(spec: StageSpec, runner: Stages, settings: Settings, timeout: float, by_budget: bool) -> dict:
    """Start the stage's process; its result file, or what its end says when it wrote none."""
    paths = WorkPaths(Path(settings.work))
    result_path = paths.result(spec.name)
    result_path.unlink(missing_ok=True)
    start = time.monotonic()
    status, reason = None, ""
    try:  # the stage is told when its limit ends, so that its own deadlines (DDP) come before it
        runner.module(spec.name, "tools.checkup.stage", spec.name, paths.root / "settings.json", result_path,
                      f"{time.time() + timeout:.1f}", timeout=timeout)
    except StageFailed as error:
        status = "timeout" if error.timed_out else "fail"
        reason = (f"killed at its {timeout:.0f} s limit{' (the end of --budget)' if by_budget else ''}"
                  if error.timed_out else f"the stage's process {exit_words(error.returncode)}: {error.last_line}")
    entry = stage_entry(spec, "fail", seconds=round(time.monotonic() - start, 1))
    if result_path.is_file():
        entry.update({k: v for k, v in json.loads(result_path.read_text()).items() if k in entry})
        entry["seconds"] = round(time.monotonic() - start, 1)
    elif status is None:
        status, reason = "fail", "the stage's process ended without writing its result"
    if status is not None:  # what the checks had recorded stays; the stage's end decides its status
        entry["status"], entry["reason"] = status, reason
    return entry


def running(text: str) -> None:
    """A line on a terminal that says which stage runs (redrawn, then cleared); nothing in a log."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{text[:shutil.get_terminal_size().columns - 1]}")
        sys.stderr.flush()


def new_report(options: Options, settings: Settings) -> dict:
    return {"tool": "imagenet-tools selftest", "format": 1,
            "started": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "command": options.command,
            "settings": {"quick": settings.quick, "device": settings.device, "cuda": settings.cuda,
                         "workers": settings.workers, "budget": options.budget, "bench": options.bench,
                         "compile": options.compile, "only": list(options.only)},
            "machine": "(the environment stage did not run)", "stages": [], "seconds": 0.0, "complete": False,
            "failed": [], "none_passed": None}


def claim_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that holds an earlier selftest's results, unless --overwrite (which removes them).

    Raises:
        InputError: earlier results and no --overwrite (one line naming them).
    """
    earlier = [out / name for name in RESULT_NAMES if (out / name).exists()]
    if not earlier:
        return
    if not overwrite:
        raise InputError(f"--out {out} holds an earlier selftest's results ({', '.join(p.name for p in earlier)}); "
                         "choose another --out to keep them, or add --overwrite to replace them")
    for path in earlier:
        path.unlink()


def none_passed(report: dict, options: Options, settings: Settings, startup: float) -> str | None:
    """Why no stage passed (the run tested nothing), or None when one did."""
    if any(stage["status"] == "pass" for stage in report["stages"]):
        return None
    by_budget = [s["name"] for s in report["stages"] if s["status"] == "skipped" and s["reason"].startswith("budget:")]
    if not by_budget:
        return "no stage passed: each was skipped or n/a (the reasons are in the table above); nothing was tested"
    spec = next(spec for spec in STAGES if spec.name == by_budget[0])
    unbounded = replace(options, budget=None)
    whole, _ = totals(forecast(unbounded, settings, selected(options)))
    return (f"no stage passed: --budget {options.budget:g} s is too small for any stage; the first, {spec.name}, "
            f"needs ~{spec.seconds[settings.kind]:.0f} s (--budget {smallest_budget(spec.seconds[settings.kind], startup)} "
            f"runs it), all of them ~{whole:.0f} s (--budget {smallest_budget(whole, startup)}; "
            f"`selftest --plan` shows each stage)")


def run_selftest(options: Options) -> dict:
    """Run the plan; returns the report also written to OUT/selftest.json (see the module docstring)."""
    start = time.monotonic()
    chosen = selected(options)  # a bad --only before any folder is made
    machine, device, cuda = resolve_device(options.device)  # refused before any folder is made
    out = writable_folder(options.out, "--out")
    claim_out(out, options.overwrite)
    work = options.work or Path(tempfile.mkdtemp(prefix="selftest-"))
    writable_folder(work, "--work")
    settings = Settings(options.quick, device, cuda, options.workers, str(Path(work).resolve()), options.inject,
                        str(Path(out).resolve()))
    settings.save(Path(work) / "settings.json")
    report = new_report(options, settings)
    runner = Stages(out / LOG_NAME, "selftest", echo=False)
    announce(machine)
    click.echo(header())
    startup = time.monotonic() - start
    try:
        done: dict[str, dict] = {}
        for spec in STAGES:
            left = None if options.budget is None else options.budget - (time.monotonic() - start)
            skip = not_run(spec, options, settings, chosen, done, left)
            if skip is not None:
                entry = stage_entry(spec, *skip)
            else:
                limit = options.limits.get(spec.name, spec.limit[settings.kind])
                by_budget = left is not None and left < limit
                timeout = min(limit, left) if by_budget else limit
                running(f"{spec.name}: running ({spec.checks}; stopped after {timeout:.0f} s) ...")
                entry = run_stage(spec, runner, settings, timeout, by_budget)
                running("")
            done[spec.name] = entry
            report["stages"].append(entry)
            if spec.name == "environment" and entry["status"] == "pass":
                report["machine"] = entry["summary"]
            report["seconds"] = round(time.monotonic() - start, 1)
            report["failed"] = [s["name"] for s in report["stages"] if s["status"] in FAILED]
            write_report(out, report)
            click.echo(row(entry))
        report["complete"] = True
        report["none_passed"] = none_passed(report, options, settings, startup)
        write_report(out, report)
    finally:
        runner.close()
        if options.work is None:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(final_line(report, out))
    return report
