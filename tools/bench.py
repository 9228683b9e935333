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

import json
from dataclasses import replace
from pathlib import Path

import click

from model.alexnet import ARCHS
from pipeline.devices import announce, canonical, device_option, resolve_device
from pipeline.errors import InputError, user_errors
from pipeline.atomic import write_atomic
from pipeline.writable import writable_file
from tools.benchmark.options import (AMP_CHOICES, ARCH, COMPILE_MODES, BenchOptions, check_epochs, choices,
                                     default_threads, hw_loads, positive, resolve_datasets, split_values)
from tools.benchmark.report import MODES, draw_chart, format_table
from tools.benchmark.runner import run_bench, run_stages
from tools.benchmark.stages import format_stages


@click.command("bench")
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path), help="Image folder (repeat to compare data sets).")
@click.option("--lists", "lists_dirs", multiple=True, type=click.Path(path_type=Path), help="prepare's output folder (uses its train.txt).")
@click.option("--list", "lists", multiple=True, type=click.Path(path_type=Path), help="A file list instead of --lists.")
@device_option()
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
@click.option("--arch", type=click.Choice(ARCHS), default=ARCH, show_default=True)
@click.option("--stages", is_flag=True,
              help="Also profile CPU ms per image stage by stage (decode, resize, crop; DALI and PIL), CPU only.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the results here.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), help="Draw the bar chart here.")
@user_errors
def main(roots, lists_dirs, lists, device, threads, batch_size, hw_decoder_load, amp, channels_last,
         compile_mode, steps, warmup, repeat, modes, arch, stages, json_path, png_path) -> None:
    """Pipeline / model / end-to-end throughput, DALI vs the PyTorch DataLoader."""
    for path, flag in ((json_path, "--json"), (png_path, "--png")):
        if path is not None:
            writable_file(path, flag)  # before minutes of measuring, not after
    if compile_mode is not None:
        choices((compile_mode,), COMPILE_MODES, "--compile")
    if stages and canonical(device) not in ("cpu", "auto"):
        raise InputError("--stages profiles the CPU graph stage by stage; use it with --device cpu")
    chosen = resolve_device(device)
    if stages and chosen.cuda:  # auto on a GPU machine: --stages still means the CPU graph
        chosen = replace(chosen, asked="auto with --stages", name="cpu")
    if hw_decoder_load is not None and not chosen.cuda:
        raise InputError("--hw-decoder-load applies to the GPU decoder only; drop it or use --device cuda")
    options = BenchOptions(
        datasets=resolve_datasets(roots, lists_dirs, lists), device=chosen.name,
        threads=positive(split_values(threads, int, "--threads"), "--threads"),
        batch_sizes=positive(split_values(batch_size, int, "--batch-size"), "--batch-size"),
        hw_decoder_loads=hw_loads(hw_decoder_load, chosen.name),
        amps=choices(split_values(amp, str, "--amp"), AMP_CHOICES, "--amp"),
        channels_last=channels_last, compile_mode=compile_mode, steps=steps, warmup=warmup,
        modes=choices(split_values(modes, str, "--modes"), MODES, "--modes"), arch=arch, repeat=repeat,
    )
    warning = check_epochs(options)  # a batch larger than a data set: an error here, before any measurement
    announce(chosen)
    if warning:
        click.echo(warning, err=True)
    report = run_bench(options, on_mode=None if json_path is None else lambda partial: _write_json(json_path, partial))
    click.echo(format_table(report["results"]))
    if stages:
        report["stages"] = run_stages(options)
        for name, result in report["stages"].items():
            click.echo(format_stages(name, result))
    if json_path:
        _write_json(json_path, report)
        click.echo(f"wrote {json_path}")
    if png_path:
        title = f"{report['machine']['gpu_name'] or report['machine']['cpu_model']} ({chosen.name}), {arch}"
        click.echo(f"wrote {draw_chart(report['results'], png_path, title)}")


def _write_json(path: Path, report: dict) -> None:
    """The report so far (rewritten after each measurement: a run stopped midway leaves what it measured)."""
    write_atomic(path, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
