"""`compute-pca --backend pil`: PIL decode + resize in worker processes, exact NumPy moments per image.

The pixels are pipeline.pil_image.stored_pixels' (tools.pca.stats.PREPROCESSING). PIL is the default with
--device cpu because it cost less CPU per image here than DALI's CPU operators (tools/pca/dali.py; docs/pca.md).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

from PIL import Image

from pipeline.errors import InputError
from pipeline.pil_image import stored_pixels
from pipeline.shard_reader import EncodedImages
from tools.pca.stats import PixelMoments, moments_of
from tools.shared.jobs import job_pool

# (index in the file list, path relative to ROOT)
Item = tuple[int, str]
# (index in the file list, path relative to ROOT, why it was skipped)
Skip = tuple[int, str, str]
# Called after each chunk with (images done, images skipped) for that chunk.
ProgressCallback = Callable[[int, int], None]

# Images per task sent to a worker: large enough that pickling is negligible, small enough for a
# progress line that moves and for an even split of the last tasks.
CHUNK = 32
# What a bad image can raise in PIL: OSError covers missing, unreadable, truncated and unidentified
# files (UnidentifiedImageError is an OSError); SyntaxError/ValueError come from some plugins;
# DecompressionBombError from images over twice Image.MAX_IMAGE_PIXELS; MemoryError from an image
# whose resized size does not fit (a 1 x 100,000 strip becomes 256 x 25.6 M).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, MemoryError, Image.DecompressionBombError)


def image_moments(path) -> PixelMoments:
    """Moments of one image (a file's path, or a file object) after the paper's preprocessing
    (pipeline.pil_image.stored_pixels)."""
    with warnings.catch_warnings():
        # Large images warn before they would raise; the pixels are still used.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            return moments_of(stored_pixels(image))


def chunk_moments(images: EncodedImages, items: Sequence[Item]) -> tuple[PixelMoments, list[Skip]]:
    """Moments of a list of images; unreadable ones are returned as skips, not raised.

    Args:
        images: reads the list's files or shard samples (pipeline.shard_reader.EncodedImages).
        items: (list index, relative path) pairs.

    Returns:
        (summed moments of the good images, skips).
    """
    total, skipped = PixelMoments(), []
    for index, relpath in items:
        try:
            total = total + image_moments(images.open(relpath))
        except (*IMAGE_ERRORS, InputError) as error:  # InputError: a shard that ends inside the sample
            skipped.append((index, relpath, f"{type(error).__name__}: {error}".strip()))
    return total, skipped


def _chunk_task(task: tuple[EncodedImages, list[Item]]) -> tuple[int, PixelMoments, list[Skip]]:
    images, items = task
    moments, skipped = chunk_moments(images, items)
    return len(items), moments, skipped


def fail_on(skip: Skip, list_path: Path) -> InputError:
    """The one-line error of --on-error fail for a bad image."""
    index, relpath, reason = skip
    return InputError(
        f"{list_path}:{index + 1}: cannot read image {relpath} ({reason}); remove it from the list "
        "(`imagenet-tools prepare ROOT --out DIR --check decode`) or pass --on-error skip"
    )


def run_pil(
    images: EncodedImages, items: Sequence[Item], workers: int, on_error: str, list_path: Path,
    progress: ProgressCallback,
) -> tuple[PixelMoments, list[Skip]]:
    """Moments of all items with PIL, in `workers` processes (1: in this process).

    Args:
        images: reads the list's files or shard samples; each task carries only its own samples' index entries.
        items: (list index, relative path) pairs.
        workers: processes (tools.shared.jobs; 1: in this process); the sums are exact, so the result does
            not depend on this.
        on_error: "skip" records unreadable images; "fail" raises at the first one.
        list_path: the file list, named in error messages.
        progress: called after each chunk.

    Returns:
        (moments, skips sorted by list index).

    Raises:
        InputError: an unreadable image with on_error="fail".
    """
    chunks = [list(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]
    tasks = [(images.subset([path for _, path in chunk]), chunk) for chunk in chunks]
    with job_pool(workers, "compute-pca") as map_jobs:
        return _collect(map_jobs(_chunk_task, tasks), on_error, list_path, progress)


def _collect(
    results: Iterator, on_error: str, list_path: Path, progress: ProgressCallback
) -> tuple[PixelMoments, list[Skip]]:
    total, skipped = PixelMoments(), []
    for count, moments, bad in results:
        if bad and on_error == "fail":
            raise fail_on(min(bad), list_path)
        total = total + moments
        skipped.extend(bad)
        progress(count, len(bad))
    return total, sorted(skipped)
