"""Commands run as a user would type them, one process each: echoed, streamed, logged, timed (demo, ablate,
selftest).

    stages = Stages(out / "demo.log", "demo")
    stages.tool("prepare", "prepare", data, "--out", lists)            # imagenet-tools prepare ...
    stages.module("train", "model.train", "--root", root, ...)          # python -m model.train ...
    stages.module("pca", "tools.checkup.stage", "pca", timeout=120)     # killed (with its children) at 120 s

A failure is one line: StageFailed says why (exit status, signal or time limit) and gives the stage's last
words. The child runs in a process group of its own, so that at a time limit everything it started (DALI
threads, worker pools, DDP ranks) goes with it.

Signals: a Ctrl-C (the terminal signals its foreground group, which the child is not in), a SIGINT or a
SIGTERM sent to this process alone, or a SIGHUP (the terminal closed; passed on as SIGTERM) reaches the child
once, from here: `model.train` then finishes its
step and writes a checkpoint, so the stage waits for it before it reports StageStopped. The child must get
one signal only (a second one makes model.train stop at once); a second Ctrl-C here stops the waiting and
kills the stage.
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


class StageStopped(InputError):
    """A stage interrupted by the user (Ctrl-C) or by a SIGTERM to this process; the child was waited for."""


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
        log: the log file; None writes only to stderr.
        label: names the stages in errors ("demo stage 'train' failed ...").
        echo: also stream the commands and their output to stderr (False: the log only).
        hint: appended to the error of a failed or stopped stage (what to do next), if any.
        append: keep what an earlier run wrote into `log` (else it is replaced).
    """

    def __init__(self, log: Path | None, label: str, echo: bool = True, hint: str = "",
                 append: bool = False) -> None:
        self.log = open(log, "a" if append else "w", encoding="utf-8") if log is not None else None
        self.label, self.echo, self.hint = label, echo, hint
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
            StageStopped: Ctrl-C or a SIGTERM to this process; the child was passed it and waited for.
        """
        self._write(f"\n== {name}: {shown}\n")
        start = time.monotonic()
        returncode, lines, timed_out, stopped = self.execute(argv, timeout)
        self.times[name] = time.monotonic() - start
        if self.log is not None:
            self.log.flush()
        where = f"; see {self.log.name}" if self.log is not None else ""
        hint = f"; {self.hint}" if self.hint else ""
        if stopped:
            raise StageStopped(f"{self.label} stage '{name}' stopped by {stopped}{where}{hint}")
        if returncode != 0 or timed_out:
            last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
            last = last.removeprefix("Error: ")  # a toolkit command's one line: not "Error: ... Error: ..."
            what = f"killed at its {timeout:.0f} s time limit" if timed_out else f"failed ({exit_words(returncode)})"
            raise StageFailed(f"{self.label} stage '{name}' {what}: {last}{where}{hint}", returncode, timed_out, last)
        return "".join(lines)

    def execute(self, argv: list[str], timeout: float | None = None) -> tuple[int, list[str], bool, str | None]:
        """Run `argv`, streaming its output; (exit status, output lines, timed out, "Ctrl-C"/"SIGTERM"/None)."""
        # Unbuffered children, so that progress lines arrive as they are printed, not in 8 KB chunks.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   env=env, errors="replace", start_new_session=True)
        expired = threading.Event()
        lines: list[str] = []
        signalled: list[str] = []
        timer, previous = None, {}
        try:
            if timeout is not None:
                timer = threading.Timer(max(timeout, 0.0), _kill_group, (process, expired))
                timer.daemon = True  # never keeps this process alive
                timer.start()
            previous = _forward_stops(process, signalled)
            try:
                self._drain(process, lines)
            except KeyboardInterrupt:  # pass it on (once), let the child write its checkpoint, then say so
                if signalled:  # the child was already told (SIGTERM, SIGHUP): this is the second, "stop now"
                    _signal_group(process, signal.SIGKILL)
                else:
                    signalled.append("Ctrl-C")
                    process.send_signal(signal.SIGINT)  # the child only: it stops what it started
                try:
                    self._drain(process, lines)
                except KeyboardInterrupt:  # a second one: stop waiting
                    _signal_group(process, signal.SIGKILL)
                    process.wait()
        finally:
            if process.poll() is None:  # an exception of our own: the stage does not outlive it
                _signal_group(process, signal.SIGKILL)
                process.wait()
            if timer is not None:
                timer.cancel()
                timer.join()  # a timer that already fired has set `expired` before we read it
            for number, handler in previous.items():
                signal.signal(number, handler)
        return process.returncode, lines, expired.is_set(), signalled[0] if signalled else None

    def _drain(self, process: subprocess.Popen, lines: list[str]) -> None:
        """Stream the child's output as it comes (training prints progress) into `lines`, then wait for it."""
        for line in process.stdout:
            self._write(line)
            lines.append(line)
        process.wait()

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


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:  # ended just now
        pass


def _kill_group(process: subprocess.Popen, expired: threading.Event) -> None:
    """The time limit: SIGKILL to the child's process group (it and everything it started). A child that
    has already ended is not "killed at its time limit" (what its group left behind still goes)."""
    if process.poll() is None:
        expired.set()
    _signal_group(process, signal.SIGKILL)


def _forward_stops(process: subprocess.Popen, signalled: list[str]) -> dict:
    """While `process` runs, a SIGTERM to this process, or a SIGHUP (its terminal closed: the child, in a
    session of its own, gets none), is sent on to it as SIGTERM, once for both, and noted in `signalled`.
    Returns the handlers to restore ({} outside the main thread, where there are none)."""

    def forward(signum, frame):
        if not signalled:
            signalled.append(signal.Signals(signum).name)
            process.send_signal(signal.SIGTERM)

    previous = {}
    try:
        for number in (signal.SIGTERM, signal.SIGHUP):
            previous[number] = signal.signal(number, forward)
    except ValueError:  # not the main thread
        pass
    return previous


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
