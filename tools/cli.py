"""`imagenet-tools`: one entry point for every tool. Each subcommand is also `python tools/<module>.py`.

Subcommands are imported only when run, so `imagenet-tools --help` stays fast (no torch, no DALI).
"""
from __future__ import annotations

import importlib

import click

# subcommand -> (module in tools/, one-line help)
COMMANDS = {
    "prepare": ("tools.prepare_imagenet", "Scan an ImageNet tree, check images, write DALI file lists."),
    "pack": ("tools.pack", "Pack a prepared file tree into pre-shuffled webdataset shards."),
    "compute-pca": ("tools.compute_pca", "Eigen-decomposition of the training set's RGB covariance (pca.json)."),
    "preview": ("tools.preview", "Run a pipeline on a few images; write a PNG grid and the batch."),
    "make-demo-data": ("tools.make_demo_data", "Generate the demo's image set in ImageNet's layout."),
    "make-bench-data": ("tools.make_bench_data", "Generate ImageNet-like JPEGs (~500x375, ~110 KB) for benchmarks."),
    "visualize": ("tools.visualize", "Pictures of a run: augmentations, curves, conv1 kernels, neighbours."),
    "bench": ("tools.bench", "Pipeline / model / end-to-end throughput, DALI vs the PyTorch DataLoader."),
    "demo": ("tools.demo", "The whole toolkit on generated data: prepare, PCA, train, 10-crop, pictures."),
    "selftest": ("tools.selftest", "What this machine can do, stage by stage (run it first; attach it to bug reports)."),
    "shard-mixing": ("tools.shard_mixing", "How mixed training batches are on pre-shuffled and class-sorted shards."),
    "start-stats": ("tools.start_stats", "Per-layer statistics over the first steps of a training run."),
    "ablate": ("tools.ablate", "The paper's ablations trained alike, their errors beside the paper's claims."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.main

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tools of the AlexNet + DALI toolkit. `imagenet-tools COMMAND --help` for each."""


if __name__ == "__main__":
    main(prog_name="imagenet-tools")  # as `python -m tools.cli` (the demo's and selftest's stages)
