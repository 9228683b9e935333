"""`imagenet-tools visualize`: pictures of a run, each its own subcommand (matplotlib, Agg: files only).

    imagenet-tools visualize curves runs/a1                     # loss and errors per epoch, lr drops
    imagenet-tools visualize kernels runs/a1                    # conv1 as in Figure 3
    imagenet-tools visualize neighbours runs/a1 --root R --lists L --pca pca.json   # Figure 4
    imagenet-tools visualize augment --root R --lists L --pca pca.json --out aug.png # what training sees
    imagenet-tools visualize report runs/a1 --root R --lists L --pca pca.json        # all of them + report.md

RUN is a run folder (its model_best.pth.tar, else checkpoint.pth.tar) or a checkpoint file. Pictures go to
RUNDIR/pictures/ unless --out says otherwise. The drawing lives in tools/viz/.
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.constants import NORMALIZATIONS
from pipeline.errors import user_errors
from pipeline.writable import writable_file, writable_folder
from tools.viz.run_folder import default_out, find_checkpoint, run_folder

RUN = click.argument("run", type=click.Path(exists=True, path_type=Path))
OUT = click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
DATA_OPTIONS = (
    click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                 help="Image root the lists are relative to."),
    click.option("--lists", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
                 help="prepare's output folder (train.txt, val.txt, classes.tsv)."),
    click.option("--pca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="The run's pca.json (default: published ImageNet values)."),
)
NORMALIZE = click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=None,
                         help="The run's normalisation (default: the checkpoint's).")


def _data_options(func):
    for option in reversed(DATA_OPTIONS):
        func = option(func)
    return func


@click.group("visualize")
def main() -> None:
    """Pictures of a run: augmentations, learning curves, conv1 kernels, nearest neighbours, the confusion
    matrix, a report."""


@main.command("curves")
@RUN
@OUT
@user_errors
def curves(run: Path, out: Path | None) -> None:
    """Loss and top-1/top-5 error per epoch from RUN's metrics.jsonl, with the learning-rate drops."""
    from tools.viz.curves import draw_curves

    click.echo(draw_curves(run_folder(run), default_out(run, out, "curves.png")))


@main.command("kernels")
@RUN
@OUT
@click.option("--zoom", default=4, show_default=True, help="Pixels per weight.")
@user_errors
def kernels(run: Path, out: Path | None, zoom: int) -> None:
    """conv1's 96 kernels as the paper's Figure 3: tower 1 (first 48) above tower 2 (last 48)."""
    from tools.viz.kernels import draw_kernels

    click.echo(draw_kernels(find_checkpoint(run), default_out(run, out, "conv1_kernels.png"), zoom))


@main.command("neighbours")
@RUN
@_data_options
@NORMALIZE
@OUT
@click.option("--queries", default=5, show_default=True, help="Validation images (rows).")
@click.option("--max-train", default=1000, show_default=True, help="Training images searched (random subset).")
@click.option("--seed", default=0, show_default=True)
@user_errors
def neighbours(run: Path, root: Path, lists: Path, pca: Path | None, normalize: str | None, out: Path | None,
               queries: int, max_train: int, seed: int) -> None:
    """Figure 4: validation images and the 6 training images nearest in fc7 space."""
    from tools.viz.neighbours import draw_neighbours

    click.echo(draw_neighbours(find_checkpoint(run), root, lists, default_out(run, out, "neighbours.png"),
                               pca, normalize, queries, max_train, seed))


@main.command("confusion")
@RUN
@_data_options
@NORMALIZE
@OUT
@user_errors
def confusion(run: Path, root: Path, lists: Path, pca: Path | None, normalize: str | None, out: Path | None) -> None:
    """Per-class accuracy and the confusion matrix on the validation list (centre crops); JSON beside the PNG."""
    from tools.viz.confusion import draw_confusion

    for path in draw_confusion(find_checkpoint(run), root, lists, default_out(run, out, "confusion.png"), pca,
                               normalize):
        click.echo(path)


@main.command("augment")
@_data_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--images", default=4, show_default=True, help="Training images shown (rows).")
@click.option("--samples", default=4, show_default=True, help="Augmented samples per image.")
@click.option("--seed", default=0, show_default=True)
@user_errors
def augment(root: Path, lists: Path, pca: Path | None, out: Path, images: int, samples: int, seed: int) -> None:
    """Originals, their stored 256x256 images, and training samples (crops, flips, PCA lighting)."""
    from tools.viz.views import draw_augmentations

    click.echo(draw_augmentations(root, lists, writable_file(out, "--out"), pca, images, samples, seed))


@main.command("report")
@RUN
@_data_options
@NORMALIZE
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Markdown file [RUNDIR/report.md].")
@click.option("--extra", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON object of more numbers to list (e.g. a final evaluation).")
@click.option("--max-train", default=1000, show_default=True, help="Training images searched for neighbours.")
@user_errors
def report(run: Path, root: Path, lists: Path, pca: Path | None, normalize: str | None, out: Path | None,
           extra: Path | None, max_train: int) -> None:
    """Every picture of RUN, and a Markdown report that links them with the run's numbers."""
    from tools.viz.report import make_pictures, read_json, write_report

    folder = run_folder(run)
    out = writable_file(out or folder / "report.md", "--out")  # both checked before any picture is drawn
    writable_folder(folder / "pictures", "RUN", given=run)
    pictures = make_pictures(run, root, lists, pca, normalize, folder / "pictures", max_train)
    numbers = read_json(extra) if extra else None
    click.echo(write_report(folder, out, pictures, numbers))


if __name__ == "__main__":
    main()
