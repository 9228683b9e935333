"""What the selftest writes: the table on stdout, selftest.json and selftest.md (both rewritten after every
stage, atomically, so a killed run leaves what it had)."""
from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_atomic
from tools.checkup.plan import STAGES
from tools.checkup.record import write_json

JSON_NAME, MARKDOWN_NAME, LOG_NAME = "selftest.json", "selftest.md", "selftest.log"
# What a run leaves in --out (bench.json: the bench stage's, written as it measures).
RESULT_NAMES = (JSON_NAME, MARKDOWN_NAME, LOG_NAME, "bench.json")
STATUSES = ("pass", "fail", "timeout", "skipped", "n/a")
FAILED = ("fail", "timeout")
NAME_WIDTH = max(len(stage.name) for stage in STAGES)


def seconds_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def figure_text(stage: dict) -> str:
    """The table's last column: what was measured, or why the stage did not pass."""
    if stage["status"] == "pass":
        return stage["summary"] or "ok"
    if stage["status"] in FAILED and stage["summary"]:
        return f"{stage['reason']} (measured: {stage['summary']})"
    return stage["reason"]


def header() -> str:
    return f"{'stage':<{NAME_WIDTH}}  {'result':<7}  {'time':>7}  figure"


def row(stage: dict) -> str:
    return f"{stage['name']:<{NAME_WIDTH}}  {stage['status']:<7}  {seconds_text(stage['seconds']):>7}  {figure_text(stage)}"


def counts(report: dict) -> dict[str, int]:
    return {status: sum(1 for s in report["stages"] if s["status"] == status) for status in STATUSES}


def final_line(report: dict, out: Path) -> str:
    count = counts(report)
    parts = ", ".join(f"{count[status]} {'passed' if status == 'pass' else status}" for status in STATUSES
                      if count[status])
    return (f"selftest: {parts} in {report['seconds']:.0f} s; wrote {out / JSON_NAME}, {out / MARKDOWN_NAME} "
            f"(every command's output: {out / LOG_NAME})")


def markdown(report: dict) -> str:
    """selftest.md: the table, then each stage's checks (the numbers are in selftest.json)."""
    lines = [f"# imagenet-tools selftest, {report['started']}", "", f"`{report['command']}`", "",
             f"{report['machine']}", "", "| stage | result | time | figure |", "|---|---|---|---|"]
    for stage in report["stages"]:
        lines.append(f"| {stage['name']} | {stage['status']} | {seconds_text(stage['seconds'])} | "
                     f"{figure_text(stage).replace('|', '/')} |")
    for stage in report["stages"]:
        if not stage.get("checks"):
            continue
        lines += ["", f"## {stage['name']}: {stage['status']}", "", f"{stage['checks_what']}", ""]
        for check in stage["checks"]:
            text = check["summary"] if check["status"] == "pass" else check["reason"]
            lines.append(f"- {check['name']}: {check['status']} ({check['seconds']:.1f} s){': ' + text if text else ''}")
    lines += ["", "Every stage's figures: selftest.json; every command it ran and its output: selftest.log.", ""]
    return "\n".join(lines)


def write_report(out: Path, report: dict) -> None:
    write_json(out / JSON_NAME, report)
    write_atomic(out / MARKDOWN_NAME, markdown(report))
