"""`imagenet-tools start-stats`: what each layer does over the first steps of a training run.

    imagenet-tools start-stats --root data/imagenette256 --lists lists --pca pca.json --steps 200 \
        --out stats/paper.jsonl [--init paper --bias-one 1 --lr 0.01 --lr-warmup-epochs 0 -b 128]

The same network, optimiser and DALI training graph as `python -m model.train` (one process, its
defaults), one JSON line every --every steps: the loss; for conv1..fc8 the rms of the layer's output before
and after its ReLU, the share of dead units (never positive on any image of the batch, per channel for the
convolutions), the share of the activation that is the same for every image (|batch mean|^2 / mean |x|^2,
per channel for convolutions), the weight and gradient norms, the relative size of the update; the divisor
that LRN applies (input / output); the logits' spread across images and across classes. docs/training.md
reads these ("Why the paper's start fails on 10 classes").
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from model.alexnet import DEFAULT_BIAS_ONE, INITS, build_model
from model.layer_stats import LAYERS, step_record
from model.config import PAPER_BATCH_SIZE, PAPER_LR, PAPER_MOMENTUM, PAPER_WEIGHT_DECAY
from model.optim import make_sgd
from model.train import FiniteFloat
from model.warmup import Warmup, scaled_rate, warmup_steps
from pipeline.atomic import replacing
from pipeline.config import DataConfig
from pipeline.constants import NORMALIZATIONS
from pipeline.errors import InputError, user_errors
from pipeline.filelist import read_class_table
from pipeline.loader import make_loader
from pipeline.pca import default_normalization
from pipeline.processes import usable_cpus

@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--root", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder the file lists' paths are relative to.")
@click.option("--lists", type=click.Path(exists=True, file_okay=False), required=True,
              help="prepare's output (train.txt, classes.tsv).")
@click.option("--pca", type=click.Path(exists=True, dir_okay=False), default=None, help="pca.json (default: published ImageNet).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The JSON-lines file to write.")
@click.option("--steps", type=click.IntRange(min=1), default=200, help="Training steps to run.")
@click.option("--every", type=click.IntRange(min=1), default=5, help="A record every N steps (and each of the first 10).")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=PAPER_BATCH_SIZE)
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=PAPER_LR)
@click.option("--lr-warmup-epochs", type=click.FloatRange(min=0.0), default=0.0, help="As model.train's.")
@click.option("--init", type=click.Choice(INITS), default="paper", help="As model.train's.")
@click.option("--bias-one", type=FiniteFloat(), default=DEFAULT_BIAS_ONE, help="As model.train's.")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=None, help="As model.train's.")
@click.option("--seed", type=click.IntRange(min=0), default=0)
@click.option("--workers", type=click.IntRange(min=1), default=usable_cpus(), help="DALI CPU threads.")
@user_errors
def main(root, lists, pca, out, steps, every, batch_size, lr, lr_warmup_epochs, init, bias_one, normalize, seed,
         workers) -> None:
    """Per-layer statistics over the first steps of a training run (the CPU, one process)."""
    lists, pca = Path(lists), Path(pca) if pca else None
    if not (lists / "train.txt").is_file():
        raise InputError(f"--lists {lists}: no train.txt; write it with `imagenet-tools prepare ROOT --out {lists}`")
    classes = len(read_class_table(lists / "classes.tsv"))
    data = DataConfig(root=Path(root), train_list=lists / "train.txt", pca=pca, batch_size=batch_size,
                      num_threads=workers, normalize=normalize or default_normalization(pca), seed=seed,
                      num_classes=classes)
    torch.manual_seed(seed)
    net = build_model("alexnet", classes, bias_one, init)
    optimizer = make_sgd(net, lr, PAPER_MOMENTUM, PAPER_WEIGHT_DECAY)
    outputs, lrn = {}, []
    for name in LAYERS:
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.detach()))
    net.lrn.register_forward_hook(lambda m, i, o: lrn.append((i[0].detach(), o.detach())))
    records, step, epoch, start = [], 0, 0, time.perf_counter()
    net.train()
    while step < steps:
        torch.manual_seed(seed + epoch)
        loader = make_loader(replace(data, seed=seed + epoch), "train")
        warmup = Warmup(warmup_steps(lr_warmup_epochs, len(loader)), step)
        for images, labels in loader:
            if step >= steps:
                break
            lrn.clear()
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            scale = warmup.next_scale()
            rate = lr * scale
            if step % every == 0 or step < 10:
                records.append(step_record(step, rate, loss, images, net, outputs, lrn))
                print(f"step {step}: loss {loss.item():.4f} lr {rate:.3g}, dead fc6 {records[-1]['fc6']['dead']:.0%} "
                      f"fc7 {records[-1]['fc7']['dead']:.0%}, logits' std over images "
                      f"{records[-1]['logits']['std_over_images']:.3f} ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
            with scaled_rate(optimizer, scale):  # model.train's warm-up, applied the same way
                optimizer.step()
            step += 1
        epoch += 1
        del loader
    with replacing(Path(out)) as temp:
        temp.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {out}: {len(records)} records over {steps} steps")


if __name__ == "__main__":
    main()
