"""`imagenet-tools demo --out DIR`: the whole toolkit on generated data, in one command (`make demo`).

    imagenet-tools demo --out demo                 # GPU if there is one, else CPU; ~10 minutes on 2 cores
    imagenet-tools demo --out /tmp/d --train-per-class 4 --val-per-class 2 --max-steps 2   # a smoke test

Stages, each printed as the command a user would type, each run as its own process (output in DIR/demo.log):
make-demo-data -> prepare (shorter side resized to 256) -> compute-pca -> `python -m model.train` (the
paper's AlexNet with the demo's short recipe, DEMO_RECIPE) -> 10-crop evaluation -> visualize report.
It ends with the validation top-1/top-5 accuracy (centre crop and 10 crops) and the wall time.
docs/demo.md explains the recipe and shows a real run.
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.devices import device_option
from pipeline.errors import user_errors
from pipeline.writable import writable_folder
from tools.demo_run.run import DEMO_RECIPE, run_demo, summary_lines


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for the data, lists, run, pictures and report.")
@device_option()
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="DALI threads / worker processes.")
@click.option("--classes", type=click.IntRange(1, 10), help=f"[{DEMO_RECIPE['classes']}]")
@click.option("--train-per-class", type=click.IntRange(min=1), help=f"[{DEMO_RECIPE['train_per_class']}]")
@click.option("--val-per-class", type=click.IntRange(min=1), help=f"[{DEMO_RECIPE['val_per_class']}]")
@click.option("--epochs", type=click.IntRange(min=1), help=f"[{DEMO_RECIPE['epochs']}]")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), help=f"[{DEMO_RECIPE['batch_size']}]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help=f"[{DEMO_RECIPE['lr']}]")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop training after this many steps (smoke test).")
@click.option("--max-train-neighbours", default=300, show_default=True, help="Training images searched for Figure 4.")
@user_errors
def main(out: Path, device: str, workers: int, classes: int | None, train_per_class: int | None, val_per_class: int | None,
         epochs: int | None, batch_size: int | None, lr: float | None, max_steps: int | None,
         max_train_neighbours: int) -> None:
    """The whole toolkit on generated data: data, prepare, PCA, train AlexNet, 10-crop test, pictures."""
    writable_folder(out, "--out")  # before the first stage, not in the middle of the demo
    summary = run_demo(out, device, workers, max_steps, max_train_neighbours, classes=classes,
                       train_per_class=train_per_class,
                       val_per_class=val_per_class, epochs=epochs, batch_size=batch_size, lr=lr)
    click.echo("\n".join(summary_lines(summary, out)))


if __name__ == "__main__":
    main()
