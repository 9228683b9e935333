"""Commands run as a user would type them, one process each: echoed, streamed, logged, timed (demo, selftest).

    stages = Stages(out / "demo.log", "demo")
    stages.tool("prepare", "prepare", data, "--out", lists)            # imagenet-tools prepare ...
    stages.module("train", "model.train", "--root", root, ...)          # python -m model.train ...
    stages.module("pca", "tools.checkup.stage", "pca", timeout=120)     # killed (with its children) at 120 s

A failure is one line (InputError; StageFailed says why: exit status, signal or time limit). With a time
limit the child runs in its own process group, so that everything it started (DALI threads, worker pools,
DDP ranks) goes with it when the limit is reached; Ctrl-C is then passed on to that group.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.errors import InputError

# What `python -m model.train -e` prints per view (model/train.py evaluate_only).
EVAL_LINE = re.compile(r"\((centre|10-crop), (\d+) images\): loss ([\d.]+)\s+top-1 error ([\d.]+) %\s+"
                       r"top-5 error ([\d.]+) %")


class StageFailed(InputError):
    """A stage that did not end with exit status 0: `returncode` (negative: killed by that signal),
    `timed_out` (killed at its time limit), `last_line` (its last words)."""

    def __init__(self, message: str, returncode: int | None, timed_out: bool, last_line: str) -> None:
        super().__init__(message)
        self.returncode, self.timed_out, self.last_line = returncode, timed_out, last_line


def exit_words(returncode: int) -> str:
    """"exit 2", or "killed by SIGSEGV" for a negative status."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class Stages:
    """Runs stages as subprocesses: echoes each command, tees its output to `log`, times it.

    Args:
        log: the log file (replaced); None writes only to stderr.
        label: names the stages in errors ("demo stage 'train' failed ...").
        echo: also stream the commands and their output to stderr (False: the log only).
    """

    def __init__(self, log: Path | None, label: str, echo: bool = True) -> None:
        self.log = open(log, "w", encoding="utf-8") if log is not None else None
        self.label, self.echo = label, echo
        self.times: dict[str, float] = {}

    def _write(self, text: str) -> None:
        if self.echo:
            sys.stderr.write(text)
        if self.log is not None:
            self.log.write(text)

    def run(self, name: str, argv: list[str], shown: str, timeout: float | None = None) -> str:
        """Run `argv` (shown to the user as `shown`); return its stdout+stderr.

        Args:
            timeout: seconds after which the child and every process it started are killed.

        Raises:
            StageFailed: the command exited non-zero, was killed, or reached `timeout`.
        """
        self._write(f"\n== {name}: {shown}\n")
        start = time.monotonic()
        # Unbuffered children, so that progress lines arrive as they are printed, not in 8 KB chunks.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   env=env, errors="replace", start_new_session=timeout is not None)
        expired = threading.Event()
        timer = None
        if timeout is not None:
            timer = threading.Timer(max(timeout, 0.0), _kill_group, (process, expired))
            timer.start()
        lines = []
        try:
            for line in process.stdout:  # stream: training prints progress as it goes
                self._write(line)
                lines.append(line)
            process.wait()
        except KeyboardInterrupt:
            if timeout is not None:  # its own group did not see the Ctrl-C: pass it on
                os.killpg(process.pid, signal.SIGINT)
            process.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        self.times[name] = time.monotonic() - start
        if self.log is not None:
            self.log.flush()
        if process.returncode != 0 or expired.is_set():
            raise self._failure(name, process.returncode, expired.is_set(), timeout, lines)
        return "".join(lines)

    def _failure(self, name: str, returncode: int, timed_out: bool, timeout: float | None,
                 lines: list[str]) -> StageFailed:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        where = f"; see {self.log.name}" if self.log is not None else ""
        what = f"killed at its {timeout:.0f} s time limit" if timed_out else f"failed ({exit_words(returncode)})"
        return StageFailed(f"{self.label} stage '{name}' {what}: {last}{where}", returncode, timed_out, last)

    def tool(self, name: str, *args: object, timeout: float | None = None) -> str:
        """An `imagenet-tools` subcommand, run as `python -m tools.cli ...` with this interpreter."""
        args = [str(a) for a in args]
        return self.run(name, [sys.executable, "-m", "tools.cli", *args], shlex.join(["imagenet-tools", *args]),
                        timeout)

    def module(self, name: str, module: str, *args: object, timeout: float | None = None) -> str:
        """`python -m module ...` with this interpreter."""
        args = [str(a) for a in args]
        return self.run(name, [sys.executable, "-m", module, *args], shlex.join(["python", "-m", module, *args]),
                        timeout)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def _kill_group(process: subprocess.Popen, expired: threading.Event) -> None:
    """The time limit: SIGKILL to the child's process group (it and everything it started)."""
    expired.set()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # ended just now
        pass


def parse_evaluation(output: str, log: str) -> dict[str, dict[str, float]]:
    """The "(centre|10-crop, N images): loss L  top-1 error E %  top-5 error F %" lines of `model.train -e`.

    Raises:
        InputError: no centre line (`log` names where the output was kept).
    """
    results = {}
    for view, count, loss, top1, top5 in EVAL_LINE.findall(output):
        results[view] = {"images": int(count), "loss": float(loss), "top1_err": float(top1), "top5_err": float(top5)}
    if "centre" not in results:
        raise InputError(f"the evaluation printed no 'centre' result line; see {log}")
    return results
