"""`imagenet-tools pack --lists L --root R --out S`: a prepared file tree as pre-shuffled webdataset shards.

    imagenet-tools pack --lists lists --root /data/imagenet --out /data/imagenet-wds              # as they are
    imagenet-tools pack --lists lists --root /data/imagenet --out /data/wds256 --resize 256       # resized too
    imagenet-tools prepare /data/imagenet-wds --out wds-lists                                       # then as any shards

tools/packing/shards.py says what the shards hold; docs/prepare.md has the details.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import click

from pipeline.atomic import write_atomic
from pipeline.errors import InputError, user_errors
from pipeline.processes import usable_cpus
from tools.packing.shards import pack_shard, plan
from tools.prepare.reencode import encode
from tools.shared.jobs import run_jobs

SETTINGS = ".pack-settings.json"


@click.command(name="pack")
@click.option("--lists", required=True, type=click.Path(path_type=Path), help="prepare's output for a file tree.")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="The folder the lists are relative to.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the shards.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the shuffle.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Samples a shard.")
@click.option("--resize", type=click.IntRange(min=1), help="Shorter side of the stored images (prepare's resize).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality (--resize).")
@click.option("--workers", type=click.IntRange(min=1), help="Processes [all cores].")
@user_errors
def main(lists: Path, root: Path, out: Path, seed: int, shard_size: int, resize: int | None, quality: int,
         workers: int | None) -> None:
    """Pack the files of LISTS (relative to ROOT) into pre-shuffled webdataset shards in OUT."""
    if not root.is_dir():
        raise InputError(f"--root {root}: no such folder")
    settings = {"lists": str(lists.resolve()), "seed": seed, "shard_size": shard_size, "resize": resize,
                "quality": quality if resize else None}
    # prepare's own resize, without the source's size and mtime that prepare's copies record (a copy of the tree
    # has other mtimes): the same seed gives the same shards, byte for byte, from any copy of the tree
    resizer = partial(encode, copy_ok=True, quality=quality, shorter=resize, stamp=None) if resize else None
    jobs = plan(lists, root, out, seed, shard_size, resizer)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / SETTINGS
    if marker.is_file() and json.loads(marker.read_text()) != settings:
        raise InputError(f"{out}: holds shards packed with {marker.read_text().strip()}; use a new --out")
    write_atomic(marker, json.dumps(settings))
    kept = sum(Path(job[1]).is_file() for job in jobs)
    shards = run_jobs(pack_shard, jobs, min(workers or usable_cpus(), len(jobs)), "pack", unit="shards",
                      chunksize=1, name="pack")
    manifest = {**settings, "shards": shards, "samples": sum(s["samples"] for s in shards),
                "bytes": sum(s["bytes"] for s in shards)}
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2))
    click.echo(f"packed {manifest['samples']} samples into {len(shards)} shards ({manifest['bytes'] / 1e6:.1f} MB; "
               f"{kept} kept from an earlier run) in {out}; next: imagenet-tools prepare {out} --out DIR")


if __name__ == "__main__":
    main()
