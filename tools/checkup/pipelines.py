"""The pipelines stages: the train / val / 10-crop DALI graphs on each device, on full-size files (decode +
resize) and on prepare's 256 copies (decode only), checked against NumPy; on a GPU also the GPU graphs
against the CPU graphs on the same files, and the memory the GPU pipelines take.

GPU vs CPU: nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's (DALI's jpeg_fancy_upsampling
is off by default), and the GPU resampler rounds differently: the stored images differ by a few grey
levels. The bound is tests/test_pipeline_loader.py's: a mean |difference| under 2 grey levels.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from pipeline.config import DataConfig
from pipeline.decoder_memory import MIB, RUN_PIPELINES, memory_estimate, padding_from_lists
from tools.checkup.graph_checks import SPLITS, against_numpy, difference, expected_raw, run_graph
from tools.checkup.pca_devices import list_root
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, NotApplicable, Outcome, Recorder

GPU_MEAN_BOUND = 2.0
GIB = 1 << 30
DATASETS = ("full size", "256")


def data_config(paths: WorkPaths, dataset: str, settings: Settings, device: str) -> DataConfig:
    lists = paths.bench_lists if dataset == "full size" else paths.bench_lists256
    padding = padding_from_lists(lists)
    return DataConfig(root=list_root(lists), train_list=lists / "train.txt", val_list=lists / "val.txt",
                      batch_size=settings.sizes.batch, device=device, device_id=0 if device == "gpu" else None,
                      num_threads=settings.workers, seed=1, device_memory_padding=padding.device,
                      host_memory_padding=padding.host)


def on_device(cfg: DataConfig, dataset: str) -> Outcome:
    """Every split of one device's graphs against NumPy; their outputs for the GPU comparison."""
    figures, outputs = {}, {}
    for split in SPLITS:
        outputs[split] = run_graph(cfg, split)
        figures[split] = against_numpy(outputs[split], split, cfg)
    worst = max(max(f["raw_max_abs_diff"], f["images_max_abs_diff"]) for f in figures.values())
    return Outcome(f"{dataset}: train, val, 10-crop as NumPy's (largest difference {worst:.1g})", figures, outputs)


def gpu_vs_cpu(gpu: dict, cpu: dict, cfg: DataConfig, dataset: str) -> Outcome:
    """The same files through both devices: stored images (decode, resize), the views, and the training
    crop with the GPU's drawn parameters applied to the CPU's stored image."""
    figures = {"stored (decode + resize)" if dataset == "full size" else "stored (decode)":
               difference(gpu["train"]["stored"], cpu["train"]["stored"])}
    figures["train crops, flips, lighting"] = difference(gpu["train"]["raw"],
                                                         expected_raw(gpu["train"], "train", cfg, cpu["train"]["stored"]))
    figures["val images"] = difference(gpu["val"]["images"], cpu["val"]["images"])
    figures["10-crop images"] = difference(gpu["ten_crop"]["images"], cpu["ten_crop"]["images"])
    for split in SPLITS:
        if (gpu[split]["labels"] != cpu[split]["labels"]).any():
            raise CheckFailed(f"{dataset}: the GPU and CPU {split} graphs read different files", figures)
    stored = next(iter(figures.values()))
    summary = (f"{dataset}: GPU - CPU stored images max {stored['max_abs_diff']:.0f}, mean "
               f"{stored['mean_abs_diff']:.2f} grey levels")
    worst = max(f["mean_abs_diff"] for f in figures.values())
    if worst > GPU_MEAN_BOUND:
        raise CheckFailed(f"{dataset}: GPU and CPU images differ by {worst:.2f} grey levels on average "
                          f"(bound {GPU_MEAN_BOUND})", figures, summary)
    return Outcome(summary, figures)


def resident_bytes() -> int:
    """This process's resident memory (pinned host buffers count once touched)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gpu_memory(paths: WorkPaths, settings: Settings) -> Outcome:
    """The three pipelines of a training run alive together (train, val, 10-crop), one batch each: the GPU
    memory and host memory they took, beside the estimate of nvJPEG's preallocated buffers."""
    import torch

    cfg = data_config(paths, "256", settings, "gpu")
    torch.cuda.init()
    free_before, total = torch.cuda.mem_get_info(0)
    rss_before = resident_bytes()
    pipes = []
    from pipeline.graphs import build_pipeline

    for split in SPLITS:
        pipe, _ = build_pipeline(cfg, split)
        pipe.build()
        pipe.run()
        pipes.append(pipe)
    free_after, _ = torch.cuda.mem_get_info(0)
    estimate = memory_estimate(padding_from_lists(paths.bench_lists256), settings.workers, RUN_PIPELINES)
    figures = {"threads": settings.workers, "batch": cfg.batch_size, "padding_device_mib": cfg.device_memory_padding / MIB,
               "padding_host_mib": cfg.host_memory_padding / MIB, "gpu_used_gib": (free_before - free_after) / GIB,
               "host_rss_growth_gib": (resident_bytes() - rss_before) / GIB, "gpu_total_gib": total / GIB,
               "estimate_device_gib": estimate["device_bytes"] / GIB, "estimate_pinned_gib": estimate["pinned_bytes"] / GIB}
    del pipes
    return Outcome(f"3 GPU pipelines x {settings.workers} threads: {figures['gpu_used_gib']:.2f} GiB GPU, host memory "
                   f"+{figures['host_rss_growth_gib']:.2f} GiB (nvJPEG buffers: {figures['estimate_device_gib']:.2f} "
                   f"+ {figures['estimate_pinned_gib']:.2f} GiB pinned)", figures)


def pipelines_cpu(record: Recorder, settings: Settings) -> None:
    paths = WorkPaths(Path(settings.work))
    for dataset in DATASETS:
        record.check(f"cpu graphs, {dataset}", on_device, data_config(paths, dataset, settings, "cpu"), dataset)


def pipelines_gpu(record: Recorder, settings: Settings) -> None:
    paths = WorkPaths(Path(settings.work))
    if not settings.cuda:
        record.check("gpu graphs", _not_applicable)
        return
    record.check("gpu memory", gpu_memory, paths, settings)  # first: DALI keeps its memory pools afterwards
    for dataset in DATASETS:
        gpu_cfg = data_config(paths, dataset, settings, "gpu")
        gpu = record.check(f"gpu graphs, {dataset}", on_device, gpu_cfg, dataset)
        cpu = record.check(f"cpu graphs, {dataset}", on_device, replace(gpu_cfg, device="cpu", device_id=None),
                           dataset) if gpu is not None else None
        if gpu is not None and cpu is not None:
            record.check(f"gpu vs cpu, {dataset}", gpu_vs_cpu, gpu, cpu, gpu_cfg, dataset)


def _not_applicable() -> Outcome:
    raise NotApplicable("no CUDA device")
