"""The data stage: the files every later stage reads, made as a user makes them (make-bench-data,
make-demo-data, prepare, each its own process), and nvJPEG's buffers sized from them.

- bench: ImageNet-like JPEGs (~500x375, quality 90) plus four odd files that prepare must handle: a
  grayscale JPEG, a CMYK JPEG and a PNG named .JPEG (repaired: re-encoded as RGB JPEGs) and a text file
  named .JPEG (rejected). Listed as they are (full size: the graphs resize them) and as prepare's 256 copy.
- shapes: the demo's learnable classes, 256-resized, for the training stage.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from pipeline.constants import RESIZE_SHORTER
from pipeline.decoder_memory import (FULL_SIZE_DEVICE_PADDING, FULL_SIZE_HOST_PADDING, MIB, RUN_PIPELINES,
                                     DecoderPadding, memory_estimate, padding_from_lists)
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, Outcome, Recorder
from tools.shared.stages import Stages

GIB = 1 << 30
BENCH_CLASSES = 4
# The odd files and what prepare must do with each.
ODD_FILES = {"odd_grayscale.JPEG": "repair", "odd_cmyk.JPEG": "repair", "odd_png.JPEG": "repair",
             "odd_text.JPEG": "reject"}
# The thread count of the memory estimate that issue 13 quotes (a 16-core GPU machine).
ESTIMATE_THREADS = 16


def write_odd_files(folder: Path) -> None:
    """The odd files, drawn from the first generated image of the class folder."""
    with Image.open(sorted(folder.glob("*.JPEG"))[0]) as image:
        image = image.convert("RGB")
    image.convert("L").save(folder / "odd_grayscale.JPEG", "JPEG", quality=90)
    image.convert("CMYK").save(folder / "odd_cmyk.JPEG", "JPEG", quality=90)
    image.save(folder / "odd_png.JPEG", "PNG")
    (folder / "odd_text.JPEG").write_text("not an image\n")


def generate(runner: Stages, paths: WorkPaths, settings: Settings) -> Outcome:
    sizes = settings.sizes
    val = max(BENCH_CLASSES, sizes.bench_train // 4)
    runner.tool("make-bench-data", "make-bench-data", paths.bench, "--count", sizes.bench_train, "--val-count", val,
                "--classes", BENCH_CLASSES, "--workers", settings.workers)
    write_odd_files(paths.bench / "train" / "n00000000")
    runner.tool("make-demo-data", "make-demo-data", paths.shapes, "--classes", sizes.classes, "--train-per-class",
                sizes.train_per_class, "--val-per-class", sizes.val_per_class, "--workers", settings.workers)
    return Outcome("", {"bench_train": sizes.bench_train, "bench_val": val, "odd_files": list(ODD_FILES)})


def listed_counts(lists: Path) -> dict:
    """Images per split, repaired and rejected, from prepare's summary.json."""
    summary = json.loads((lists / "summary.json").read_text())
    counts = {split: entry["images"] for split, entry in summary["splits"].items()}
    return {**counts, "repaired": summary["repaired"]["count"], "rejected": summary["rejected"]["count"]}


def prepare_bench(runner: Stages, paths: WorkPaths, settings: Settings, resize: bool) -> Outcome:
    lists = paths.bench_lists256 if resize else paths.bench_lists
    extra = ["--resize", RESIZE_SHORTER, "--resized-root", paths.bench256] if resize else []
    runner.tool("prepare", "prepare", paths.bench, "--out", lists, *extra, "--workers", settings.workers)
    counts = listed_counts(lists)
    sizes = settings.sizes
    expected = {"train": sizes.bench_train + 3, "val": max(BENCH_CLASSES, sizes.bench_train // 4), "repaired": 3,
                "rejected": 1}
    summary = (f"{sizes.bench_train} + {expected['val']} generated JPEGs and {len(ODD_FILES)} odd files: {counts['train']} + "
               f"{counts['val']} listed ({counts['repaired']} repaired, {counts['rejected']} rejected)")
    if counts != expected:
        raise CheckFailed(f"prepare listed {counts}, expected {expected}", counts)
    if resize:
        shorter = set()
        for path in paths.bench256.rglob("*.JPEG"):
            with Image.open(path) as image:
                shorter.add(min(image.size))
        if shorter != {RESIZE_SHORTER}:
            raise CheckFailed(f"resized files with shorter sides {sorted(shorter)}, not {RESIZE_SHORTER}", counts)
    return Outcome(summary if not resize else "", counts)


def prepare_shapes(runner: Stages, paths: WorkPaths, settings: Settings) -> Outcome:
    runner.tool("prepare", "prepare", paths.shapes, "--out", paths.shapes_lists, "--resize", RESIZE_SHORTER,
                "--resized-root", paths.shapes256, "--workers", settings.workers)
    counts = listed_counts(paths.shapes_lists)
    sizes = settings.sizes
    if counts["train"] != sizes.classes * sizes.train_per_class or counts["rejected"]:
        raise CheckFailed(f"prepare listed {counts} of the shapes set", counts)
    return Outcome("", counts)


def padding_figures(padding: DecoderPadding, threads: int) -> dict:
    estimate = memory_estimate(padding, threads, RUN_PIPELINES)
    return {"device_mib": padding.device / MIB, "host_mib": padding.host / MIB, "source": padding.source,
            "threads": threads, "pipelines": RUN_PIPELINES, "device_gib": estimate["device_bytes"] / GIB,
            "pinned_gib": estimate["pinned_bytes"] / GIB}


def decoder_buffers(paths: WorkPaths, settings: Settings) -> Outcome:
    """nvJPEG's per-thread buffers for these files (what model.train now sets), and what they add up to."""
    full, resized = padding_from_lists(paths.bench_lists), padding_from_lists(paths.bench_lists256)
    old = DecoderPadding(FULL_SIZE_DEVICE_PADDING, FULL_SIZE_HOST_PADDING, "DALI's examples (full-size ImageNet)")
    figures = {"full_size": padding_figures(full, ESTIMATE_THREADS),
               "resized_256": padding_figures(resized, ESTIMATE_THREADS),
               "at_workers": padding_figures(resized, settings.workers),
               "previous_default": padding_figures(old, ESTIMATE_THREADS)}
    now, before = figures["resized_256"], figures["previous_default"]
    summary = (f"nvJPEG buffers {now['device_mib']:.0f} MiB + 2 x {now['host_mib']:.0f} MiB pinned a thread: "
               f"{now['device_gib']:.2f} + {now['pinned_gib']:.2f} GiB for {RUN_PIPELINES} pipelines x {ESTIMATE_THREADS} "
               f"threads (full-size padding: {before['device_gib']:.1f} + {before['pinned_gib']:.1f} GiB)")
    return Outcome(summary, figures)


def data(record: Recorder, settings: Settings) -> None:
    paths = WorkPaths(Path(settings.work))
    runner = Stages(None, "selftest")
    record.check("generate", generate, runner, paths, settings)
    if not record.passed("generate"):
        return
    record.check("prepare", prepare_bench, runner, paths, settings, False)
    record.check("prepare --resize 256", prepare_bench, runner, paths, settings, True)
    record.check("prepare shapes", prepare_shapes, runner, paths, settings)
    record.check("nvjpeg buffers", decoder_buffers, paths, settings)
