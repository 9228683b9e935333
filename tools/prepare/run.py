"""One `prepare` run: scan the tree, check every file, re-encode what needs it, write the lists and reports.

`tools/prepare_imagenet.py` is its command line; docs/prepare.md has the details.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from pipeline.errors import InputError
from tools.prepare.check import DEFAULT_MAX_ASPECT, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, check_file
from tools.prepare.layouts import SPLITS, Dataset, scan
from tools.prepare.outputs import check_outputs
from tools.prepare.reencode import write_jpeg
from tools.prepare.report import (account, summarize, write_ignored, write_lists, write_rejected,
                                  write_summary)
from tools.prepare.parquet import looks_like_parquet, prepare_parquet
from tools.prepare.shards import looks_like_shards, prepare_shards, refuse_resize
from tools.prepare.tree import has_image_name
from tools.prepare.unpack import refuse_class_tars, unpack_class_tars
from pipeline.processes import usable_cpus
from tools.shared.jobs import run_jobs

JPEG_SUFFIXES = (".jpeg", ".jpg")
# Fewer files than this are checked in this process: a header check takes ~0.1 ms, less than a pool's start.
POOL_FROM_FILES = 64


@dataclass(frozen=True)
class PrepareOptions:
    """What `prepare` does; the CLI flags of the same names (see `imagenet-tools prepare --help`)."""

    root: Path
    out: Path
    layout: str = "auto"
    devkit: Path | None = None
    check: str = "header"
    on_bad: str = "repair"
    repair_dir: Path | None = None
    resize: int | None = None
    resized_root: Path | None = None
    quality: int = 90
    workers: int | None = None
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT
    unpack: bool = False
    skip_empty_classes: bool = False
    shards_out: Path | None = None


def _usable_names(items: list[tuple[str, str, str]]) -> tuple[list, list[tuple[str, str]]]:
    """Split off files whose names cannot be written into a file list (line breaks, undecodable bytes); the
    reports write such names escaped (tools.prepare.report.escape_name)."""
    good, bad = [], []
    for item in items:
        rel = item[1]
        if "\n" in rel or "\r" in rel:
            bad.append((rel, "line break in the file name (a file list holds one name per line)"))
            continue
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            bad.append((rel, "file name is not valid UTF-8 (file lists are UTF-8)"))
            continue
        good.append(item)
    return good, bad


def _output_name(rel: str, status: str) -> str:
    """Where a re-encoded image goes, relative to its new root: a non-JPEG name gets `.JPEG` added."""
    return rel if status == "ok" or rel.lower().endswith(JPEG_SUFFIXES) else rel + ".JPEG"


def _convert(options: PrepareOptions, todo: list, workers: int) -> tuple[list, list, dict]:
    """Re-encode images (resize all, or repair the bad ones) into their new root.

    Args:
        options: the run's settings (repair_dir already filled in).
        todo: (index, split, rel, class id, status, width, height) of the images to write.
        workers: processes.

    Returns:
        (listed, failed, report): listed rows are (index, Listed) with the new list path; failed rows
        are (index, rel, reason); report has the seconds taken and how many files were written or kept.
    """
    resizing = options.resize is not None
    base = options.resized_root if resizing else options.repair_dir
    names = [_output_name(row[2], row[4]) for row in todo]
    jobs = [(str(options.root / row[2]), str(base / name), row[4] == "ok") for row, name in zip(todo, names)]
    start = time.perf_counter()
    label = f"resize to {options.resize}" if resizing else "repair"
    results = run_jobs(partial(write_jpeg, quality=options.quality, shorter=options.resize), jobs,
                       _pool_size(workers, jobs), label, name="prepare")
    listed, failed = [], []
    for (index, split, rel, class_id, _, width, height), name, (outcome, message) in zip(todo, names, results):
        if outcome == "nospace":
            raise InputError(f"{message}: free some space and run the same command again "
                             "(complete copies already written are kept)")
        if outcome == "nowrite":
            raise InputError(f"{message}; make the folder writable or choose another "
                             f"{'--resized-root' if resizing else '--repair-dir'}")
        if outcome == "failed":
            failed.append((index, rel, message))
            continue
        # Resized: relative to --resized-root. Repaired: relative to ROOT, through `..` (see docs/prepare.md).
        list_path = name if resizing else os.path.relpath(base.resolve() / name, options.root.resolve())
        listed.append((index, (split, list_path, class_id, width, height)))
    outcomes = Counter(outcome for outcome, _ in results)
    redone = Counter(message for outcome, message in results if outcome == "redone")
    return listed, failed, {"convert_s": round(time.perf_counter() - start, 3), "written": outcomes["done"],
                            "kept": outcomes["kept"], "redone": dict(redone)}


def _triage(options: PrepareOptions, items: list, verdicts: list) -> tuple[list, list, list, list, dict]:
    """Sort checked files into listed as they are, to re-encode, rejected, and ignored (not images at all).

    Returns:
        (listed, todo, rejected, ignored, fixable): listed rows are (index, Listed), todo rows as _convert
        takes them, rejected and ignored rows (index, rel, reason), fixable maps rel -> why it needs
        re-encoding.
    """
    listed, todo, rejected, ignored, fixable = [], [], [], [], {}
    for index, ((split, rel, cid), (status, reason, width, height)) in enumerate(zip(items, verdicts)):
        if status == "reject" and not has_image_name(rel):  # README.txt in a class folder: not a bad image
            why = reason if reason.startswith("not an image") else f"not an image ({reason})"
            ignored.append((index, rel, why))
            continue
        if status == "reject" or (status == "fix" and options.on_bad == "reject"):
            rejected.append((index, rel, reason))
            continue
        if status == "fix":
            fixable[rel] = reason
        if options.resize is not None or status == "fix":
            todo.append((index, split, rel, cid, status, width, height))
        else:
            listed.append((index, (split, rel, cid, width, height)))
    return listed, todo, rejected, ignored, fixable


def _check_all(options: PrepareOptions, items: list, workers: int) -> list:
    """The verdict of every file (tools.prepare.check), on `workers` processes."""
    paths = [str(options.root / rel) for _, rel, _ in items]
    return run_jobs(partial(check_file, check=options.check, min_side=options.min_side,
                            max_pixels=options.max_pixels, max_aspect=options.max_aspect),
                    paths, _pool_size(workers, paths), f"check ({options.check})", name="prepare")


def prepare(options: PrepareOptions) -> dict:
    """Scan, check, optionally repair/resize, and write the lists; see the module docstring.

    Args:
        options: the run's settings.

    Returns:
        The summary written to summary.json, plus "written": the files written.

    Raises:
        InputError: no such folder, an output inside ROOT or not writable, unknown layout, label files
            missing, no images, a class folder with no valid image (unless skip_empty_classes), a full disk,
            class tars in train/ not unpacked (unless unpack; then an unsafe or unreadable tar).
    """
    if not options.root.is_dir():
        raise InputError(f"{options.root}: no such folder; give the folder that holds train/ and val/")
    options = replace(options, repair_dir=options.repair_dir or options.out / "repaired")
    if options.layout == "parquet" or (options.layout == "auto" and looks_like_parquet(options.root)):
        refuse_resize(options)
        check_outputs(options.root, options.out, options.repair_dir, None, None, options.quality, False)
        return prepare_parquet(options, options.shards_out)
    if options.layout == "webdataset" or (options.layout == "auto" and looks_like_shards(options.root)):
        check_outputs(options.root, options.out, options.repair_dir, None, None, options.quality, False)
        return prepare_shards(options)
    repairs = options.on_bad == "repair" and options.resize is None
    new_repair_dir = repairs and not options.repair_dir.exists()
    check_outputs(options.root, options.out, options.repair_dir, options.resized_root, options.resize,
                  options.quality, repairs)
    unpacked = unpack_class_tars(options.root) if options.unpack else []
    refuse_class_tars(options.root, options.out)
    try:
        return _run(options, unpacked)
    finally:
        if new_repair_dir and options.repair_dir.is_dir() and not any(options.repair_dir.iterdir()):
            options.repair_dir.rmdir()  # made for the writability check; nothing needed repair


def _run(options: PrepareOptions, unpacked: list[str]) -> dict:
    """prepare() once its outputs are known to be writable."""
    root, out = options.root, options.out
    workers = options.workers or usable_cpus()
    start = time.perf_counter()
    dataset = scan(root, options.layout, options.devkit)
    items = [(split, rel, cid) for split in SPLITS for rel, cid in dataset.entries.get(split, [])]
    items, bad_names = _usable_names(items)
    if not items:
        raise InputError(f"{root}: no images found in the {dataset.layout} layout (see docs/prepare.md for the "
                         "layouts)")
    scan_s = time.perf_counter() - start
    present = {(split, class_id) for split, _, class_id in items}
    empty = _empty_class_folders(dataset, present, dataset.rejected + bad_names, dataset.ignored)
    if empty and not options.skip_empty_classes:  # known before the check: say so now, not minutes later
        _write_reports(out, dataset, dataset.rejected + bad_names, dataset.ignored, empty)
        _refuse_empty(root, out, empty)
    rows, repaired, rejected, not_images, timing = _check_and_convert(options, items, workers)
    rejections = dataset.rejected + bad_names + rejected
    ignored = sorted(dataset.ignored + not_images)
    files = account(dataset.found, len(rows) - len(repaired), len(repaired), len(rejections), len(ignored))
    empty = _empty_class_folders(dataset, {(split, cid) for split, _, cid, _, _ in rows}, rejections, ignored)
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()}
    list_root = options.resized_root if options.resize else root
    settings.update(layout=dataset.layout, lists_relative_to=str(list_root.resolve()), unpacked=unpacked)
    summary = summarize(rows, dataset.classes, repaired, rejections, settings,
                        {"scan_s": round(scan_s, 3), **timing, "workers": workers}, ignored=ignored, files=files,
                        empty_class_folders=[folder for folder, _ in empty])
    written = _write_reports(out, dataset, rejections, ignored, empty)
    if empty and not options.skip_empty_classes:
        _refuse_empty(root, out, empty)
    try:
        written += write_lists(out, rows, dataset.classes, SPLITS) + [write_summary(out, summary)]
    except OSError as error:
        raise _cannot_write(out, error) from None
    summary["written"] = [str(path) for path in written]
    return summary


def _check_and_convert(options: PrepareOptions, items: list, workers: int) -> tuple[list, list, list, list, dict]:
    """Check every candidate image and re-encode those that need it (repair, --resize).

    Returns:
        (rows, repaired, rejected, ignored, timing): the listed images (Listed, in scan order), the repaired
        ones (path, why, copy), rejected and ignored (path, why), and the check/convert timing.
    """
    start = time.perf_counter()
    verdicts = _check_all(options, items, workers)
    check_s = time.perf_counter() - start
    listed, todo, rejected, not_images, fixable = _triage(options, items, verdicts)
    converted_report, repaired = {"convert_s": 0.0, "written": 0, "kept": 0, "redone": {}}, []
    if todo:
        converted, failed, converted_report = _convert(options, todo, workers)
        listed += converted
        rejected += failed
        base = options.resized_root if options.resize is not None else options.repair_dir
        failed_rels = {rel for _, rel, _ in failed}
        repaired = [(rel, fixable[rel], str(base / _output_name(rel, "fix"))) for _, _, rel, *_ in todo
                    if rel in fixable and rel not in failed_rels]
    timing = {"check_s": round(check_s, 3), "check_files_per_s": round(len(items) / max(check_s, 1e-9)),
              **converted_report}
    return ([row for _, row in sorted(listed)], repaired, [(rel, why) for _, rel, why in sorted(rejected)],
            [(rel, why) for _, rel, why in not_images], timing)


def _pool_size(workers: int, jobs: list) -> int:
    """`workers`, or 1 (this process) for fewer than POOL_FROM_FILES jobs."""
    return workers if len(jobs) >= POOL_FROM_FILES else 1


def _write_reports(out: Path, dataset: Dataset, rejected: list, ignored: list, empty: list) -> list[Path]:
    """rejected.tsv (files, unreadable folders, class folders without an image) and ignored.tsv (files, links
    to folders already walked)."""
    try:
        return [write_rejected(out, rejected + dataset.unreadable + [(f"{f}/", why) for f, why in empty]),
                write_ignored(out, ignored + dataset.loops)]
    except OSError as error:
        raise _cannot_write(out, error) from None


def _cannot_write(out: Path, error: OSError) -> InputError:
    return InputError(f"{out}: cannot write the lists ({error.strerror or error}); free some space or choose "
                      "another --out")


def _refuse_empty(root: Path, out: Path, empty: list) -> None:
    more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
    raise InputError(f"{root / empty[0][0]}: no valid image in this class folder{more} (reasons in "
                     f"{out / 'rejected.tsv'}); add images, remove the folder, or pass --skip-empty-classes to "
                     "go on without it")


def _empty_class_folders(dataset: Dataset, present: set, rejected: list, ignored: list) -> list:
    """(folder, why) for each class folder that gives its class no image in its split (`present`: the (split,
    class id) pairs that have one): an error unless skip_empty_classes, and rows in rejected.tsv either way."""
    unreadable = {folder.rstrip("/") for folder, _ in dataset.unreadable}
    empty = []
    for (split, class_id), folder in sorted(dataset.class_dirs.items()):
        if (split, class_id) not in present:
            inside = [sum(rel.startswith(folder + "/") for rel, _ in rows) for rows in (rejected, ignored)]
            what = ("it could not be read" if folder in unreadable else
                    f"{inside[0]} rejected, {inside[1]} ignored files" if any(inside) else "empty folder")
            empty.append((folder, f"no valid image in this class folder ({what})"))
    return empty
