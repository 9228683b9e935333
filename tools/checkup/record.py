"""One stage's result, built check by check in the stage's process and written to its file after each check,
so that a stage killed at its time limit (or by a crash) still leaves what it had measured.

    record = Recorder("pipelines-cpu", result_path)
    stored = record.check("train graph", run_train_graph, cfg)   # a failing check is recorded; the next runs
    record.finish()

A check returns Outcome(summary, figures, value): a short text for the table, the numbers it measured, and
what later checks need. It raises CheckFailed (a measured value out of bounds: the figures are kept) or
NotApplicable; any other exception is a failure with its one-line reason (the traceback goes to the log).
"""
from __future__ import annotations

import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.atomic import write_atomic

REASON_CHARS = 240


@dataclass
class Outcome:
    summary: str = ""
    figures: dict = field(default_factory=dict)
    value: Any = None


class CheckFailed(Exception):
    """A check that ran and measured something out of bounds."""

    def __init__(self, reason: str, figures: dict | None = None, summary: str = "") -> None:
        super().__init__(reason)
        self.figures, self.summary = figures or {}, summary


class NotApplicable(Exception):
    """A check that does not apply on this machine (its message says why)."""


def one_line(error: BaseException) -> str:
    """An exception as one line: its type (unless it is a user-facing message) and its first line."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    plain = type(error).__name__ in ("InputError", "CheckFailed", "StageFailed")
    line = text if plain and text else f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line[:REASON_CHARS]


def finite(value: Any) -> Any:
    """JSON has no NaN or inf: such numbers become None (nested dicts and lists too); floats get 6 digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy / torch scalars
        return finite(value.item())
    return value


def write_json(path: Path, document: dict) -> None:
    """Atomically: a temporary file, then rename (a reader never sees half a file)."""
    write_atomic(path, json.dumps(finite(document), indent=1) + "\n")


class Recorder:
    """The result of one stage: its checks, their figures, and the stage's status."""

    def __init__(self, name: str, path: Path) -> None:
        self.path = Path(path)
        self.result: dict = {"name": name, "status": "running", "reason": "", "summary": "", "figures": {},
                             "checks": []}
        self._write()

    def check(self, name: str, func: Callable[..., Outcome], *args, **kwargs) -> Any:
        """Run one check; record pass / fail / n/a with its figures. Returns its Outcome's value (None if it
        did not pass)."""
        start = time.monotonic()
        entry = {"name": name, "status": "pass", "seconds": 0.0, "reason": "", "summary": "", "figures": {}}
        value = None
        print(f"-- check {name}", file=sys.stderr, flush=True)
        try:
            outcome = func(*args, **kwargs)
            entry.update(summary=outcome.summary, figures=outcome.figures)
            value = outcome.value
        except NotApplicable as error:
            entry.update(status="n/a", reason=str(error))
        except CheckFailed as error:
            entry.update(status="fail", reason=one_line(error), figures=error.figures, summary=error.summary)
        except Exception as error:  # noqa: BLE001 - a stage records every failure and goes on
            traceback.print_exc()
            entry.update(status="fail", reason=one_line(error))
        entry["seconds"] = round(time.monotonic() - start, 2)
        print(f"-- {name}: {entry['status']} {entry['reason'] or entry['summary']}", file=sys.stderr, flush=True)
        self.result["checks"].append(entry)
        self._merge()
        return value

    def passed(self, name: str) -> bool:
        """Whether the check called `name` ran and passed."""
        return any(c["name"] == name and c["status"] == "pass" for c in self.result["checks"])

    def _merge(self) -> None:
        checks = self.result["checks"]
        failed = [c for c in checks if c["status"] == "fail"]
        self.result["figures"].update({c["name"]: c["figures"] for c in checks if c["figures"]})
        self.result["summary"] = "; ".join(c["summary"] for c in checks if c["summary"] and c["status"] == "pass")
        self.result["reason"] = f"{failed[0]['name']}: {failed[0]['reason']}" if failed else ""
        self._write()

    def finish(self) -> dict:
        """The stage's status: fail if a check failed, n/a if every check was n/a, else pass."""
        statuses = {c["status"] for c in self.result["checks"]}
        if "fail" in statuses:
            self.result["status"] = "fail"
        elif statuses == {"n/a"}:
            self.result["status"] = "n/a"
            self.result["reason"] = self.result["checks"][0]["reason"]
        else:
            self.result["status"] = "pass"
        self._write()
        return self.result

    def _write(self) -> None:
        write_json(self.path, self.result)
