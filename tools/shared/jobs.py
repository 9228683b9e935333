"""The one way the tools run many jobs: a process pool, a progress line, and the number of usable CPUs.

    verdicts = run_jobs(check_one, paths, usable_cpus(), "check (header)")     # in order, with progress

    progress = Progress("compute-pca", len(images), "images")                 # or, job by job:
    with job_pool(workers, "compute-pca") as map_jobs:
        for count, moments, skipped in map_jobs(sum_chunk, chunks):
            progress.update(count, len(skipped))
    progress.finish()

A job is a picklable call (a module-level function or a functools.partial of one); results come back in
the order of the jobs.
Workers start as pipeline.processes.worker_start_method() says, the one policy of every process pool of
the toolkit (the PIL DataLoader's too).
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Callable, Iterator, Sequence

from pipeline.errors import InputError
from pipeline.processes import worker_start_method

# The progress line is redrawn in place at most this often on a terminal (seconds) ...
REDRAW_EVERY_S = 0.5
# ... and written as a new line at most this often into a log (stderr not a terminal), so logs stay short.
LOG_EVERY_S = 10.0


class Progress:
    """One progress line on stderr: `label: done/total unit, rate rate_unit/s[, N skipped]`.

    Args:
        label: what is being done.
        total: jobs to do.
        unit: what a job is ("files", "images", "batches").
        rate_unit: what the rate counts, when not jobs (e.g. images, for jobs that are batches).
        every, log_every: seconds between lines on a terminal (redrawn in place) and in a log.
    """

    def __init__(self, label: str, total: int, unit: str = "files", rate_unit: str | None = None,
                 every: float = REDRAW_EVERY_S, log_every: float = LOG_EVERY_S) -> None:
        self.label, self.total, self.unit, self.rate_unit = label, total, unit, rate_unit or unit
        self.done = self.skipped = self.counted = 0
        self.tty = sys.stderr.isatty()
        self.every = every if self.tty else log_every
        self.start = self.last = time.monotonic()

    def update(self, done: int = 1, skipped: int = 0, counted: int | None = None) -> None:
        """`done` more jobs finished, `skipped` of them failed; `counted`: what they add to the rate (default `done`)."""
        self.done += done
        self.skipped += skipped
        self.counted += done if counted is None else counted
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(end="" if self.tty else "\n")

    def rate(self) -> float:
        """Rate units per second since the start."""
        return self.counted / max(time.monotonic() - self.start, 1e-9)

    def finish(self) -> None:
        """Write the final state on a line of its own (also before an error, whose line then starts afresh)."""
        self._write(end="\n")

    def _write(self, end: str) -> None:
        line = f"{self.label}: {self.done}/{self.total} {self.unit}, {self.rate():,.1f} {self.rate_unit}/s"
        line += f", {self.skipped} skipped" if self.skipped else ""
        sys.stderr.write(("\r" + line + "   " if self.tty else line) + end)
        sys.stderr.flush()


@contextmanager
def job_pool(workers: int, name: str) -> Iterator[Callable]:
    """A `map_jobs(func, jobs, chunksize)` that yields `func(job)` for each job in order, on `workers` processes.

    Args:
        workers: processes; 1 runs the jobs in this process (no start-up cost, easy to debug and test).
        name: the tool, named in the error when a worker dies.

    Raises:
        InputError: a worker process died (killed for memory?).
    """
    if workers <= 1:
        yield lambda func, jobs, chunksize=1: map(func, jobs)
        return
    # ProcessPoolExecutor, not multiprocessing.Pool: a worker killed (e.g. for memory) breaks the pool with an
    # error instead of leaving the parent waiting forever for the lost chunk.
    executor = ProcessPoolExecutor(workers, mp_context=get_context(worker_start_method()))
    try:
        yield executor.map
    except BrokenProcessPool:
        executor.shutdown(wait=False, cancel_futures=True)
        raise InputError(f"a {name} worker process died (killed for memory?); rerun with --workers 1 to see "
                         "which file, and drop it") from None
    except BaseException:
        # An error or an early stop: do not wait for the remaining jobs (each worker stops after its current one).
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def run_jobs(func: Callable, jobs: Sequence, workers: int, label: str, unit: str = "files",
             chunksize: int | None = None, name: str | None = None) -> list:
    """`[func(job) for job in jobs]` on `workers` processes, in order, with a progress line.

    Args:
        func: a picklable function of one job.
        jobs: the work.
        workers: processes (1: in this process).
        label, unit: the progress line's words.
        name: the tool, named in the error when a worker dies (default: the label).
        chunksize: jobs sent to a worker at once; default: about 8 chunks per worker, at most 512 jobs, so
            that pickling does not dominate cheap jobs (a header check takes ~0.1 ms).

    Returns:
        The results, in the order of `jobs`.
    """
    chunksize = chunksize or max(1, min(512, len(jobs) // (max(workers, 1) * 8)))
    progress, results = Progress(label, len(jobs), unit), []
    try:
        with job_pool(workers, name or label) as map_jobs:
            for result in map_jobs(func, jobs, chunksize=chunksize):
                results.append(result)
                progress.update()
    finally:
        progress.finish()
    return results
