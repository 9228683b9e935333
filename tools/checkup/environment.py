"""The environment stage: what this machine and this installation are. It records, it does not judge: on a
machine without a GPU the GPU entries say so, and the stage still passes."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from pipeline.processes import usable_cpus
from tools.checkup.nvml import Nvml
from tools.checkup.plan import Settings
from tools.checkup.record import Outcome, Recorder

GIB = 1 << 30
# Environment variables that change what the GPU path does.
WATCHED_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE", "OMP_NUM_THREADS", "DALI_AFFINITY_MASK",
                     "ALEXNET_DDP_BACKEND")


def machine() -> Outcome:
    cpu_model = None
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", errors="replace") as handle:
            cpu_model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    figures = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
               "cpu_model": cpu_model, "cpu_count": os.cpu_count(), "cpus_usable": usable_cpus(),
               "environment": {name: os.environ[name] for name in WATCHED_VARIABLES if name in os.environ}}
    return Outcome(f"Python {figures['python']}, {usable_cpus()} of {os.cpu_count()} CPUs usable", figures)


def gpus(nvml: Nvml) -> list[dict]:
    """Name, memory, compute capability of every CUDA device torch sees."""
    import torch

    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append({"index": index, "name": props.name, "memory_gib": props.total_memory / GIB,
                      "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count})
    return found


def torch_info() -> Outcome:
    import torch

    nvml = Nvml()
    try:
        figures = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                   "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                   "driver": nvml.driver_version(), "gpus": gpus(nvml) if torch.cuda.is_available() else [],
                   "threads": torch.get_num_threads()}
    finally:
        nvml.close()
    if not figures["gpus"]:
        why = "a CPU build of torch" if figures["cuda_build"] is None else "no CUDA device visible"
        return Outcome(f"torch {figures['torch']} ({why})", figures)
    names = ", ".join(f"{g['name']} ({g['memory_gib']:.0f} GiB)" for g in figures["gpus"])
    return Outcome(f"torch {figures['torch']}, CUDA {figures['cuda_build']}, cuDNN {figures['cudnn']}, {names}, "
                   f"driver {figures['driver']}", figures)


def dali_builds() -> list[str]:
    """The installed DALI distributions: nvidia-dali-cuda120 (CUDA 12) or nvidia-dali-cuda130 (CUDA 13)."""
    names = {(dist.metadata["Name"] or "").lower() for dist in importlib.metadata.distributions()}
    return sorted(name for name in names if name.startswith("nvidia-dali"))


def dali_info() -> Outcome:
    import nvidia.dali
    import nvidia.dali.backend as backend

    builds = dali_builds()
    figures = {"dali": nvidia.dali.__version__, "builds": builds,
               "flavour": builds[0].rsplit("-", 1)[-1] if len(builds) == 1 else None,
               # DALI's CUDA runtime (0 where no driver is loaded) and nvImageCodec, which does the decoding.
               "cuda_runtime": backend.GetCudaVersion(), "nvimgcodec": backend.GetNvimgcodecVersion(),
               "location": os.path.dirname(nvidia.dali.__file__)}
    build = figures["flavour"] or ("none found" if not builds else "several: " + ", ".join(builds))
    return Outcome(f"DALI {figures['dali']} ({build})", figures)


def libraries() -> Outcome:
    versions = {}
    for name in ("numpy", "pillow", "click", "matplotlib", "scipy", "pytest"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return Outcome("", versions)


def environment(record: Recorder, settings: Settings) -> None:
    record.check("machine", machine)
    record.check("torch", torch_info)
    record.check("dali", dali_info)
    record.check("libraries", libraries)
