"""`imagenet-tools bench`: does the input pipeline keep up with the model? (issue 7)

In one process, on the same data, batch size and device, it times
  pipeline      DALI batches consumed without a model             (images/s)
  model         training steps on a synthetic batch on the device (images/s)
  e2e           DALI -> training steps                            (images/s, fraction of time waiting for data)
  pil-pipeline  the PyTorch DataLoader + PIL baseline, no model   (same number of workers as DALI threads)
  pil-e2e       the baseline -> training steps
then prints a table, and writes JSON (--json) and a bar chart (--png).

    imagenet-tools make-bench-data bench_data --count 2000
    imagenet-tools prepare bench_data --out bench_lists
    imagenet-tools bench --root bench_data --lists bench_lists --device cpu --threads 2 --batch-size 64 \\
        --steps 20 --warmup 3 --json bench.json --png bench.png

Comma-separated values sweep: --threads 1,2,4 --batch-size 64,128 --amp off,bf16 --hw-decoder-load 0,0.65.
Several --root (each with its --lists/--list, or one list for all roots) compare data sets, e.g. full-size
images against prepare's 256-resized copy. Warm-up batches are never timed.
"""
from __future__ import annotations

import gc
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
import torch

from pipeline.config import DataConfig
from pipeline.errors import InputError, user_errors
from tools.benchmark.modes import (Timing, endless, make_train_step, median_timing, synthetic_batch, time_end_to_end,
                               time_model, time_pipeline)
from tools.benchmark.options import (AMP_CHOICES, ARCH, COMPILE_MODES, NUM_CLASSES, BenchOptions, Dataset, choices,
                                 config_json, default_threads, hw_loads, positive, resolve_datasets, split_values)
from tools.benchmark.report import MODES, draw_chart, format_table, load_average, machine_info, row_result, utc_now
from tools.benchmark.stages import format_stages, profile_stages

def torch_device(device: str) -> torch.device:
    """"cpu" or "gpu" -> the torch device the model runs on (checks that CUDA is there for "gpu")."""
    if device == "gpu":
        if not torch.cuda.is_available():
            raise InputError("--device gpu but torch sees no CUDA device; use --device cpu here")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def data_config(options: BenchOptions, dataset: Dataset, point: dict[str, Any], backend: str) -> DataConfig:
    """The DataConfig of one sweep point: the same data, batch, device and worker count for both backends."""
    gpu = options.device == "gpu"
    extra = {} if point["hw_decoder_load"] is None else {"hw_decoder_load": point["hw_decoder_load"]}
    return DataConfig(
        root=dataset.root, train_list=dataset.train_list, batch_size=point["batch_size"],
        device="gpu" if gpu else "cpu", device_id=torch.cuda.current_device() if gpu else None,
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


def run_bench(options: BenchOptions, make_loader: Callable | None = None) -> dict[str, Any]:
    """Run every mode at every sweep point.

    Args:
        options: what to sweep and what to keep fixed.
        make_loader: the loader factory (default pipeline.loader.make_loader).

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
        return _run(options, make_loader, device)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before  # a caller in the same process gets its setting back


def _run(options: BenchOptions, make_loader: Callable, device: torch.device) -> dict:
    runner, points = Runner(options, make_loader, device), sweep_points(options)
    report = {"machine": machine_info(device), "date": utc_now(), "config": config_json(options), "results": []}
    for index, (dataset, point) in enumerate(points, start=1):
        timings = {}
        for mode in options.modes:
            timings[mode] = runner.measure(mode, dataset, point)
            print(f"bench [{index}/{len(points)}] {mode:<12} {dataset.name} threads={point['threads']} "
                  f"batch={point['batch_size']} amp={point['amp']}: {timings[mode].images_per_s:,.1f} images/s",
                  file=sys.stderr, flush=True)
        report["results"].append(row_result(point, timings))
    report["machine"]["load_average_end"] = load_average()
    return report


def run_stages(options: BenchOptions) -> dict[str, dict[str, float]]:
    """tools.bench_stages' CPU-time profile of each data set, at the first thread count and batch size."""
    point = {"threads": options.threads[0], "batch_size": options.batch_sizes[0], "hw_decoder_load": None}
    return {dataset.name: profile_stages(data_config(options, dataset, point, "dali"), options.steps, options.warmup)
            for dataset in options.datasets}


@click.command("bench")
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path), help="Image folder (repeat to compare data sets).")
@click.option("--lists", "lists_dirs", multiple=True, type=click.Path(path_type=Path), help="prepare's output folder (uses its train.txt).")
@click.option("--list", "lists", multiple=True, type=click.Path(path_type=Path), help="A file list instead of --lists.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None, help="Default: gpu if CUDA is available.")
@click.option("--threads", default=default_threads, show_default="usable CPUs", help="DALI threads = DataLoader workers, comma-separated to sweep.")
@click.option("--batch-size", default="128", show_default=True, help="Comma-separated to sweep.")
@click.option("--hw-decoder-load", default=None, help="GPU only: share of JPEGs for the hardware decoder, comma-separated to sweep.")
@click.option("--amp", default="off", show_default=True, help="off or bf16, comma-separated to sweep.")
@click.option("--channels-last", is_flag=True, help="NHWC batches from the loader into a channels_last model.")
@click.option("--compile", "compile_mode", is_flag=False, flag_value="default", default=None,
              help="torch.compile the model; optional mode: --compile reduce-overhead (CUDA graphs).")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1), help="Timed batches per mode.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0), help="Untimed batches before them.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1),
              help="Run each measurement this many times and report the median (for a busy machine).")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Which measurements, comma-separated.")
@click.option("--arch", type=click.Choice(["alexnet", "alexnet_owt"]), default=ARCH, show_default=True)
@click.option("--stages", is_flag=True,
              help="Also profile CPU ms per image stage by stage (decode, resize, crop; DALI and PIL), CPU only.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the results here.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), help="Draw the bar chart here.")
@user_errors
def main(roots, lists_dirs, lists, device, threads, batch_size, hw_decoder_load, amp, channels_last,
         compile_mode, steps, warmup, repeat, modes, arch, stages, json_path, png_path) -> None:
    """Pipeline / model / end-to-end throughput, DALI vs the PyTorch DataLoader."""
    device = device or ("gpu" if torch.cuda.is_available() else "cpu")
    if compile_mode is not None:
        choices((compile_mode,), COMPILE_MODES, "--compile")
    if stages and device != "cpu":
        raise InputError("--stages profiles the CPU graph stage by stage; use it with --device cpu")
    if hw_decoder_load is not None and device != "gpu":
        raise InputError("--hw-decoder-load applies to the GPU decoder only; drop it or use --device gpu")
    options = BenchOptions(
        datasets=resolve_datasets(roots, lists_dirs, lists), device=device,
        threads=positive(split_values(threads, int, "--threads"), "--threads"),
        batch_sizes=positive(split_values(batch_size, int, "--batch-size"), "--batch-size"),
        hw_decoder_loads=hw_loads(hw_decoder_load, device),
        amps=choices(split_values(amp, str, "--amp"), AMP_CHOICES, "--amp"),
        channels_last=channels_last, compile_mode=compile_mode, steps=steps, warmup=warmup,
        modes=choices(split_values(modes, str, "--modes"), MODES, "--modes"), arch=arch, repeat=repeat,
    )
    report = run_bench(options)
    click.echo(format_table(report["results"]))
    if stages:
        report["stages"] = run_stages(options)
        for name, result in report["stages"].items():
            click.echo(format_stages(name, result))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        click.echo(f"wrote {json_path}")
    if png_path:
        title = f"{report['machine']['gpu_name'] or report['machine']['cpu_model']} ({device}), {arch}"
        draw_chart(report["results"], png_path, title)
        click.echo(f"wrote {png_path}")


if __name__ == "__main__":
    main()
