"""Commands run as a user would type them, one process each: echoed, streamed, logged, timed (demo, ablate).

`Stages.run` streams a child's output to stderr and a log file and turns a failure into one line. Ctrl-C
reaches the child too (same process group): `model.train` then finishes its step and writes a checkpoint,
so the stage waits for it before reporting the interruption; a SIGTERM sent to this process alone is
passed on to the child, which does the same.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from pipeline.errors import InputError

EVAL_LINE = re.compile(r"\((centre|10-crop), (\d+) images\): loss ([\d.]+)\s+top-1 error ([\d.]+) %\s+"
                       r"top-5 error ([\d.]+) %")


class Stages:
    """Runs stages as subprocesses: echoes each command, tees its output to `log`, times it.

    Args:
        log: the log file (appended to with `append`, else replaced).
        label: names the stages in errors ("demo stage 'train' failed ...").
        hint: appended to the error of a failed or interrupted stage (what to do next), if any.
        append: keep what an earlier run wrote into `log`.
    """

    def __init__(self, log: Path, label: str, hint: str = "", append: bool = False) -> None:
        self.log = open(log, "a" if append else "w", encoding="utf-8")
        self.label, self.hint = label, hint
        self.times: dict[str, float] = {}

    def run(self, name: str, argv: list[str], shown: str) -> str:
        """Run `argv` (shown to the user as `shown`); return its stdout+stderr.

        Raises:
            InputError: the command failed (exit != 0) or was interrupted (Ctrl-C, SIGTERM).
        """
        click.echo(f"\n== {name}: {shown}", err=True)
        self.log.write(f"\n== {name}: {shlex.join(argv)}\n")
        start = time.monotonic()
        returncode, lines, stopped = self.execute(argv)
        self.times[name] = time.monotonic() - start
        self.log.flush()
        if stopped:
            raise InputError(f"{self.label} stage '{name}' stopped by {stopped}; see {self.log.name}{self._hint()}")
        if returncode != 0:
            last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
            raise InputError(f"{self.label} stage '{name}' failed (exit {returncode}): {last}; "
                             f"see {self.log.name}{self._hint()}")
        return "".join(lines)

    def execute(self, argv: list[str]) -> tuple[int, list[str], str | None]:
        """Run `argv`, streaming its output to stderr and the log.

        Returns:
            (exit status, output lines, "Ctrl-C"/"SIGTERM" if this process was interrupted, else None).
        """
        # Unbuffered children, so that progress lines arrive as they are printed, not in 8 KB chunks.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   env=env)
        lines: list[str] = []
        signalled: list[str] = []
        previous = _forward_sigterm(process, signalled)
        try:
            for line in process.stdout:  # stream: training prints progress as it goes
                self._echo(line, lines)
            process.wait()
        except KeyboardInterrupt:  # the child got the SIGINT as well: let it write its checkpoint
            signalled.insert(0, "Ctrl-C")
            try:
                for line in process.stdout:
                    self._echo(line, lines)
            except KeyboardInterrupt:  # a second one: the child got it too and stops at once
                pass
            process.wait()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return process.returncode, lines, signalled[0] if signalled else None

    def _echo(self, line: str, lines: list[str]) -> None:
        sys.stderr.write(line)
        self.log.write(line)
        lines.append(line)

    def _hint(self) -> str:
        return f"; {self.hint}" if self.hint else ""

    def tool(self, name: str, *args: str) -> str:
        """An `imagenet-tools` subcommand, run as `python -m tools.cli ...` with this interpreter."""
        args = [str(a) for a in args]
        return self.run(name, [sys.executable, "-m", "tools.cli", *args], shlex.join(["imagenet-tools", *args]))

    def module(self, name: str, module: str, *args: str) -> str:
        """`python -m module ...` with this interpreter."""
        args = [str(a) for a in args]
        return self.run(name, [sys.executable, "-m", module, *args], shlex.join(["python", "-m", module, *args]))

    def close(self) -> None:
        self.log.close()


def _forward_sigterm(process: subprocess.Popen, signalled: list[str]):
    """While `process` runs, a SIGTERM to this process is sent on to it (once) and noted in `signalled`.
    Returns the handler to restore, or None outside the main thread (no handlers there)."""

    def forward(signum, frame):
        if not signalled:
            signalled.append("SIGTERM")
            process.send_signal(signal.SIGTERM)

    try:
        return signal.signal(signal.SIGTERM, forward)
    except ValueError:  # not the main thread
        return None


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


def pick_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
