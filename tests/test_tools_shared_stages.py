"""tools/shared/stages.py: the result lines it parses, a failing stage in one line (exit status, signal, time
limit; the stage and what it started killed at the limit), and what a Ctrl-C or a SIGTERM does to a stage (real
processes: the stage runner in one, its child in another)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from pipeline.errors import InputError
from tools.shared.stages import StageFailed, Stages, exit_words, parse_evaluation

REPO = Path(__file__).resolve().parents[1]

# A child that, like model.train, answers SIGINT/SIGTERM by finishing its work ("saving") and exiting 0; it
# counts the signals it got (model.train stops at once, unsaved, at a second one).
CHILD = textwrap.dedent("""
    import signal, sys, time
    got = []
    def stop(signum, frame):
        got.append(signum)
        if len(got) > 1:
            print("child: a second signal", signum, flush=True)
            return
        time.sleep(0.5)
        print("child: signal", signum, "- saved;", len(got), "signal(s)", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    time.sleep(60)
""")
# The stage runner, as a command runs it: one stage, an InputError printed as the one line a CLI prints.
RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pipeline.errors import InputError
    from tools.shared.stages import Stages
    stages = Stages(Path(sys.argv[1]), "test", hint="run it again")
    timeout = float(sys.argv[3]) if sys.argv[3] != "none" else None
    try:
        stages.run("child", [sys.executable, "-c", sys.argv[2]], "child", timeout=timeout)
    except InputError as error:
        print("Error:", error, file=sys.stderr)
        sys.exit(1)
""")


def test_parse_evaluation_reads_both_views():
    output = ("loading...\nruns/x.pth.tar (centre, 100 images): loss 1.2345  top-1 error 31.00 %  top-5 error 2.00 %\n"
              "runs/x.pth.tar (10-crop, 100 images): loss 1.1000  top-1 error 28.00 %  top-5 error 1.00 %\n")
    result = parse_evaluation(output, "x.log")
    assert result == {"centre": {"images": 100, "loss": 1.2345, "top1_err": 31.0, "top5_err": 2.0},
                      "10-crop": {"images": 100, "loss": 1.1, "top1_err": 28.0, "top5_err": 1.0}}
    with pytest.raises(InputError, match="no 'centre' result line; see x.log"):
        parse_evaluation("nothing here\n", "x.log")


def test_a_failing_stage_is_one_line_with_its_last_words(tmp_path):
    stages = Stages(tmp_path / "s.log", "demo", hint="fix it, then run again")
    argv = [sys.executable, "-c", "print('working'); print('Error: no such file'); raise SystemExit(3)"]
    with pytest.raises(StageFailed) as error:
        stages.run("data", argv, "make data")
    stages.close()
    assert str(error.value) == (f"demo stage 'data' failed (exit 3): no such file; see {tmp_path / 's.log'}; "
                                "fix it, then run again")
    log = (tmp_path / "s.log").read_text()
    assert "== data: " in log and "working\nError: no such file\n" in log
    again = Stages(tmp_path / "s.log", "demo", append=True)
    assert again.run("echo", [sys.executable, "-c", "print('hi')"], "echo") == "hi\n"
    again.close()
    assert (tmp_path / "s.log").read_text().startswith(log)  # appended, the earlier run's log kept


def _sigint_as_in_a_terminal() -> None:
    """The runner starts as a terminal's foreground job does, with SIGINT's default action: a suite started in
    the background (`make test &`) would hand it SIGINT ignored, and a Ctrl-C could never reach it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_runner(tmp_path: Path, timeout: str) -> subprocess.Popen:
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "s.log"), CHILD, timeout], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=_sigint_as_in_a_terminal)
    for line in runner.stderr:  # streamed: the child's output arrives as it prints
        if line.strip() == "ready":
            return runner
    raise AssertionError("the child never started")


# "none": no time limit; "60": a timer that must not fire. Either way the child is in a process group of its
# own and gets the signal once, from the runner.
@pytest.mark.parametrize("timeout", ["none", "60"])
@pytest.mark.parametrize("how", ["Ctrl-C", "SIGINT to the runner", "SIGTERM to the runner", "SIGHUP to the runner"])
def test_an_interrupted_stage_waits_for_its_child_then_says_so(tmp_path, how, timeout):
    runner = start_runner(tmp_path, timeout)
    if how == "Ctrl-C":  # a terminal sends SIGINT to its whole foreground process group: the runner's
        os.killpg(runner.pid, signal.SIGINT)
        number, name = signal.SIGINT, "Ctrl-C"
    elif how == "SIGINT to the runner":  # kill -INT PID, a supervisor: the runner alone
        runner.send_signal(signal.SIGINT)
        number, name = signal.SIGINT, "Ctrl-C"
    elif how == "SIGTERM to the runner":
        runner.send_signal(signal.SIGTERM)
        number, name = signal.SIGTERM, "SIGTERM"
    else:  # its terminal closed: the child, in a session of its own, would get nothing; it gets a SIGTERM
        runner.send_signal(signal.SIGHUP)
        number, name = signal.SIGTERM, "SIGHUP"
    rest = runner.stderr.read()
    assert runner.wait(timeout=60) == 1
    # The runner waited for the child to finish, and the child got one signal (a second aborts model.train).
    assert f"child: signal {int(number)} - saved; 1 signal(s)" in rest, rest
    assert rest.strip().splitlines()[-1] == (f"Error: test stage 'child' stopped by {name}; see {tmp_path / 's.log'}; "
                                             "run it again")


def test_a_ctrl_c_after_a_sigterm_is_the_second_signal_the_child_never_gets_twice(tmp_path):
    """SIGTERM passed on, then a Ctrl-C: that is "stop now" (the stage is killed), never a second signal to
    the child (which model.train would take as "abort without a checkpoint" anyway, but from us)."""
    runner = start_runner(tmp_path, "none")
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.1)  # the child is in its 0.5 s "saving"
    os.killpg(runner.pid, signal.SIGINT)
    rest = runner.stderr.read()
    assert runner.wait(timeout=60) == 1
    assert "second signal" not in rest and "saved" not in rest, rest  # killed while saving, signalled once
    assert rest.strip().splitlines()[-1].startswith("Error: test stage 'child' stopped by SIGTERM; see ")


def test_output_is_returned_and_logged(tmp_path):
    stages = Stages(tmp_path / "x.log", "demo", echo=False)
    assert stages.run("say", [sys.executable, "-c", "print('hello')"], "say hello") == "hello\n"
    stages.close()
    assert (tmp_path / "x.log").read_text() == "\n== say: say hello\nhello\n"


def test_a_failure_is_one_line_naming_the_exit_or_signal(tmp_path):
    stages = Stages(tmp_path / "x.log", "demo", echo=False)
    with pytest.raises(StageFailed) as failed:
        stages.run("bad", [sys.executable, "-c", "print('first'); print('Error: last words'); raise SystemExit(3)"], "bad")
    assert str(failed.value) == f"demo stage 'bad' failed (exit 3): last words; see {tmp_path / 'x.log'}"
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
