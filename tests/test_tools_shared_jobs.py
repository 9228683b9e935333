"""tools/shared/jobs.py: the one job runner (order, processes, a dead worker) and its progress line."""
from __future__ import annotations

import os
import time

import pytest

from pipeline.errors import InputError
from pipeline.processes import usable_cpus
from tools.shared.jobs import Progress, job_pool, run_jobs


def _late_square(x: int) -> tuple[int, int]:
    """x * x and the worker's pid; early jobs finish last, so completion order differs from job order."""
    time.sleep(0.02 * (5 - x % 5))
    return x * x, os.getpid()


def _dies_at_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # a worker killed (e.g. for memory): no exception, the process is gone
    return x


def test_results_in_job_order_from_other_processes(capsys) -> None:
    results = run_jobs(_late_square, list(range(10)), 2, "squares", unit="numbers", chunksize=1)
    assert [square for square, _ in results] == [x * x for x in range(10)]
    assert os.getpid() not in {pid for _, pid in results}
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("squares: 10/10 numbers, ") and line.endswith(" numbers/s")


def test_one_worker_runs_in_this_process(capsys) -> None:
    results = run_jobs(_late_square, [1, 2, 3], 1, "squares")
    assert results == [(1, os.getpid()), (4, os.getpid()), (9, os.getpid())]


def test_a_dead_worker_is_one_error_line() -> None:
    with pytest.raises(InputError) as error:
        with job_pool(2, "test-tool") as map_jobs:
            list(map_jobs(_dies_at_three, range(8)))
    assert str(error.value).startswith("a test-tool worker process died (killed for memory?); rerun with --workers 1")


def test_progress_line_counts_skips_and_its_own_rate_unit(capsys) -> None:
    progress = Progress("compute-pca", 64, "images")
    progress.update(32, 1)
    progress.update(32, 2)
    progress.finish()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("compute-pca: 64/64 images, ") and line.endswith(" images/s, 3 skipped")
    batches = Progress("pipeline", 2, "batches", "images")
    batches.update(counted=128)
    batches.update(counted=128)
    assert batches.done == 2 and batches.counted == 256


def test_usable_cpus_is_this_process_affinity() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cpus() == expected
