"""A training run: build everything from the configs (or a checkpoint), then the epoch loop with its policy.

Resuming gives the same weights as never stopping (on the CPU, where the kernels are deterministic):
- epoch e's training loader is built fresh with seed + e, so its data order and augmentations depend on
  (seed, e) only, not on how many epochs this process has already run;
- torch's RNG (dropout) is reseeded with seed + e at the start of each epoch, and a mid-epoch checkpoint
  stores the RNG state, restored once the loader stands after the epoch's finished batches: restored from
  the DALI reader state the checkpoint stores (model/reader_state.py), or by reading them again and dropping them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from model import parallel
from model.alexnet import NetConfig, build_model
from model.checkpoint import BEST_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from model.config import LR_DROP_FACTOR, OptimConfig, RunConfig, ScheduleConfig, as_primitives
from model.engine import Trainer, evaluate, train_one_epoch
from model.metrics import EpochClock, Meter, TrainingDiverged
from model.optim import make_sgd
from model.provenance import check_checkpoint, records
from model.reader_state import list_digest, resumed_loader, saved_state, state_of
from model.resume import announce, apply_changes, evaluation_settings, resume_settings
from model.run_folder import RunFolder
from model.run_log import StopRequest, epoch_record, append_metrics, record_line, trim_metrics
from model.validation import without_validation
from model.variants import net_entry, resolve_decay_biases, resolve_net
from model.warmup import ChanceWatch, Warmup, warmup_steps
from pipeline.config import DataConfig
from pipeline.errors import InputError
from pipeline.filelist import read_class_table, read_file_list
from pipeline.loader import make_loader

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RANK_SEED_STRIDE = 1_000_003  # rank r's dropout seed: seed + epoch + r * this (no overlap for any epoch count)


@dataclass
class Position:
    """Where the run is: `epoch` in progress (or next), batches of it done, steps in total, best top-1 acc %."""

    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    best_acc1: float = 0.0
    meter: list[float] | None = None
    rng: dict | None = None
    reader: dict | None = None  # every rank's DALI reader state inside `epoch` (model/reader_state.py)


@dataclass
class Session:
    """Everything a run holds; built by open_session, released by close."""

    data: DataConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    run: RunConfig
    ctx: parallel.ParallelContext
    arch: str
    num_classes: int
    net: nn.Module
    trainer: Trainer
    scheduler: object
    scaler: torch.amp.GradScaler
    position: Position
    net_config: NetConfig = NetConfig()  # the network trained (the paper's, or an ablation: model/variants.py)
    folder: RunFolder | None = None  # the locked --out of a training run (main process only)
    records: dict = field(default_factory=dict)  # what every checkpoint records of its inputs (model/provenance.py)
    train_loader: object | None = None  # the epoch's, while a checkpoint may need its reader state
    train_digest: str = ""  # sha256 of the training list as the epoch's loader read it (model/reader_state.py)

    def close(self) -> None:
        if self.folder is not None:
            self.folder.release()
        parallel.cleanup(self.ctx)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, lr: float):
    """The learning-rate schedule: the paper's plateau rule, or pytorch/examples' step rule."""
    if schedule.kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, schedule.step_size, gamma=LR_DROP_FACTOR)
    # torch lowers the rate once num_bad_epochs > patience, i.e. after patience + 1 epochs without
    # improvement, so the paper-style "not improved for --patience epochs" is torch's patience - 1.
    # min_lr stops it after max_drops drops; eps relative to lr so a tiny --lr can still drop.
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=LR_DROP_FACTOR, patience=schedule.patience - 1,
        min_lr=lr * LR_DROP_FACTOR**schedule.max_drops, eps=lr * 1e-6,
    )


def open_session(data: DataConfig, optim: OptimConfig, schedule: ScheduleConfig, run: RunConfig) -> Session:
    """Set up devices, model, optimiser, schedule and (with --resume) restore a checkpoint."""
    ctx = parallel.init_parallel(run.parallel, run.device, run.gpus)
    folder = None
    try:
        if run.resume is None:  # a resumed run's schedule is known once its checkpoint is read
            data = without_validation(data, schedule, run, ctx.is_main)
        if ctx.is_main and not run.evaluate:  # before any work: --out writable, locked, not another run's
            folder = RunFolder.claim(run.out, run.resume, run.overwrite)
        on_gpu = ctx.device.type == "cuda"
        table = read_class_table(run.classes) if run.classes else []
        num_classes = len(table) if run.classes else 1000
        # Labels are checked against the class table when the lists are read: a label >= num_classes
        # would otherwise surface as an indexing error deep inside the loss.
        data = replace(data, device="gpu" if on_gpu else "cpu", device_id=ctx.device_id, num_classes=num_classes)
        checkpoint = None
        if run.resume is not None:
            checkpoint = load_checkpoint(run.resume, arch=run.arch, num_classes=num_classes,
                                         for_resume=not run.evaluate)
            if run.evaluate:
                data = evaluation_settings(checkpoint, data, run)
            else:
                (data, optim, schedule, run), kept = resume_settings(checkpoint, data, optim, schedule, run)
            data = without_validation(data, schedule, run, ctx.is_main)
            source = f"{'-e ' if run.evaluate else ''}--resume {run.resume}"
            check_checkpoint(checkpoint, run.resume, source, data.pca, table, run.classes, run.accept_pca_change,
                             log=ctx.is_main)
        arch = run.arch or (checkpoint["arch"] if checkpoint else "alexnet")
        net_config = resolve_net(run, checkpoint)
        torch.manual_seed(run.seed)  # the initial weights depend on the seed only
        model = build_model(arch, num_classes, run.bias_one, run.init, net_config)
        if checkpoint is not None:
            try:
                model.load_state_dict(checkpoint["state_dict"])
            except RuntimeError as error:  # torch lists every mismatched key; the first one says enough
                detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
                raise InputError(f"{run.resume}: weights do not fit -a {arch} with {num_classes} classes "
                                 f"({detail[:120]})") from None
        if run.channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = parallel.wrap_model(model, ctx)
        # §5's update is v <- 0.9 v - 0.0005 lr w - lr dL/dw; w <- w + v. torch keeps v' = v / lr instead
        # (w <- w - lr v'), identical while lr is constant; when lr drops, the buffered gradients are
        # applied at the new rate rather than the old one, a negligible difference for a one-off change.
        # Biases are not decayed unless --wd-biases (model/optim.py); a resumed run keeps its checkpoint's groups.
        optim = replace(optim, decay_biases=resolve_decay_biases(optim, checkpoint, run))
        optimizer = make_sgd(net, optim.lr, optim.momentum, optim.weight_decay, optim.decay_biases)
        scheduler = make_scheduler(optimizer, schedule, optim.lr)
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=run.amp == "fp16")
        forward = torch.compile(net) if run.compile else net
        trainer = Trainer(forward, optimizer, ctx.device, AMP_DTYPES[run.amp], scaler, run.channels_last,
                          lambda tensor: parallel.all_reduce_sum(tensor, ctx), chance=ChanceWatch(num_classes))
        position = Position()
        if checkpoint is not None and not run.evaluate:
            parallel.load_optimizer_state_dict(optimizer, checkpoint["optimizer"], net, ctx)  # any mode's
            scheduler.load_state_dict(checkpoint["scheduler"])
            if checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
            position = Position(checkpoint["epoch"], checkpoint.get("epoch_step", 0), checkpoint["step"],
                                checkpoint.get("best_acc1", 0.0), checkpoint.get("epoch_meter"), rank_rng(checkpoint, ctx),
                                checkpoint.get("reader"))
            changes = apply_changes(checkpoint, optimizer, scheduler, optim, schedule, run)
            if ctx.is_main:
                announce(run.resume, position, kept, changes)
        return Session(data, optim, schedule, run, ctx, arch, num_classes, net, trainer, scheduler, scaler, position,
                       net_config, folder, records(data.pca, table))
    except BaseException:
        if folder is not None:
            folder.release()
        parallel.cleanup(ctx)
        raise


def rank_rng(checkpoint: dict, ctx: parallel.ParallelContext) -> dict | None:
    """This rank's saved generators: its own where the checkpoint has one per rank of a run as wide as this
    one, else rank 0's (a resume in another mode or world size cannot replay the other ranks' draws)."""
    ranks = checkpoint.get("rng_ranks")
    if ranks is not None and len(ranks) == ctx.world_size:
        return ranks[ctx.rank]
    return checkpoint.get("rng")


def all_ranks(session: Session, meter: Meter) -> Meter:
    """A copy of `meter` summed over all ranks (a collective under DDP; a plain copy otherwise)."""
    sums = Meter(session.ctx.device, meter.values())
    session.trainer.reduce(sums.sums)
    return sums


def write_checkpoint(session: Session, sums: Meter | None, is_best: bool = False) -> None:
    """Save where the run is; every rank calls it at the same steps (it gathers their generators), rank 0
    writes. `sums`: an unfinished epoch's running sums over all ranks (`all_ranks`), None after a whole one."""
    if sums is not None:
        sums.check_finite(f"epoch {session.position.epoch}, before a checkpoint")
    # Every rank's generators and reader state, so that a resumed DDP run draws and reads on each rank what it
    # would have.
    pos, loader = session.position, session.train_loader
    local = state_of(loader) if pos.epoch_step else None
    gathered = parallel.all_gather_object((rng_state(session.ctx.devices), local), session.ctx)
    if not session.ctx.is_main:
        return
    rng = [entry[0] for entry in gathered]
    reader = saved_state(local, [entry[1] for entry in gathered], pos.epoch, pos.epoch_step, session.data.device,
                         session.train_digest)
    state = {
        "epoch": pos.epoch, "epoch_step": pos.epoch_step, "step": pos.step, "arch": session.arch,
        "num_classes": session.num_classes, "state_dict": parallel.unwrap_state_dict(session.net),
        "best_acc1": pos.best_acc1, "optimizer": parallel.optimizer_state_dict(session.trainer.optimizer, session.net, session.ctx),
        "scheduler": session.scheduler.state_dict(), "scaler": session.scaler.state_dict(), "rng": rng[0],
        "rng_ranks": rng if len(rng) > 1 else None, "reader": reader,
        "epoch_meter": sums.values() if sums is not None else None,
        "config": as_primitives(session.data, session.optim, session.schedule, session.run),
        "net": net_entry(session.net_config), **session.records,
    }
    save_checkpoint(state, session.run.out, is_best)


def fit(session: Session) -> None:
    """Train from session.position to the last epoch, validating and checkpointing after each."""
    run, ctx, pos = session.run, session.ctx, session.position
    if ctx.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        if session.folder is not None:
            session.folder.remove_previous()  # --overwrite
        trim_metrics(run.out, pos.epoch)  # a resumed epoch is logged again when it completes
        for stale in run.out.glob(".*.pth.tar.*"):  # temp files of a write that a kill -9 interrupted
            stale.unlink(missing_ok=True)
    validating = session.data.val_list is not None  # None: the lists have no val.txt (model/validation.py)
    val_loader = make_loader(session.data, "val", shard_id=ctx.rank, num_shards=ctx.world_size) if validating else None
    ten_loader = make_loader(session.data, "ten_crop", shard_id=ctx.rank, num_shards=ctx.world_size) if run.ten_crop else None
    stop = StopRequest(ctx)
    with stop:
        for epoch in range(pos.epoch, session.schedule.epochs):
            if run.max_steps is not None and pos.step >= run.max_steps:
                break
            finished, stopped, meter, clock = train_epoch(session, epoch, stop)
            if stopped:  # the checkpoint of the stop is written
                break
            end_epoch(session, epoch, finished, meter, clock, val_loader, ten_loader)
            session.train_loader = None
            if not finished or stop.requested():  # a signal during validation: the epoch's checkpoint is written
                break
    if stop.requested() and ctx.is_main:  # every rank polls (a collective under DDP)
        print(f"{stop.name}: stopped at epoch {pos.epoch} batch {pos.epoch_step} (step {pos.step}); checkpoint "
              f"written; continue with --resume {run.out / 'checkpoint.pth.tar'}", file=sys.stderr)


def train_epoch(session: Session, epoch: int, stop: StopRequest) -> tuple[bool, bool, Meter, EpochClock]:
    """Train one epoch (or its rest after a restart).

    Returns:
        (all batches done, stopped by a signal with a checkpoint written, the epoch's meter, its clock).
    """
    run, ctx, pos = session.run, session.ctx, session.position
    data = replace(session.data, seed=run.seed + epoch)
    skip = pos.epoch_step if epoch == pos.epoch else 0
    session.train_digest = list_digest(data.train_list)  # before the loader reads it
    loader, restored = resumed_loader(data, ctx, pos.reader, epoch, skip, run.reread, session.train_digest,
                                      make_loader)
    pos.reader = None  # used once, by the epoch it was saved in
    total = parallel.min_over_ranks(len(loader), ctx)  # DDP: shards may differ by a batch; all ranks stop here
    if total == 0:
        raise no_full_batch(session)
    # The warm-up counts updates from the run's first (pos.step after the skipped batches), so a resumed
    # run continues it exactly.
    session.trainer.warmup = Warmup(warmup_steps(session.schedule.warmup_epochs, total), pos.step)
    # Dropout's masks: a new stream each epoch, and under DDP a different one on each rank (with one seed
    # for all, every rank would drop the same units).
    torch.manual_seed(run.seed + epoch + RANK_SEED_STRIDE * ctx.rank)
    # A checkpoint's sums are over all ranks (all_ranks): one rank carries them on, end_epoch adds the rest.
    meter = Meter(ctx.device, pos.meter if skip and ctx.is_main else None)
    pos.epoch, pos.epoch_step = epoch, skip

    def resume_rng() -> None:
        if skip and pos.rng is not None:
            set_rng_state(pos.rng, ctx.devices)

    stopped = False

    def after_step(done: int) -> bool:
        nonlocal stopped
        pos.step, pos.epoch_step = pos.step + 1, done
        stopping = stopped = stop.requested(pos.step)
        limit = run.max_steps is not None and pos.step >= run.max_steps
        periodic = run.checkpoint_every is not None and pos.step % run.checkpoint_every == 0
        if stopping or (periodic and done < total and not limit):
            write_checkpoint(session, all_ranks(session, meter))
        return stopping or limit or done >= total

    session.train_loader = loader
    try:
        clock = train_one_epoch(session.trainer, loader, meter, epoch=epoch, skip=skip, read_skipped=not restored,
                                print_freq=run.print_freq, after_step=after_step, after_skip=resume_rng,
                                log=ctx.is_main)
    except InputError as error:  # e.g. a corrupt image: keep the steps trained so far
        session.train_loader = None  # DALI's state after a failed batch is not one to resume from
        raise save_progress(session, meter, pos.epoch_step - skip, error) from None
    finished = pos.epoch_step >= total
    if finished:  # free the epoch's pipeline before validation (an unfinished one's state goes in end_epoch's checkpoint)
        session.train_loader = None
    del loader
    return finished, stopped, meter, clock


def end_epoch(session: Session, epoch: int, finished: bool, meter: Meter, clock: EpochClock,
              val_loader, ten_loader) -> None:
    """Validate, step the schedule (complete epochs only), log, and checkpoint."""
    pos, ctx = session.position, session.ctx
    lr = session.trainer.optimizer.param_groups[0]["lr"]
    sums = all_ranks(session, meter)
    train = sums.summary()
    freq = session.run.print_freq if ctx.is_main else 0
    val = (evaluate(session.trainer, val_loader, label=f"epoch {epoch} validation", print_freq=freq)
           if val_loader is not None else None)
    ten = (evaluate(session.trainer, ten_loader, label=f"epoch {epoch} 10-crop validation", print_freq=freq)
           if ten_loader is not None else None)
    if finished:
        if isinstance(session.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if val is not None:  # without validation the plateau rule has nothing to read (model/validation.py)
                session.scheduler.step(val[1])
        else:
            session.scheduler.step()
        pos.epoch, pos.epoch_step = epoch + 1, 0
    acc1 = 100.0 - val[1] if val is not None else math.nan  # no validation: never a best
    # The first validated epoch of a run folder is always a best (also at 0 % accuracy): model_best.pth.tar
    # exists as soon as there is a validated checkpoint.
    first = not (session.run.out / BEST_NAME).exists()
    is_best = math.isfinite(acc1) and (acc1 > pos.best_acc1 or first)
    pos.best_acc1 = max(pos.best_acc1, acc1) if math.isfinite(acc1) else pos.best_acc1
    failed = None
    if ctx.is_main:
        record = epoch_record(epoch, lr, train, val, ten, clock)
        print(record_line(record), flush=True)
        try:
            append_metrics(session.run.out, record)
        except InputError as error:  # still save the epoch's checkpoint, then stop
            failed = error
    write_checkpoint(session, None if finished else sums, is_best)
    if failed is not None:
        raise failed


def save_progress(session: Session, meter: Meter, steps: int, error: InputError) -> InputError:
    """After a data error mid-epoch, checkpoint the steps trained since the last checkpoint and return the
    error to raise, saying so. Not under DDP (the other ranks are not at this point to join the
    checkpoint's collectives), nor after a divergence (those weights are not kept)."""
    if isinstance(error, TrainingDiverged) or session.ctx.world_size > 1 or steps == 0:
        return error
    write_checkpoint(session, all_ranks(session, meter))
    return InputError(f"{error}; the {steps} step{'s' if steps > 1 else ''} trained before it saved: fix the file "
                      f"(same list), then continue with --resume {session.run.out}")


def no_full_batch(session: Session) -> InputError:
    """The error for a training shard with fewer images than one batch (the incomplete last batch is dropped)."""
    data, ctx = session.data, session.ctx
    images = len(read_file_list(data.train_list)) if data.train_list is not None else 0
    share = f", about {images // ctx.world_size} for each of the {ctx.world_size} processes" if ctx.world_size > 1 else ""
    return InputError(f"-b {data.batch_size} is more than the training images ({images} in {data.train_list}{share}): "
                      "an epoch would have no step, since the incomplete last batch is dropped; use a smaller -b")

