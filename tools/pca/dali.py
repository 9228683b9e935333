"""compute-pca with DALI: the training pipeline's own decode -> resize -> centre-crop graph.

`device="gpu"` decodes with nvJPEG ("mixed") and resizes on the GPU, and the moments are summed there
too (float64 sums of integers: exact). `device="cpu"` runs the same graph on CPU operators
(device_id=None, no CUDA needed): that is what the CPU tests exercise, and what was measured against PIL.

DALI fails a whole batch when one image is bad and leaves the pipeline unusable. So files are read here
(missing or empty ones are skipped before DALI sees them), and a failed batch is retried one image at a
time on fresh pipelines to find the culprit(s).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.shard_reader import EncodedImages
from tools.pca.pil import Item, ProgressCallback, Skip, fail_on
from tools.pca.stats import PixelMoments, moments_of

# Images per DALI batch.
BATCH_SIZE = {"cpu": 32, "gpu": 256}


def build_pipeline(device: str, batch_size: int, num_threads: int, device_id: int | None):
    """A DALI pipeline: encoded bytes in (external source "jpegs"), uint8 256x256x3 stored images out.

    Args:
        device: "gpu" (mixed decoder, GPU resize) or "cpu".
        batch_size: most images per batch (a batch may hold fewer).
        num_threads: DALI CPU threads.
        device_id: CUDA device, or None for a CPU-only pipeline.

    Returns:
        The built pipeline.
    """
    from nvidia.dali import fn, types

    # The training graph's own preprocessing (pipeline/graphs.py), so PCA sees what training sees.
    from pipeline.graphs import conditional_pipeline, decode_stored

    cfg = DataConfig(root=Path("."), device=device, device_id=device_id, num_threads=num_threads)

    def graph():
        jpegs = fn.external_source(name="jpegs", dtype=types.UINT8, device="cpu")
        return decode_stored(cfg, jpegs)

    pipe = conditional_pipeline(graph, batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                                prefetch_queue_depth=1)
    pipe.build()
    return pipe


class _Summer:
    """Sums a batch of stored images into moments: on the GPU for GPU outputs, else with NumPy.

    CPU batches are summed on a helper thread while DALI decodes the next batch (NumPy's loops release
    the GIL), so the cores do not take turns idling. `submit` returns a Future either way.
    """

    def __init__(self, device_id: int | None) -> None:
        self.device_id = device_id
        self.thread = ThreadPoolExecutor(1) if device_id is None else None

    def submit(self, output, count: int) -> Future:
        if self.thread is not None:
            pixels = np.array(output.as_tensor())  # a copy: DALI reuses its buffers on the next run
            return self.thread.submit(moments_of, pixels, count)
        import torch

        return _done(torch_moments(output, count, torch.device("cuda", self.device_id)))

    def close(self) -> None:
        if self.thread is not None:
            self.thread.shutdown(wait=True)


def torch_moments(output, count: int, device) -> PixelMoments:
    """Moments of a DALI batch of uint8 HWC images, summed with torch on `device` (the GPU's own memory).

    Args:
        output: a dense DALI TensorList (GPU or CPU) of count x 256 x 256 x 3 uint8.
        count: images in it.
        device: torch.device to sum on ("cuda", i) for GPU outputs; "cpu" works too (tests).

    Returns:
        The exact integer sums: float64 sums of uint8 values and products stay integers below 2**53; the
        per-pixel sums are int64 (1.5 MB per batch comes back from the GPU).
    """
    import torch
    from nvidia.dali.plugin.pytorch import feed_ndarray

    dense = output.as_tensor()  # one (count, 256, 256, 3) tensor: feed_ndarray wants its shape to match
    batch = torch.empty(dense.shape(), dtype=torch.uint8, device=device)
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    feed_ndarray(dense, batch, cuda_stream=stream)
    pixels = batch.reshape(-1, 3).to(torch.float64)
    sums = pixels.sum(dim=0).tolist()
    products = (pixels.T @ pixels).tolist()
    return PixelMoments(
        n_images=count,
        n_pixels=pixels.shape[0],
        sums=[int(v) for v in sums],
        products=[[int(v) for v in row] for row in products],
        image_sums=batch.sum(dim=0, dtype=torch.int64).cpu().numpy(),  # per-pixel sums: the mean image
    )


def _read(images: EncodedImages, item: Item) -> tuple[np.ndarray | None, str]:
    try:
        data = np.frombuffer(images.read(item[1]), dtype=np.uint8)
    except (OSError, InputError) as error:  # InputError: a shard that ends inside the sample
        return None, f"{type(error).__name__}: {error}"
    return (data, "") if data.size else (None, "empty file")


def run_dali(
    images: EncodedImages,
    items: Sequence[Item],
    device: str,
    workers: int,
    on_error: str,
    list_path: Path,
    progress: ProgressCallback,
    device_id: int | None = 0,
) -> tuple[PixelMoments, list[Skip]]:
    """Moments of all items with DALI.

    Args:
        images: reads the list's files or shard samples (pipeline.shard_reader.EncodedImages).
        items: (list index, relative path) pairs.
        device: "gpu" or "cpu".
        workers: DALI CPU threads.
        on_error: "skip" records bad images; "fail" raises at the first one.
        list_path: the file list, named in error messages.
        progress: called after each batch with (images done, images skipped).
        device_id: CUDA device for "gpu"; ignored (None) for "cpu".

    Returns:
        (moments, skips sorted by list index).

    Raises:
        InputError: a bad image with on_error="fail".
    """
    device_id = device_id if device == "gpu" else None
    batch_size = BATCH_SIZE[device]
    make = lambda size: build_pipeline(device, size, max(1, workers), device_id)  # noqa: E731
    summer = _Summer(device_id)
    try:
        return _run_batches(images, items, batch_size, make, summer, on_error, list_path, progress)
    finally:
        summer.close()


def _run_batches(
    images: EncodedImages, items: Sequence[Item], batch_size: int, make: Callable, summer: _Summer, on_error: str,
    list_path: Path, progress: ProgressCallback,
) -> tuple[PixelMoments, list[Skip]]:
    total, skipped = PixelMoments(), []
    pipe = make(batch_size)
    pending: tuple[Future, int, int] | None = None  # the previous batch's sum, images done, skipped
    for start in range(0, len(items), batch_size):
        batch, bad = [], []
        for item in items[start : start + batch_size]:
            data, reason = _read(images, item)
            if data is None:
                bad.append((*item, reason))
            else:
                batch.append((item, data))
        moments, failed = None, False
        if batch:
            try:
                pipe.feed_input("jpegs", [data for _, data in batch])
                (output,) = pipe.run()
                moments = summer.submit(output, len(batch))
            except Exception:  # DALI raises RuntimeError/ValueError/IndexError subclasses for bad data
                failed = True
        if failed:  # outside the except block, whose traceback would keep the broken pipeline alive
            del pipe  # free its decoder buffers (hundreds of MB per thread on a GPU) before building others
            good, culprits = _one_by_one(batch, make, summer)
            total, bad = total + good, bad + culprits
            pipe = make(batch_size)
        if bad and on_error == "fail":
            raise fail_on(min(bad), list_path)
        skipped.extend(bad)
        if pending is not None:
            total = total + pending[0].result()
            progress(pending[1], pending[2])
        pending = (moments or _done(PixelMoments()), len(batch) + len(bad), len(bad))
    if pending is not None:
        total = total + pending[0].result()
        progress(pending[1], pending[2])
    return total, sorted(skipped)


def _done(value: PixelMoments) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _one_by_one(
    batch: list[tuple[Item, np.ndarray]], make: Callable, summer: _Summer
) -> tuple[PixelMoments, list[Skip]]:
    """Retry a failed batch image by image; a failure leaves the pipeline unusable, so rebuild then."""
    total, bad = PixelMoments(), []
    pipe = make(1)
    for item, data in batch:
        reason = None
        try:
            pipe.feed_input("jpegs", [data])
            (output,) = pipe.run()
            total = total + summer.submit(output, 1).result()
        except Exception as error:  # noqa: BLE001 - any DALI failure here is this one image's
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reason = f"DALI: {first_line}"
        if reason is not None:  # rebuilt outside the except block (see _run_batches)
            bad.append((*item, reason))
            del pipe
            pipe = make(1)
    return total, bad
