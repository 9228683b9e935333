"""How worker processes are started, for every process pool of the toolkit (PIL DataLoader, tools.shared.jobs)."""
from __future__ import annotations

import multiprocessing
import os
import sys


def worker_start_method() -> str:
    """"fork" (fast, works from any script) unless this process already runs DALI or CUDA threads: a fork
    copies the locks those threads hold, and a worker can then wait on one forever (seen in the tests:
    prepare's pool after a DALI pipeline in the same process). Then "spawn", which needs the usual
    `if __name__ == "__main__":` guard in the calling script."""
    torch = sys.modules.get("torch")
    cuda_running = torch is not None and torch.cuda.is_initialized()
    if "nvidia.dali.backend" in sys.modules or cuda_running:
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count), shared among the
    processes torchrun starts on this node (LOCAL_WORLD_SIZE); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity masks (macOS)
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cpus // max(local, 1))
