"""bench's runner: every timed mode at every sweep point, each measurement reused where its inputs did not
change. `tools/bench.py` is its command line; docs/BENCHMARKS.md has the results.
"""
from __future__ import annotations

import gc
import itertools
import sys
from typing import Any, Callable

import torch

from pipeline.config import DataConfig
from pipeline.devices import parse_device
from tools.benchmark.modes import (Timing, endless, make_train_step, median_timing, synthetic_batch, time_end_to_end,
                                   time_model, time_pipeline)
from tools.benchmark.options import NUM_CLASSES, BenchOptions, Dataset, config_json
from tools.benchmark.report import load_average, machine_info, row_result, utc_now
from tools.benchmark.stages import profile_stages


def torch_device(device: str) -> torch.device:
    """"cpu", "cuda" or "cuda:N" -> the torch device the model runs on (checked: InputError without it)."""
    return parse_device(device, f"--device {device}")


def data_config(options: BenchOptions, dataset: Dataset, point: dict[str, Any], backend: str) -> DataConfig:
    """The DataConfig of one sweep point: the same data, batch, device and worker count for both backends."""
    gpu = options.device != "cpu"
    extra = {} if point["hw_decoder_load"] is None else {"hw_decoder_load": point["hw_decoder_load"]}
    return DataConfig(
        root=dataset.root, train_list=dataset.train_list, batch_size=point["batch_size"],
        device="gpu" if gpu else "cpu", device_id=torch_device(options.device).index if gpu else None,
        backend=backend, num_threads=point["threads"],
        layout="NHWC" if options.channels_last else "NCHW", **extra,
    )


class Runner:
    """Runs the modes of each sweep point, reusing a measurement wherever its inputs did not change
    (the model does not depend on the data or the thread count, the PIL baseline not on the hardware
    decoder's load, a pipeline-only time not on the precision)."""

    def __init__(self, options: BenchOptions, make_loader: Callable, device: torch.device) -> None:
        self.options, self.make_loader, self.device = options, make_loader, device
        self.cache: dict[tuple, Timing] = {}
        self.steps: dict[str, Callable] = {}
        self.model: torch.nn.Module | None = None

    def train_step(self, amp: str) -> Callable:
        """One training-step function per precision, all on one model (weights are irrelevant here)."""
        if amp not in self.steps:
            if self.model is None:
                from model.alexnet import build_model

                model = build_model(self.options.arch, NUM_CLASSES).to(self.device)
                if self.options.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                self.model = model
            self.steps[amp] = make_train_step(self.model, self.device, amp, self.options.compile_mode,
                                              self.options.channels_last)
        return self.steps[amp]

    def measure(self, mode: str, dataset: Dataset, point: dict[str, Any]) -> Timing:
        """Time one mode at one sweep point (or return the cached time of an equivalent point)."""
        data_key = (dataset, point["threads"], point["batch_size"])
        key = {
            "pipeline": (mode, *data_key, point["hw_decoder_load"]),
            "model": (mode, point["batch_size"], point["amp"]),
            "e2e": (mode, *data_key, point["hw_decoder_load"], point["amp"]),
            "pil-pipeline": (mode, *data_key),
            "pil-e2e": (mode, *data_key, point["amp"]),
        }[mode]
        if key not in self.cache:
            runs = [self._run(mode, dataset, point) for _ in range(self.options.repeat)]
            self.cache[key] = runs[0] if len(runs) == 1 else median_timing(runs)
        return self.cache[key]

    def _run(self, mode: str, dataset: Dataset, point: dict[str, Any]) -> Timing:
        opts, label = self.options, f"{mode} {dataset.name} threads={point['threads']} batch={point['batch_size']}"
        if mode == "model":
            batch = synthetic_batch(point["batch_size"], self.device, opts.channels_last, NUM_CLASSES)
            return time_model(self.train_step(point["amp"]), batch, opts.steps, opts.warmup, self.device, label)
        backend = "pil" if mode.startswith("pil") else "dali"
        loader = self.make_loader(data_config(opts, dataset, point, backend), "train")
        batches = endless(loader)
        try:
            if mode.endswith("pipeline"):
                # Both loaders hand over batches on the run's device (a GPU graph's outputs, or the
                # baseline's pinned copy), so the clock includes the baseline's host-to-device copy.
                return time_pipeline(batches, opts.steps, opts.warmup, self.device, label)
            step = self.train_step(point["amp"])
            return time_end_to_end(batches, step, opts.steps, opts.warmup, self.device, opts.channels_last, label)
        finally:
            # Stop DataLoader workers and DALI threads before the next measurement starts its own.
            batches.close()
            del batches, loader
            gc.collect()


def sweep_points(options: BenchOptions) -> list[tuple[Dataset, dict[str, Any]]]:
    """Every combination of the swept values, data set outermost."""
    product = itertools.product(options.datasets, options.threads, options.batch_sizes,
                                options.hw_decoder_loads, options.amps)
    return [
        (dataset, {"data": dataset.name, "root": str(dataset.root), "list": str(dataset.train_list),
                   "threads": threads, "batch_size": batch, "hw_decoder_load": hw, "amp": amp,
                   "channels_last": options.channels_last, "compile": options.compile_mode})
        for dataset, threads, batch, hw, amp in product
    ]


def run_bench(options: BenchOptions, make_loader: Callable | None = None,
              on_mode: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run every mode at every sweep point.

    Args:
        options: what to sweep and what to keep fixed.
        make_loader: the loader factory (default pipeline.loader.make_loader).
        on_mode: called with the report so far ("complete": False, the row in progress with the modes
            measured) after each measurement, e.g. to write it to a file as it grows.

    Returns:
        The report: {"machine", "date", "config", "results": [one row per sweep point]}.
    """
    if make_loader is None:
        from pipeline.loader import make_loader
    device = torch_device(options.device)
    benchmark_before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input shape per run: let cuDNN pick the fastest kernels
    try:
        return _run(options, make_loader, device, on_mode)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before  # a caller in the same process gets its setting back


def _run(options: BenchOptions, make_loader: Callable, device: torch.device,
         on_mode: Callable[[dict], None] | None) -> dict:
    runner, points = Runner(options, make_loader, device), sweep_points(options)
    report = {"machine": machine_info(device), "date": utc_now(), "config": config_json(options), "results": [],
              "complete": False}
    for index, (dataset, point) in enumerate(points, start=1):
        timings = {}
        for mode in options.modes:
            timings[mode] = runner.measure(mode, dataset, point)
            print(f"bench [{index}/{len(points)}] {mode:<12} {dataset.name} threads={point['threads']} "
                  f"batch={point['batch_size']} amp={point['amp']}: {timings[mode].images_per_s:,.1f} images/s",
                  file=sys.stderr, flush=True)
            if on_mode is not None:
                on_mode({**report, "results": report["results"] + [row_result(point, timings)]})
        report["results"].append(row_result(point, timings))
    report["machine"]["load_average_end"] = load_average()
    report["complete"] = True
    return report


def run_stages(options: BenchOptions) -> dict[str, dict[str, float]]:
    """tools.benchmark.stages' CPU-time profile of each data set, at the first thread count and batch size."""
    point = {"threads": options.threads[0], "batch_size": options.batch_sizes[0], "hw_decoder_load": None}
    return {dataset.name: profile_stages(data_config(options, dataset, point, "dali"), options.steps, options.warmup)
            for dataset in options.datasets}
