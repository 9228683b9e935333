"""tools/shared/stages.py: a stage's failure in one line, and its time limit (the stage and what it started)."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tools.shared.stages import StageFailed, Stages, exit_words


def test_output_is_returned_and_logged(tmp_path):
    stages = Stages(tmp_path / "x.log", "demo", echo=False)
    assert stages.run("say", [sys.executable, "-c", "print('hello')"], "say hello") == "hello\n"
    stages.close()
    assert (tmp_path / "x.log").read_text() == "\n== say: say hello\nhello\n"


def test_a_failure_is_one_line_naming_the_exit_or_signal(tmp_path):
    stages = Stages(tmp_path / "x.log", "demo", echo=False)
    with pytest.raises(StageFailed) as failed:
        stages.run("bad", [sys.executable, "-c", "print('first'); print('Error: last words'); raise SystemExit(3)"], "bad")
    assert str(failed.value) == f"demo stage 'bad' failed (exit 3): Error: last words; see {tmp_path / 'x.log'}"
    assert (failed.value.returncode, failed.value.timed_out) == (3, False)
    assert exit_words(-11) == "killed by SIGSEGV" and exit_words(-6) == "killed by SIGABRT"


def test_the_time_limit_kills_the_stage_and_what_it_started(tmp_path):
    marker = f"selftest-{uuid.uuid4().hex}"
    grandchild = f"import time; time.sleep(120)  # {marker}"
    code = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
            f"print('started', flush=True); time.sleep(120)")
    stages = Stages(None, "selftest", echo=False)
    with pytest.raises(StageFailed) as failed:
        stages.run("hang", [sys.executable, "-c", code], "hang", timeout=2)
    assert failed.value.timed_out and str(failed.value) == "selftest stage 'hang' killed at its 2 s time limit: started"
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""
