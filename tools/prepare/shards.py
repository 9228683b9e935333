"""`prepare` on a folder of webdataset shards (timm/imagenet-1k-wds: imagenet1k-train-0000.tar ...
imagenet1k-validation-63.tar; each sample KEY.jpg, KEY.cls, KEY.json).

Each tar is read once, sequentially (tools/prepare/shard_scan.py), one tar per worker. OUT gets an index file
per tar (OUT/index/<tar>.idx, DALI's format: the shards may be read-only), train.txt / val.txt with one line
per accepted sample (`<tar>:<key> <label>`, pipeline/shards.py), classes.tsv (label i is the i-th class; its
id is the WNID its samples' names carry, its name the .json's class_name), rejected.tsv, ignored.tsv and
summary.json as for a file tree.
"""
from __future__ import annotations

from collections import Counter

import os
import re
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.errors import InputError
from pipeline.processes import usable_cpus
from pipeline.shards import shard_entry
from tools.prepare.report import account, summarize, write_ignored, write_lists, write_rejected, write_summary
from tools.prepare.shard_scan import scan_tar
from tools.shared.jobs import run_jobs

# <anything>-<split>-<digits>.tar, the hub's naming; "validation" is val, test has no labels.
SHARD_NAME = re.compile(r"^.+-(?P<split>train|validation|val|test)-\d+\.tar$")
SPLIT_OF = {"train": "train", "validation": "val", "val": "val", "test": "test"}
# How deep below ROOT the tars may lie (ROOT/*.tar, ROOT/data/*.tar, ROOT/x/y/*.tar).
SEARCH_DEPTH = 3


def _files(root: Path, depth: int = SEARCH_DEPTH) -> list[str]:
    """Files under ROOT to `depth` folders down, relative, sorted (hidden folders skipped)."""
    found, pending = [], [("", 0)]
    while pending:
        rel, level = pending.pop()
        try:
            entries = list(os.scandir(root / rel if rel else root))
        except OSError:
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir() and not entry.name.startswith("."):
                if level + 1 < depth:
                    pending.append((path, level + 1))
            elif not entry.is_dir():
                found.append(path)
    return sorted(found)


def looks_like_shards(root: Path) -> bool:
    """Whether ROOT holds webdataset tars named like the hub's (and so is read as shards)."""
    return any(SHARD_NAME.match(rel.rsplit("/", 1)[-1]) for rel in _files(root) if rel.endswith(".tar"))


def _classes(found: dict[int, tuple[str, str]]) -> list[tuple[str, str]]:
    """(class id, name) for labels 0..max: the WNID the samples carry (else `label<N>`), the .json's name."""
    rows = []
    for label in range(max(found) + 1 if found else 0):
        wnid, name = found.get(label, ("", ""))
        rows.append((wnid or f"label{label}", name or wnid or f"label{label}"))
    if len({cid for cid, _ in rows}) != len(rows):  # two labels claim one WNID: the ids would merge classes
        rows = [(f"label{label}", name) for label, (_, name) in enumerate(rows)]
    return rows


def refuse_resize(options) -> None:
    """--resize on shards or parquet: refused before anything is read or converted."""
    if options.resize is not None:
        raise InputError("--resize does not apply to webdataset shards or hub parquet files (their samples are "
                         "read as they are); drop --resize: the training graph resizes each image to 256 itself "
                         "(docs/prepare.md)")


def prepare_shards(options, extra_rejected: list = (), extra_ignored: list = (), layout: str = "webdataset") -> dict:
    """prepare() for a shard folder (options: tools.prepare.run.PrepareOptions, outputs already checked);
    extra rows (what the parquet conversion rejected or ignored, tools/prepare/parquet.py) join the reports."""
    refuse_resize(options)
    root, out = options.root, options.out
    workers = options.workers or usable_cpus()
    start = time.perf_counter()
    files = _files(root, depth=64)
    tars, ignored = [], list(extra_ignored)
    for rel in files:
        match = SHARD_NAME.match(rel.rsplit("/", 1)[-1])
        name = rel.rsplit("/", 1)[-1]
        if layout == "parquet" and name.startswith(".") and name.endswith(".skipped.tsv"):
            continue  # the conversion's own record of skipped rows (tools/prepare/parquet.py), reported from it
        if rel.rsplit("/", 1)[-1].startswith("."):
            ignored.append((rel, "hidden file"))
        elif match and SPLIT_OF[match["split"]] == "test":
            ignored.append((rel, "test split (no labels)"))
        elif match:
            tars.append((rel, SPLIT_OF[match["split"]]))
        else:
            ignored.append((rel, "not a shard (expected <name>-train-NNNN.tar or <name>-validation-NN.tar)"))
    if not tars:
        raise InputError(f"{root}: no train or validation shards (<name>-train-NNNN.tar)")
    jobs = [(str(root), rel, str(out), options.check, options.min_side, options.max_pixels,
             options.max_aspect, options.on_bad) for rel, _ in tars]
    results = run_jobs(scan_tar, jobs, min(workers, len(jobs)), f"shards ({options.check})", unit="shards",
                       chunksize=1, name="prepare")
    check_s = time.perf_counter() - start
    return _report(options, tars, results, ignored, list(extra_rejected), check_s, workers, layout)


def _report(options, tars: list, results: list[dict], ignored: list, rejected: list, check_s: float,
            workers: int, layout: str) -> dict:
    """Lists, class table, reports and summary from the tars' results."""
    out = options.out
    outer = len(ignored) + len(rejected)  # files (or parquet rows) outside the tars read: one entry each
    labels: dict[int, tuple[str, str]] = {}
    for result in results:
        for label, (wnid, name) in result["classes"].items():
            if label not in labels or not labels[label][0]:
                labels[label] = (wnid, name)
    classes = _classes(labels)
    rows = []
    members = {key: sum(r["members"][key] for r in results) for key in ("found", "listed", "rejected", "ignored")}
    files = account(members["found"] + outer, members["listed"], 0, members["rejected"] + len(rejected),
                    members["ignored"] + len(ignored))
    for (rel, split), result in zip(tars, results):
        rows += [(split, shard_entry(rel, key), classes[label][0], w, h) for key, label, w, h in result["samples"]]
        rejected += result["rejected"]
        ignored += result["ignored"]
    if not rows:
        raise InputError(f"{options.root}: no sample could be listed (reasons in {out / 'rejected.tsv'})")
    samples = len(rows)
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()}
    settings.update(layout=layout, lists_relative_to=str(options.root.resolve()))
    timing = {"scan_s": 0.0, "check_s": round(check_s, 3), "check_files_per_s": round(samples / max(check_s, 1e-9)),
              "convert_s": 0.0, "written": 0, "kept": 0, "redone": {}, "workers": workers}
    summary = summarize(rows, classes, [], rejected, settings, timing, ignored=ignored, files=files,
                        empty_class_folders=[])
    summary["shards"] = {"read": len(tars), "truncated": [{"shard": rel, "why": r["truncated"],
                                                           "samples_listed": len(r["samples"])}
                                                          for (rel, _), r in zip(tars, results) if r["truncated"]],
                         "index_folder": str(out / "index")}
    # Listed as they are though a file tree would re-encode them (tools/prepare/shard_scan.py DECODES_AS_IS).
    as_is = [{"sample": where, "reason": why} for result in results for where, why in result["as_is"]]
    summary["shards"]["listed_as_is"] = {"count": len(as_is), "by_reason": dict(Counter(r["reason"] for r in as_is)),
                                         "samples": as_is}
    written = [write_rejected(out, rejected), write_ignored(out, ignored)]
    written += write_lists(out, rows, classes, ("train", "val")) + [write_summary(out, summary)]
    summary["written"] = [str(path) for path in written]
    return summary
