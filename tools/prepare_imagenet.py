"""`imagenet-tools prepare ROOT --out DIR`: check an ImageNet tree and write the DALI file lists.

    imagenet-tools prepare /data/imagenet --out lists                       # header check, repair bad files
    imagenet-tools prepare /data/imagenet --out lists --check decode        # also decode every image
    imagenet-tools prepare /data/imagenet --out lists --resize 256 --resized-root /data/imagenet256

Writes DIR/train.txt and DIR/val.txt (`<path relative to ROOT> <label>`, or relative to --resized-root
when resizing), classes.tsv, rejected.tsv, ignored.tsv and summary.json. Every file under ROOT is listed,
repaired, rejected or ignored, each with its reason. docs/prepare.md has the details: layouts,
what counts as a bad file, where repaired copies go, measured speed.
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.constants import RESIZE_SHORTER
from pipeline.errors import InputError, user_errors
from tools.prepare.check import DEFAULT_MAX_ASPECT, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from tools.prepare.layouts import LAYOUTS
from tools.prepare.run import PrepareOptions, prepare


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


@click.command(name="prepare")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the lists and reports.")
@click.option("--layout", default="auto", show_default=True, help=f"auto, or one of: {', '.join(LAYOUTS)}, webdataset, parquet.")
@click.option("--devkit", type=click.Path(path_type=Path), help="ILSVRC2012_devkit_t12 folder (layout devkit).")
@click.option("--check", type=click.Choice(["header", "decode"]), default="header", show_default=True,
              help="header: signature, size, truncation (fast); decode: also decode every image (slow).")
@click.option("--on-bad", type=click.Choice(["repair", "reject"]), default="repair", show_default=True,
              help="Grayscale, CMYK, PNG-as-.JPEG: re-encode as RGB JPEG, or list in rejected.tsv.")
@click.option("--repair-dir", type=click.Path(path_type=Path), help="Where repaired copies go [OUT/repaired].")
@click.option("--resize", type=click.IntRange(min=1), help="Shorter side of a resized copy of the tree.")
@click.option("--resized-root", type=click.Path(path_type=Path), help="Where the resized tree goes.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality.")
@click.option("--workers", type=click.IntRange(min=1), help="Processes [all cores].")
@click.option("--min-side", type=click.IntRange(min=1), default=DEFAULT_MIN_SIDE, show_default=True,
              help="Reject images with a side shorter than this.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Reject images with more pixels than this.")
@click.option("--max-aspect", type=click.FloatRange(min=1), default=DEFAULT_MAX_ASPECT, show_default=True,
              help="Reject images whose long side is more than this many times the short side.")
@click.option("--unpack", is_flag=True,
              help="Unpack class tars found in train/ (n01440764.tar ...) into train/<wnid>/ first.")
@click.option("--skip-empty-classes", is_flag=True,
              help="Go on when a class folder has no valid image (it is listed in rejected.tsv; its class keeps "
                   "its label). Default: stop with an error.")
@click.option("--shards-out", type=click.Path(path_type=Path),
              help="Hub parquet files: where their webdataset shards go [OUT/shards]; the later --root.")
@user_errors
def main(root: Path, out: Path, resize: int | None, resized_root: Path | None, **flags) -> None:
    """Check the image tree ROOT and write DALI file lists, classes.tsv, rejected.tsv, summary.json to OUT."""
    if resize is not None and resized_root is None:
        raise InputError("--resize needs --resized-root DIR: the folder for the resized copy of the tree")
    if resized_root is not None and resize is None:
        resize = RESIZE_SHORTER  # the paper's offline rescaling
    summary = prepare(PrepareOptions(root=root, out=out, resize=resize, resized_root=resized_root, **flags))
    timing = summary["timing"]
    counts = ", ".join(f"{split} {entry['images']}" for split, entry in summary["splits"].items())
    if summary.get("unpacked"):
        click.echo(f"unpacked {_count(len(summary['unpacked']), 'class tar', 'class tars')} beside "
                   f"{'themselves' if len(summary['unpacked']) > 1 else 'itself'}: "
                   f"{', '.join(summary['unpacked'][:3])}{' ...' if len(summary['unpacked']) > 3 else ''}")
    click.echo(f"layout {summary['layout']}: {_count(summary['classes'], 'class', 'classes')}; listed {counts}; "
               f"repaired {summary['repaired']['count']}, rejected {summary['rejected']['count']}")
    click.echo(f"check ({summary['check']}): {timing['check_files_per_s']:,} files/s on "
               f"{_count(timing['workers'], 'worker', 'workers')} ({timing['check_s']:.1f} s)")
    if summary["rejected"]["by_reason"]:
        click.echo("rejected: " + ", ".join(f"{why} {n}" for why, n in summary["rejected"]["by_reason"].items()))
    if summary["resize"] or timing["written"] or timing["kept"] or timing["redone"]:
        what = f"resized to {summary['resize']}" if summary["resize"] else "repaired copies"
        redone = sum(timing["redone"].values())
        why = "; ".join(f"{reason} {n}" for reason, n in timing["redone"].items())
        click.echo(f"{what}: {timing['written']} written, {timing['kept']} kept from an earlier run"
                   f"{f', {redone} redone ({why})' if redone else ''} ({timing['convert_s']:.1f} s)")
    if summary["empty_class_folders"]:
        folders = summary["empty_class_folders"]
        click.echo(f"skipped {_count(len(folders), 'class folder', 'class folders')} with no valid image "
                   f"(rows in rejected.tsv): {', '.join(folders[:5])}{' ...' if len(folders) > 5 else ''}")
    if summary["classes_without_training_images"]:
        lonely = summary["classes_without_training_images"]
        click.echo(f"warning: {_count(len(lonely), 'class has', 'classes have')} a label but no training image "
                   f"(a val folder named unlike every train folder?): {', '.join(lonely[:5])}"
                   f"{' ...' if len(lonely) > 5 else ''}", err=True)
    if "shards" in summary:
        _echo_shards(summary["shards"])
    if not summary.get("validation_set", True):
        click.echo(f"no validation set: no val images under {root}, so no val.txt; model.train trains without "
                   "validation (with --schedule step; docs/training.md)")
    click.echo(f"lists relative to {summary['lists_relative_to']}")
    click.echo("wrote " + ", ".join(summary["written"]))
    files = summary["files"]
    click.echo(f"files under ROOT: {files['found']} = {files['listed']} listed + {files['repaired']} repaired and "
               f"listed + {files['rejected']} rejected + {files['ignored']} ignored")
    reasons = "; ".join(f"{why} {n}" for why, n in summary["ignored"]["by_reason"].items())
    where = Path(summary["out"]) / "ignored.tsv"
    click.echo(f"ignored {_count(files['ignored'], 'file', 'files')} ({reasons}): each with its reason in {where}"
               if reasons else f"ignored 0 files ({where} is empty)")


def _echo_shards(shards: dict) -> None:
    """What prepare says of a shard folder beyond a tree's report (tools/prepare/shards.py)."""
    click.echo(f"webdataset shards: {shards['read']} read, index files in {shards['index_folder']}")
    as_is = shards.get("listed_as_is", {})
    if as_is.get("count"):
        reasons = "; ".join(f"{why} {n}" for why, n in as_is["by_reason"].items())
        click.echo(f"listed as they are: {as_is['count']} samples a file tree would re-encode ({reasons}); DALI "
                   "decodes them, each is named in summary.json shards.listed_as_is (--on-bad reject drops them)")
    for cut in shards["truncated"]:
        click.echo(f"truncated shard {cut['shard']}: {cut['samples_listed']} samples readable before the cut "
                   f"({cut['why']}); download it again", err=True)


if __name__ == "__main__":
    main()
