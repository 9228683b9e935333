"""One selftest stage in its own process: `python -m tools.checkup.stage NAME SETTINGS_JSON RESULT_JSON [ENDS_AT]`.

The selftest (tools/checkup/run.py) starts one such process per stage with a time limit, so that a crash
(a DALI abort, a segfault, a CUDA error, memory) ends this process only. The stage's checks write RESULT_JSON
as they go (tools/checkup/record.py); the exit status is 0 whenever the result was written, whatever it says.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

from tools.checkup.plan import STAGE_NAMES, Settings
from tools.checkup.record import Outcome, Recorder

# stage -> "module:function"; each function takes (Recorder, Settings) and runs the stage's checks.
FUNCTIONS = {
    "environment": "tools.checkup.environment:environment",
    "data": "tools.checkup.data:data",
    "dali-gpu": "tools.checkup.dali_gpu:dali_gpu",
    "pca-cpu": "tools.checkup.pca_devices:pca_cpu",
    "pca-gpu": "tools.checkup.pca_devices:pca_gpu",
    "pipelines-cpu": "tools.checkup.pipelines:pipelines_cpu",
    "pipelines-gpu": "tools.checkup.pipelines:pipelines_gpu",
    "shards": "tools.checkup.shard_stage:shards",
    "model-cpu": "tools.checkup.network:model_cpu",
    "model-gpu": "tools.checkup.network:model_gpu",
    "train": "tools.checkup.training:train",
    "compile": "tools.checkup.compiled:compile_stage",
    "bench": "tools.checkup.throughput:bench",
}
assert set(FUNCTIONS) == set(STAGE_NAMES)


def injected(kind: str, name: str) -> Outcome:
    """The test switch (selftest --inject NAME:KIND): a check that raises, a process that dies, or one that
    never ends."""
    if kind == "crash":
        sys.stderr.flush()
        os.abort()  # SIGABRT, as a failed DALI or CUDA assertion ends a process
    if kind == "hang":
        while True:
            time.sleep(60)
    raise RuntimeError(f"injected failure (--inject {name}:{kind})")


# The wall-clock time (time.time()) at which the selftest kills this stage: a check with a deadline of its own
# (the DDP ranks, tools/checkup/ddp.py) ends before it, so that its error is reported instead of a timeout.
ENDS_AT_ENV = "SELFTEST_STAGE_ENDS_AT"


def main(argv: list[str]) -> int:
    name, settings_path, result_path, *ends_at = argv
    if ends_at:
        os.environ[ENDS_AT_ENV] = ends_at[0]
    settings = Settings.load(Path(settings_path))
    record = Recorder(name, Path(result_path))
    kind = settings.inject.get(name)
    if kind:
        record.check("injected", injected, kind, name)
    else:
        module, function = FUNCTIONS[name].split(":")
        getattr(importlib.import_module(module), function)(record, settings)
    record.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
