"""Train the paper's AlexNet: `python -m model.train --dali ...` (flags as in pytorch/examples imagenet).

    python -m model.train --root data/imagenette --lists lists --out runs/a1 --device cuda \
        --amp bf16 --channels-last --epochs 90 -b 128 --lr 0.01 --ten-crop
    python -m model.train ... --resume runs/a1/checkpoint.pth.tar          # continue (also after kill -9)
    python -m model.train --root ... --lists lists -e --resume runs/a1/model_best.pth.tar --ten-crop

Per epoch one line on stdout, one JSON line in RUNDIR/metrics.jsonl, RUNDIR/checkpoint.pth.tar (and
model_best.pth.tar). SIGINT/SIGTERM: the step in flight finishes, a checkpoint is written, exit 0.
docs/training.md has real runs. The loop itself is model/engine.py, the policy (checkpoints, signals, step limits) model/run.py; this file is the CLI.
"""
from __future__ import annotations

import math
from pathlib import Path

import click
import torch
from click.core import ParameterSource

from model.alexnet import ARCHS, CONV_KERNELS, DEFAULT_BIAS_ONE, INITS, POOLS
from model.config import AMP_MODES, SCHEDULES, OptimConfig, RunConfig, ScheduleConfig
from model.config import PAPER_BATCH_SIZE, PAPER_EPOCHS, PAPER_LR, PAPER_MOMENTUM, PAPER_WEIGHT_DECAY
from model.engine import evaluate
from model.parallel import PARALLEL_MODES
from model.run import Session, fit, open_session
from model.run_log import EvaluationStop
from model.variants import check_switches
from pipeline.config import DataConfig
from pipeline.constants import LIGHTING_SCALES, MEAN_WINDOWS, NORMALIZATIONS, PCA_ALPHA_STD
from pipeline.decoder_memory import padding_from_lists
from pipeline.devices import announce, device_option, resolve_device
from pipeline.errors import InputError, user_errors
from pipeline.loader import make_loader
from pipeline.pca import default_normalization
from pipeline.processes import usable_cpus


def configs_from_cli(options: dict) -> tuple[DataConfig, OptimConfig, ScheduleConfig, RunConfig]:
    """Turn the parsed flags into the four frozen configs (the data device is set once devices are known)."""
    lists = Path(options["lists"])
    if not lists.is_dir():
        raise InputError(f"--lists {lists}: no such folder; write it with `imagenet-tools prepare ROOT --out {lists}`")
    gpus = tuple(g.strip() for g in options["gpus"].split(",")) if options["gpus"] else None
    pca = Path(options["pca"]) if options["pca"] else None
    # The paper's mean subtraction is the authors' mean image when the PCA file has one (pipeline/pca.py).
    normalize = options["normalize"] or default_normalization(pca)
    if options["mean_window"] is not None and normalize != "image":
        raise InputError(f"--mean-window picks the window of the mean image; --normalize {normalize} subtracts "
                         "no mean image: drop --mean-window, or use --normalize image")
    padding = padding_from_lists(lists)  # nvJPEG's buffers for the listed files' sizes (prepare's summary.json)
    data = DataConfig(
        root=Path(options["root"]), train_list=lists / "train.txt", val_list=lists / "val.txt",
        device_memory_padding=padding.device, host_memory_padding=padding.host,
        pca=pca, batch_size=options["batch_size"],
        backend="dali" if options["dali"] else "pil", num_threads=options["workers"],
        normalize=normalize, layout="NHWC" if options["channels_last"] else "NCHW",
        seed=options["seed"], pca_alpha_std=options["lighting_std"], lighting_scale=options["lighting_scale"],
        mean_window=options["mean_window"] or "centre", lighting_rescale=options["lighting_rescale"],
    )
    optim = OptimConfig(lr=options["lr"], momentum=options["momentum"], weight_decay=options["wd"],
                        decay_biases=options["wd_biases"])
    schedule = ScheduleConfig(kind=options["schedule"], epochs=options["epochs"], patience=options["patience"],
                              step_size=options["step_size"], warmup_epochs=options["lr_warmup_epochs"])
    run = RunConfig(
        arch=options["arch"], out=Path(options["out"]), classes=lists / "classes.tsv", device=options["device"],
        amp=options["amp"], channels_last=options["channels_last"], compile=options["compile"],
        seed=options["seed"], print_freq=options["print_freq"], max_steps=options["max_steps"],
        checkpoint_every=options["checkpoint_every"], resume=Path(options["resume"]) if options["resume"] else None,
        evaluate=options["evaluate"], ten_crop=options["ten_crop"], bias_one=options["bias_one"],
        init=options["init"],
        parallel=options["parallel"], gpus=gpus,
        towers=int(options["towers"]) if options["towers"] else None, lrn=options["lrn"], pool=options["pool"],
        dropout=options["dropout"],
        overwrite=options.get("overwrite", False), given=tuple(options.get("given", ())),
        accept_pca_change=options.get("accept_pca_change", False), reread=options.get("resume_reread", False),
    )
    check_switches(data, run)
    if run.evaluate and run.resume is None:
        raise InputError("-e/--evaluate needs the checkpoint to evaluate: add --resume RUNDIR/model_best.pth.tar")
    if run.reread and (run.resume is None or run.evaluate):
        raise InputError("--resume-reread applies to continuing a run: add --resume RUNDIR, or drop --resume-reread")
    if run.amp == "fp16" and run.device == "cpu" and run.parallel != "towers":
        raise InputError("--amp fp16 needs a CUDA device (GradScaler); on the CPU use --amp bf16 or off")
    return data, optim, schedule, run


def evaluate_only(session: Session) -> None:
    """-e: print the checkpoint's validation loss and top-1/top-5 error (centre, and 10-crop if asked)."""
    views = ["val"] + (["ten_crop"] if session.run.ten_crop else [])
    for split in views:
        loader = make_loader(session.data, split, shard_id=session.ctx.rank, num_shards=session.ctx.world_size)
        name = "10-crop" if split == "ten_crop" else "centre"
        loss, top1, top5, count = evaluate(session.trainer, loader, label=f"evaluating ({name})",
                                           print_freq=session.run.print_freq if session.ctx.is_main else 0)
        if session.ctx.is_main:
            print(f"{session.run.resume} ({name}, {count} images): loss {loss:.4f}  "
                  f"top-1 error {top1:.2f} %  top-5 error {top5:.2f} %")


class FiniteFloat(click.FloatRange):
    """A float flag that refuses nan and inf (click's FloatRange lets nan through every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:  # not click's "x<=None"
            return "finite"
        return super()._describe_range()


INT_1 = click.IntRange(min=1)
POSITIVE = FiniteFloat(min=0.0, min_open=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--root", type=click.Path(exists=True, file_okay=False), required=True,
              help="Folder the file lists' paths are relative to.")
@click.option("--lists", type=click.Path(), required=True, help="prepare's output: train.txt, val.txt, classes.tsv.")
@click.option("--pca", type=click.Path(), default=None, help="pca.json from compute-pca (default: published ImageNet).")
@click.option("--accept-pca-change", is_flag=True,
              help="--resume/-e: go on with other statistics than the pca.json and mean image the checkpoint records.")
@click.option("-a", "--arch", type=click.Choice(ARCHS), default=None,
              help="Network (default: the checkpoint's with --resume, else alexnet).")
@click.option("--epochs", type=INT_1, default=PAPER_EPOCHS)
@click.option("-b", "--batch-size", type=INT_1, default=PAPER_BATCH_SIZE, help="Images per step per process.")
@click.option("--lr", type=POSITIVE, default=PAPER_LR, help="Initial learning rate.")
@click.option("--momentum", type=FiniteFloat(0.0, 1.0, max_open=True), default=PAPER_MOMENTUM)
@click.option("--wd", "--weight-decay", "wd", type=FiniteFloat(min=0.0), default=PAPER_WEIGHT_DECAY)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="plateau",
              help="plateau: lr/10 when val top-1 has not improved for --patience epochs (3 times at most).")
@click.option("--patience", type=INT_1, default=3, help="plateau: epochs without improvement before lr/10.")
@click.option("--step-size", type=INT_1, default=30, help="step: epochs between lr/10.")
@click.option("--lr-warmup-epochs", type=FiniteFloat(min=0.0), default=0.0,
              help="Raise the rate linearly from lr/W to lr over the first W = this x steps-per-epoch updates "
                   "(torchvision's name); 0: none.")
@click.option("--resume", type=click.Path(), default=None, help="Checkpoint (or run folder) to continue from.")
@click.option("--resume-reread", is_flag=True,
              help="--resume mid-epoch: read the epoch's trained batches again and drop them, instead of restoring "
                   "the DALI reader state the checkpoint stores (the same batches either way; restoring decodes nothing).")
@click.option("-e", "--evaluate", is_flag=True, help="Evaluate --resume on the validation list and exit.")
@click.option("--ten-crop", is_flag=True, help="Also report 10-crop validation error (§6).")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seeds init, data order, augmentation, dropout.")
@click.option("-p", "--print-freq", type=INT_1, default=10, help="Steps between progress lines.")
@device_option()
@click.option("--workers", type=INT_1, default=usable_cpus(),
              help="DALI CPU threads or DataLoader workers (default: the CPUs this process may use, per process).")
@click.option("--dali/--no-dali", default=True, help="DALI pipelines, or the PIL DataLoader baseline.")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=None,
              help="image: subtract the --pca file's mean image (the authors' code; the default when it has one); "
                   "mean: the per-channel mean (the default otherwise); meanstd: also divide by the std.")
@click.option("--mean-window", type=click.Choice(MEAN_WINDOWS), default=None,
              help="--normalize image: centre: the mean image's centre window for every crop (cuda-convnet2, the "
                   "default); crop: the crop's own window, flipped with it (Caffe).")
@click.option("--lighting-std", type=click.FloatRange(min=0.0), default=PCA_ALPHA_STD,
              help="Std of the PCA lighting coefficients alpha (§4.1); 0 turns lighting off.")
@click.option("--lighting-scale", type=click.Choice(LIGHTING_SCALES), default="stdev",
              help="stdev: alpha times the component's std on 0-255 (the authors' code); eigval: times 255 x the "
                   "eigenvalue (fb.resnet.torch).")
@click.option("--lighting-rescale", is_flag=True,
              help="Also divide training images by (1 + --lighting-std), as cuda-convnet2 does (not in the paper).")
@click.option("--wd-biases", is_flag=True, help="Decay the biases too (the authors' code decays weights only).")
@click.option("--towers", type=click.Choice([str(t) for t in sorted(CONV_KERNELS, reverse=True)]), default=None,
              help="2: the paper's two-tower net; 1: §3.2's one-GPU net (half the kernels in conv1-4). "
                   "Default: the checkpoint's with --resume/-e, else 2.")
@click.option("--lrn/--no-lrn", default=None,
              help="Local response normalisation (§3.3; default on, or the checkpoint's).")
@click.option("--pool", type=click.Choice(POOLS), default=None,
              help="overlap: 3x3 stride 2 (§3.4, the default or the checkpoint's); plain: 2x2 stride 2.")
@click.option("--dropout/--no-dropout", default=None,
              help="Dropout in fc6, fc7 (§4.2; default on, or the checkpoint's).")
@click.option("--amp", type=click.Choice(AMP_MODES), default="off", help="Autocast precision.")
@click.option("--channels-last", is_flag=True, help="NHWC model and inputs.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--bias-one", type=FiniteFloat(), default=DEFAULT_BIAS_ONE,
              help="Init bias of conv2/4/5, fc6/7: Caffe's 0.1, which learns 10 classes of real photos from the "
                   "first epoch; the paper's exact start (§5) is --bias-one 1 (docs/training.md).")
@click.option("--init", type=click.Choice(INITS), default="paper", show_default=True,
              help="paper: N(0, 0.01) weights (§5); kaiming: He init, biases 0 (faster start; use --normalize meanstd).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/alexnet", help="Run folder.")
@click.option("--overwrite", is_flag=True, help="Start a new run in an --out that holds another run (its files are removed).")
@click.option("--max-steps", type=INT_1, default=None, help="Stop after this many steps in total (short runs).")
@click.option("--checkpoint-every", type=INT_1, default=None, help="Also checkpoint every N steps mid-epoch.")
@click.option("--parallel", type=click.Choice(PARALLEL_MODES), default="none",
              help="towers: the paper's two towers on --gpus; ddp: one process per GPU (torchrun).")
@click.option("--gpus", default=None, help="towers: the two devices, e.g. cuda:0,cuda:1.")
@user_errors
def main(compile_: bool, **options) -> None:
    """Train (or with -e evaluate) the paper's AlexNet on a prepared ImageNet-style folder."""
    context = click.get_current_context()
    given = [name for name in context.params if context.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    device = resolve_device(options["device"])
    data, optim, schedule, run = configs_from_cli({**options, "device": device.name, "compile": compile_, "given": given})
    announce(device)
    # Every batch has the same shape, so cuDNN's autotuner picks each layer's fastest kernels once
    # (pytorch/examples does the same). Results are then not bit-reproducible on a GPU; on the CPU this is unused.
    torch.backends.cudnn.benchmark = True
    session = open_session(data, optim, schedule, run)
    try:
        if run.evaluate:
            with EvaluationStop(run.resume):  # a signal: one line, nothing written
                evaluate_only(session)
        else:
            fit(session)
    finally:
        session.close()


if __name__ == "__main__":
    main()
