"""`imagenet-tools bench --stages`: where the CPU time of one image goes, stage by stage.

Wall-clock throughput on a shared machine swings with the load; the CPU time a process spends per image
(`time.process_time()`, all its threads) hardly does. Each probe runs a graph that stops after one more
stage than the previous probe, so the differences between lines are the stages' costs:

    dali read            the file reader alone
    dali decode          + JPEG decode (libjpeg-turbo)
    dali resize          + shorter side to 256 for every image, also those already 256 (the graph before
                         it skipped them: what the skip saves shows as a negative next line)
    dali stored          decode, shorter side to 256 where it is not, centre 256x256 crop:
                         pipeline.graphs' stored image
    dali train           the toolkit's whole training graph (pipeline.graphs.build_pipeline)
    pil decode           PIL open + convert("RGB")
    pil stored           pipeline.pil_image.stored_image (decode, resize, centre crop)
    pil train            pipeline.pil_loader's dataset item (stored image, crop, flip, lighting, normalise)

CPU graphs only (device "cpu"); the PIL probes run in this process, without DataLoader workers.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from pipeline.config import DataConfig
from pipeline.constants import RESIZE_SHORTER

DALI_STAGES = ("read", "decode", "resize", "stored", "train")
PIL_STAGES = ("decode", "stored", "train")


def _dali_probe(cfg: DataConfig, stage: str):
    """A built CPU pipeline that ends after `stage` (the toolkit's own graph for "train")."""
    from nvidia.dali import fn, types

    # The graph's own reader and stored-image nodes, so each probe times exactly what the toolkit runs.
    from pipeline.graphs import build_pipeline, conditional_pipeline, decode_stored, read_files
    from pipeline.splits import split_entries

    if stage == "train":
        pipe, _ = build_pipeline(cfg, "train")
        pipe.build()
        return pipe
    entries = split_entries(cfg, "train")

    def define():
        jpegs, _ = read_files(cfg, entries, True, 0, 1)
        if stage == "read":
            return jpegs
        if stage == "stored":
            return decode_stored(cfg, jpegs)
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        if stage == "resize":
            images = fn.resize(images, resize_shorter=RESIZE_SHORTER, antialias=True, interp_type=types.INTERP_LINEAR)
        return images

    pipe = conditional_pipeline(define, batch_size=cfg.batch_size, num_threads=cfg.num_threads, device_id=None,
                                seed=cfg.seed)
    pipe.build()
    return pipe


def _cpu_ms_per_image(run_once: Callable[[], int], batches: int, warmup: int) -> float:
    """CPU milliseconds of this process per image over `batches` calls of `run_once` (returns images)."""
    for _ in range(warmup):
        run_once()
    start, images = time.process_time(), 0
    for _ in range(batches):
        images += run_once()
    return 1000 * (time.process_time() - start) / images


def profile_stages(cfg: DataConfig, batches: int, warmup: int) -> dict[str, float]:
    """CPU ms per image of every probe, keyed "dali <stage>" / "pil <stage>".

    Args:
        cfg: a CPU DataConfig (root, train_list, batch size, threads).
        batches: timed batches per probe (the PIL probes time batches * batch_size images).
        warmup: untimed batches first.

    Returns:
        {"dali read": ms, ..., "pil train": ms}, in the order of the module docstring.
    """
    from pipeline.splits import split_entries
    from pipeline.lighting import colour_stats
    from pipeline.pil_image import stored_image
    from pipeline.pil_loader import ImageListDataset

    result = {}
    for stage in DALI_STAGES:
        pipe = _dali_probe(cfg, stage)
        result[f"dali {stage}"] = _cpu_ms_per_image(lambda: (pipe.run(), cfg.batch_size)[1], batches, warmup)
        del pipe
    entries = split_entries(cfg, "train")
    dataset = ImageListDataset(cfg.root, entries, "train", colour_stats(cfg.pca, cfg.normalize), cfg.crop,
                               cfg.pca_alpha_std)
    cursor = iter(range(10**12))

    def pil_batch(item: Callable[[int], object]) -> int:
        for _ in range(cfg.batch_size):
            item(next(cursor) % len(entries))
        return cfg.batch_size

    def decode(index: int):
        from PIL import Image

        with Image.open(Path(cfg.root) / entries[index][0]) as image:
            return image.convert("RGB")

    probes = {"decode": decode, "stored": lambda i: stored_image(Path(cfg.root) / entries[i][0]),
              "train": dataset.__getitem__}
    for stage in PIL_STAGES:
        result[f"pil {stage}"] = _cpu_ms_per_image(lambda: pil_batch(probes[stage]), batches, warmup)
    return result


def format_stages(name: str, stages: dict[str, float]) -> str:
    """One block of lines: each probe's CPU ms per image and what its stage added to the previous probe."""
    lines, previous = [f"CPU ms per image, {name} (process time, all threads):"], {}
    for key, value in stages.items():
        library = key.split()[0]
        added = "" if library not in previous else f"  ({value - previous[library]:+.2f})"
        lines.append(f"  {key:<12} {value:6.2f}{added}")
        previous[library] = value
    return "\n".join(lines)
