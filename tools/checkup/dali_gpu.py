"""The dali-gpu stage: do DALI's GPU operators run here, and is nvJPEG's hardware JPEG decoder used?

DALI 2.4 says (fn.decoders.image): "For JPEG, a dedicated HW decoder will be used when available", and
`hw_decoder_load` is "the percentage of the image data to be processed by the HW JPEG decoder" (A100, H100,
H200, ...: GPUs with NVJPG engines; the driver must expose them, e.g. docker's `video` capability). DALI has
no Python call that says whether it found one, so this stage decodes the same files with hw_decoder_load 0
and 1 and watches the NVJPG engines' utilisation through NVML (tools/checkup/nvml.py) while it does.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from pipeline.filelist import read_file_list
from tools.checkup.nvml import Nvml
from tools.checkup.pca_devices import list_root
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, NotApplicable, Outcome, Recorder

DECODE_SECONDS = 3.0  # per hw_decoder_load: long enough for NVML's 1/6-1 s utilisation samples
SAMPLE_EVERY_S = 0.05


def files(paths: WorkPaths) -> list[str]:
    """The full-size generated JPEGs (ImageNet-sized), absolute paths."""
    root = list_root(paths.bench_lists)
    return [str(root / path) for path, _ in read_file_list(paths.bench_lists / "train.txt")]


def decoder(names: list[str], batch: int, threads: int, device: str, hw_load: float = 0.0):
    """A pipeline that only reads and decodes (device "mixed": nvJPEG, "cpu": libjpeg-turbo) and resizes the
    result on the same device to 224x224, so that batches have one shape."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None if device == "cpu" else 0, seed=0)
    def graph():
        jpegs, _ = fn.readers.file(files=names, name="Reader")
        options = {"hw_decoder_load": hw_load} if device == "mixed" else {}
        images = fn.decoders.image(jpegs, device=device, output_type=types.RGB, **options)
        return fn.resize(images, resize_x=224, resize_y=224, antialias=False)

    pipe = graph()
    pipe.build()
    return pipe


def gpu_operators(paths: WorkPaths, settings: Settings) -> Outcome:
    """nvJPEG + a GPU resize against libjpeg-turbo + the CPU resize on the same files."""
    names = files(paths)[: settings.sizes.batch]
    gpu = decoder(names, len(names), settings.workers, "mixed").run()[0].as_cpu()
    cpu = decoder(names, len(names), settings.workers, "cpu").run()[0]
    delta = np.abs(np.stack([np.array(gpu[i]) for i in range(len(names))]).astype(np.float64)
                   - np.stack([np.array(cpu[i]) for i in range(len(names))]))
    figures = {"images": len(names), "max_abs_diff": float(delta.max()), "mean_abs_diff": float(delta.mean())}
    summary = f"nvJPEG + GPU resize run; {delta.mean():.2f} grey levels from the CPU's on average"
    if delta.mean() > 2.0:
        raise CheckFailed(f"GPU decode differs from the CPU's by {delta.mean():.2f} grey levels on average", figures)
    return Outcome(summary, figures)


def nvml_index() -> int:
    """NVML's index of CUDA device 0 (they differ under CUDA_VISIBLE_DEVICES or another device order)."""
    import torch

    try:
        return int(torch.cuda._get_nvml_device_index(0))
    except Exception:  # noqa: BLE001 - a private helper of torch; CUDA's order is NVML's by default
        return 0


def decode_rate(names: list[str], settings: Settings, hw_load: float, nvml: Nvml) -> tuple[float, int | None]:
    """(images/s, the highest NVJPG utilisation seen) over DECODE_SECONDS of decoding."""
    pipe = decoder(names, settings.sizes.batch, settings.workers, "mixed", hw_load)
    pipe.run()  # untimed: the first batch allocates
    peak, done, stop = [None], [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            percent, _ = nvml.jpeg_utilization(nvml_index())
            if percent is not None:
                peak[0] = max(peak[0] or 0, percent)
            time.sleep(SAMPLE_EVERY_S)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    while time.monotonic() - start < DECODE_SECONDS:
        last = pipe.run()
        done[0] += settings.sizes.batch
    last[0].as_cpu()  # wait for the GPU
    rate = done[0] / (time.monotonic() - start)
    stop.set()
    watcher.join()
    return rate, peak[0]


def hardware_decoder(paths: WorkPaths, settings: Settings) -> Outcome:
    nvml = Nvml()
    try:
        _, why = nvml.jpeg_utilization(nvml_index())
        names = files(paths)
        rate0, _ = decode_rate(names, settings, 0.0, nvml)
        rate1, peak = decode_rate(names, settings, 1.0, nvml)
    finally:
        nvml.close()
    figures = {"images_per_s_hw_load_0": rate0, "images_per_s_hw_load_1": rate1, "nvjpg_peak_percent": peak,
               "nvml": why or "ok", "batch": settings.sizes.batch, "threads": settings.workers}
    if why:
        verdict = f"no hardware JPEG decoder seen ({why})"
    elif peak:
        verdict = f"hardware JPEG decoder used (NVJPG up to {peak} %)"
    else:
        verdict = "hardware JPEG decoder present but idle at hw_decoder_load 1"
    figures["verdict"] = verdict
    return Outcome(f"{verdict}; {rate1:,.0f} vs {rate0:,.0f} images/s at hw_decoder_load 1 vs 0", figures)


def dali_gpu(record: Recorder, settings: Settings) -> None:
    if not settings.cuda:
        record.check("gpu operators", _no_cuda)
        return
    paths = WorkPaths(Path(settings.work))
    record.check("gpu operators", gpu_operators, paths, settings)
    if record.passed("gpu operators"):
        record.check("hardware jpeg decoder", hardware_decoder, paths, settings)


def _no_cuda() -> Outcome:
    raise NotApplicable("no CUDA device")
