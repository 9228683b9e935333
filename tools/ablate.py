"""`imagenet-tools ablate`: the paper's ablations, each trained like the baseline and compared with the paper.

    imagenet-tools ablate --root ROOT --lists LISTS --pca pca.json --out abl --epochs 90     # all five
    imagenet-tools ablate --root ROOT --lists LISTS --out abl --epochs 12 --variants no-lrn,plain-pool

Trains the paper's net (the baseline) and each variant (`--variants`, default all: one-gpu, no-lrn,
plain-pool, no-dropout, no-lighting) one after another with `python -m model.train`, each with the same
seed, data, budget and flags plus its switch, in OUT/<variant>/; evaluates each last checkpoint with
`-e --ten-crop`; writes OUT/ablation.md, OUT/ablation.json and OUT/ablation.png (the measured differences
beside the paper's). Run again after a kill, it goes on: a finished variant is kept, an interrupted one
continues from its checkpoint. docs/ablation.md has a real run and the command for ImageNet on a GPU.
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.devices import device_option, resolve_device
from pipeline.errors import user_errors
from tools.ablation.plan import RESULT_FLAGS, RUN_FLAGS, Plan, train_option
from tools.ablation.report import summary_lines
from tools.ablation.run import ablate
from tools.ablation.variants import BY_NAME, parse_variants


def _passed_on(name: str):
    """model.train's option `name`, offered here with no default (not given: not passed, model.train's applies)."""
    option = train_option(name)
    decls = [f"{option.opts[-1]}/{option.secondary_opts[-1]}"] if option.secondary_opts else list(option.opts)
    kind = {"is_flag": True} if option.is_flag else {"type": option.type}
    return click.option(*decls, name, default=None, show_default=False, **kind,
                        help=f"model.train's {option.opts[-1]}: {option.help or ''}".rstrip(": "))


def _with_training_flags(command):
    for name in reversed(RESULT_FLAGS + RUN_FLAGS):
        command = _passed_on(name)(command)
    return command


@click.command("ablate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder the file lists' paths are relative to.")
@click.option("--lists", type=click.Path(path_type=Path), required=True,
              help="prepare's output: train.txt, val.txt, classes.tsv.")
@click.option("--pca", type=click.Path(path_type=Path), default=None,
              help="pca.json from compute-pca (default: model.train's, the published ImageNet values).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ablation"), show_default=True,
              help="Folder: a run folder per variant, ablation.md/.json/.png, ablation.log.")
@click.option("--epochs", type=click.IntRange(min=1), required=True, help="Epochs of every run (the paper: 90).")
@click.option("--variants", "variants_text", default=",".join(BY_NAME), show_default=True,
              help="Comma-separated variants to train besides the baseline.")
@device_option("Passed to every model.train.")
@click.option("--accept-pca-change", is_flag=True,
              help="Go on with other statistics than the pca.json and mean image that --out's runs record.")
@_with_training_flags
@user_errors
def main(root: Path, lists: Path, pca: Path | None, out: Path, epochs: int, variants_text: str, device: str,
         accept_pca_change: bool, **flags) -> None:
    """Train the paper's net and its ablations alike; compare their errors with the paper's claims.

    The flags from -b on are model.train's, passed to every run; one not given is not passed (model.train's
    default applies).
    """
    variants = parse_variants(variants_text)
    given = {name: value for name, value in flags.items() if value is not None}
    chosen = resolve_device(device)
    plan = Plan(root=root, lists=lists, pca=pca, out=out, epochs=epochs, device=chosen.name, given=given,
                accept_pca_change=accept_pca_change)
    report = ablate(plan, variants, chosen)
    click.echo("\n".join(summary_lines(report, out)))


if __name__ == "__main__":
    main()
