"""One `prepare` run: scan the tree, check every file, re-encode what needs it, write the lists and reports.

`tools/prepare_imagenet.py` is its command line; docs/prepare.md has the details.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from pipeline.errors import InputError
from tools.prepare.check import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, check_file
from tools.prepare.layouts import SPLITS, detect_layout, scan
from tools.prepare.reencode import write_jpeg
from tools.prepare.report import Listed, summarize, write_lists, write_rejected, write_summary
from pipeline.processes import usable_cpus
from tools.shared.jobs import run_jobs

JPEG_SUFFIXES = (".jpeg", ".jpg")
RESIZE_MARKER = ".prepare-resize.json"
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


def _usable_names(items: list[tuple[str, str, str]]) -> tuple[list, list[tuple[str, str]]]:
    """Split off files whose names cannot be written into a file list (line breaks, undecodable bytes)."""
    good, bad = [], []
    for item in items:
        rel = item[1]
        if "\n" in rel or "\r" in rel:
            bad.append((rel.replace("\n", "\\n").replace("\r", "\\r"), "line break in the file name"))
            continue
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            bad.append((rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                        "file name is not valid UTF-8"))
            continue
        good.append(item)
    return good, bad


def _output_name(rel: str, status: str) -> str:
    """Where a re-encoded image goes, relative to its new root: a non-JPEG name gets `.JPEG` added."""
    return rel if status == "ok" or rel.lower().endswith(JPEG_SUFFIXES) else rel + ".JPEG"


def _check_resize_settings(options: PrepareOptions) -> None:
    """Refuse to mix images of two different --resize/--quality runs in one resized tree."""
    resized_root = options.resized_root.resolve()
    if resized_root == options.root.resolve() or options.root.resolve() in resized_root.parents:
        raise InputError(f"{options.resized_root}: --resized-root must be outside ROOT ({options.root})")
    _make_folder(resized_root, "--resized-root")
    marker, settings = resized_root / RESIZE_MARKER, {"resize": options.resize, "quality": options.quality}
    if marker.is_file() and marker.read_text() != json.dumps(settings):
        raise InputError(f"{options.resized_root}: holds images written with {marker.read_text().strip()}; "
                         f"use a new --resized-root for {settings}")
    try:
        marker.write_text(json.dumps(settings))
    except OSError as error:
        raise InputError(f"{marker}: cannot write ({error.strerror or error}); free some space") from None


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
                             "(images already written are kept)")
        if outcome == "failed":
            failed.append((index, rel, message))
            continue
        # Resized: relative to --resized-root. Repaired: relative to ROOT, through `..` (see docs/prepare.md).
        list_path = name if resizing else os.path.relpath(base.resolve() / name, options.root.resolve())
        listed.append((index, (split, list_path, class_id, width, height)))
    outcomes = Counter(outcome for outcome, _ in results)
    return listed, failed, {"convert_s": round(time.perf_counter() - start, 3), "written": outcomes["done"],
                            "kept": outcomes["kept"]}


def _triage(options: PrepareOptions, items: list, verdicts: list) -> tuple[list, list, list, dict]:
    """Sort checked files into listed as they are, to re-encode, and rejected.

    Returns:
        (listed, todo, rejected, fixable): listed rows are (index, Listed), todo rows as _convert takes
        them, rejected rows (index, rel, reason), fixable maps rel -> why it needs re-encoding.
    """
    listed, todo, rejected, fixable = [], [], [], {}
    for index, ((split, rel, cid), (status, reason, width, height)) in enumerate(zip(items, verdicts)):
        if status == "reject" or (status == "fix" and options.on_bad == "reject"):
            rejected.append((index, rel, reason))
            continue
        if status == "fix":
            fixable[rel] = reason
        if options.resize is not None or status == "fix":
            todo.append((index, split, rel, cid, status, width, height))
        else:
            listed.append((index, (split, rel, cid, width, height)))
    return listed, todo, rejected, fixable


def prepare(options: PrepareOptions) -> dict:
    """Scan, check, optionally repair/resize, and write the lists; see the module docstring.

    Args:
        options: the run's settings.

    Returns:
        The summary written to summary.json, plus "written": the files written.

    Raises:
        InputError: no such folder, unknown layout, a devkit file missing, no images, a class folder
            with no valid image, a full disk while writing images.
    """
    root, out = options.root, options.out
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; give the folder that holds train/ and val/")
    options = replace(options, repair_dir=options.repair_dir or out / "repaired")
    _make_folder(out, "--out")
    if options.resized_root is not None:
        _check_resize_settings(options)
    workers = options.workers or usable_cpus()
    start = time.perf_counter()
    layout = detect_layout(root) if options.layout == "auto" else options.layout
    dataset = scan(root, layout, options.devkit)
    items = [(split, rel, cid) for split in SPLITS for rel, cid in dataset.entries.get(split, [])]
    items, bad_names = _usable_names(items)
    if not items:
        raise InputError(f"{root}: no images found in the {layout} layout (see docs/prepare.md for the layouts)")
    scan_s, start = time.perf_counter() - start, time.perf_counter()
    paths = [str(root / rel) for _, rel, _ in items]
    verdicts = run_jobs(partial(check_file, check=options.check, min_side=options.min_side,
                                max_pixels=options.max_pixels),
                        paths, _pool_size(workers, paths), f"check ({options.check})", name="prepare")
    check_s = time.perf_counter() - start
    listed, todo, rejected, fixable = _triage(options, items, verdicts)
    converted_report, repaired = {"convert_s": 0.0, "written": 0, "kept": 0}, []
    if todo:
        converted, failed, converted_report = _convert(options, todo, workers)
        listed += converted
        rejected += failed
        base = options.resized_root if options.resize is not None else options.repair_dir
        failed_rels = {rel for _, rel, _ in failed}
        repaired = [(rel, fixable[rel], str(base / _output_name(rel, "fix"))) for _, _, rel, *_ in todo
                    if rel in fixable and rel not in failed_rels]
    rows = [row for _, row in sorted(listed)]
    rejections = list(dataset.unlabelled) + bad_names + [(rel, why) for _, rel, why in sorted(rejected)]
    timing = {"scan_s": round(scan_s, 3), "check_s": round(check_s, 3),
              "check_files_per_s": round(len(items) / max(check_s, 1e-9)), **converted_report,
              "workers": workers}
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()}
    list_root = options.resized_root if options.resize else root
    settings.update(layout=layout, lists_relative_to=str(list_root.resolve()))
    summary = summarize(rows, dataset.classes, repaired, rejections, settings, timing)
    try:
        written = [write_rejected(out, rejections)]
        _require_every_class(root, out, dataset.class_dirs, rows)
        written += write_lists(out, rows, dataset.classes, SPLITS) + [write_summary(out, summary)]
    except OSError as error:
        raise InputError(f"{out}: cannot write the lists ({error.strerror or error}); "
                         "free some space or choose another --out") from None
    summary["written"] = [str(path) for path in written]
    return summary


def _pool_size(workers: int, jobs: list) -> int:
    """`workers`, or 1 (this process) for fewer than POOL_FROM_FILES jobs."""
    return workers if len(jobs) >= POOL_FROM_FILES else 1


def _make_folder(folder: Path, flag: str) -> None:
    """Create an output folder now, so a bad --out fails before hours of work, not after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{folder}: cannot create the {flag} folder ({error.strerror or error})") from None


def _require_every_class(root: Path, out: Path, class_dirs: dict, listed: list[Listed]) -> None:
    """A class folder whose every file was rejected is an error, not a silently missing class."""
    present = {(split, class_id) for split, _, class_id, _, _ in listed}
    for (split, class_id), folder in sorted(class_dirs.items()):
        if (split, class_id) not in present:
            raise InputError(f"{root / folder}: no valid image in this class folder (reasons in "
                             f"{out / 'rejected.tsv'}); add images or remove the folder")
