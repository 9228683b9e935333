"""Two-GPU training: the paper's model-parallel towers, or data-parallel DDP launched by torchrun.

The training loop calls only this module, so it reads the same in every mode:

    ctx = init_parallel(mode, device, gpus)          # "none" | "towers" | "ddp"
    model = wrap_model(build_model("alexnet"), ctx)  # one device, TowerAlexNet, or DDP
    ...  images/labels go to ctx.device; loss on ctx.device
    correct = all_reduce_sum(correct, ctx)           # metrics summed over ranks (identity unless ddp)
    if ctx.is_main: save(unwrap_state_dict(model))   # always the one-device `alexnet` keys
    cleanup(ctx)

Commands (docs/parallel.md has more):

    python -m model.train --parallel towers --gpus cuda:0,cuda:1 ...
    torchrun --nproc_per_node 2 -m model.train --parallel ddp ...

DDP: --batch-size is per process, the global batch is batch-size x world size; scale the learning rate
linearly (lr = 0.01 x global / 128, the paper's 0.01 at 128).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pipeline.errors import InputError
from pipeline.devices import parse_device

PARALLEL_MODES = ("none", "towers", "ddp")
# Set to "gloo" to run two DDP processes on one GPU (NCCL refuses two ranks on the same device).
BACKEND_ENV = "ALEXNET_DDP_BACKEND"
# A rank that never arrives should end the run with an error, not hang it forever.
DDP_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class ParallelContext:
    """Where this process computes, and how it talks to the others.

    Attributes:
        mode: "none", "towers" or "ddp".
        rank: global rank (0 unless ddp).
        world_size: number of processes (1 unless ddp).
        local_rank: rank on this node (selects the GPU under ddp).
        device: where inputs, labels, outputs and the loss live (towers: tower 1's device).
        device_id: CUDA index of `device` for DALI's `device_id`, None on the CPU.
        is_main: this process logs, validates-prints and writes checkpoints.
        devices: the towers' devices (towers mode), else (device,).
        backend: the process group's backend under ddp ("nccl"/"gloo"), else "".
    """

    mode: str
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    device_id: int | None
    is_main: bool
    devices: tuple[torch.device, ...] = ()
    backend: str = ""


def _device_id(device: torch.device) -> int | None:
    return device.index if device.type == "cuda" else None


def _init_ddp(device: str) -> ParallelContext:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if name not in os.environ]
    if missing:
        raise InputError(
            f"--parallel ddp needs {', '.join(missing)} from torchrun: "
            "launch with `torchrun --nproc_per_node N -m model.train --parallel ddp ...`"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if parse_device(device).type == "cuda":
        # One process per GPU, chosen by local rank; with the gloo override two ranks may share one GPU.
        count = torch.cuda.device_count()
        on_gpu = torch.device("cuda", local_rank if os.environ.get(BACKEND_ENV) != "gloo" else local_rank % count)
        dev = parse_device(str(on_gpu))
        torch.cuda.set_device(dev)
        backend = os.environ.get(BACKEND_ENV, "nccl")
    else:
        dev = torch.device("cpu")
        backend = os.environ.get(BACKEND_ENV, "gloo")
        if backend != "gloo":
            raise InputError(f"{BACKEND_ENV}={backend} cannot run on the CPU: unset it or use gloo")
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=DDP_TIMEOUT, **kwargs)
    return ParallelContext("ddp", rank, world, local_rank, dev, _device_id(dev), rank == 0, (dev,), backend)


def init_parallel(mode: str, device: str, gpus: tuple[str, ...] | None = None) -> ParallelContext:
    """Set up one of the three modes and say where this process computes.

    Args:
        mode: "none" (one device), "towers" (the paper's two towers on `gpus`), "ddp" (one process per
            device, launched by torchrun; reads RANK/WORLD_SIZE/LOCAL_RANK).
        device: "cpu" or "cuda[:N]"; under ddp "cuda" means cuda:LOCAL_RANK.
        gpus: towers only: the two towers' devices, e.g. ("cuda:0", "cuda:1"), ("cuda:0", "cuda:0") or
            ("cpu", "cpu").

    Returns:
        The ParallelContext to pass to wrap_model, all_reduce_sum, unwrap_state_dict and cleanup.
    """
    if mode not in PARALLEL_MODES:
        raise InputError(f"unknown --parallel {mode!r}: choose one of {', '.join(PARALLEL_MODES)}")
    if mode == "ddp":
        return _init_ddp(device)
    if mode == "towers":
        if not gpus or len(gpus) != 2:
            raise InputError(f"--parallel towers needs two devices, e.g. --gpus cuda:0,cuda:1; got {gpus!r}")
        devices = (parse_device(gpus[0], f"--gpus {gpus[0]}"), parse_device(gpus[1], f"--gpus {gpus[1]}"))
        if devices[0].type != devices[1].type:
            raise InputError(f"--gpus {','.join(gpus)}: both towers must be on CUDA or both on the CPU")
        _make_current(devices[0])
        return ParallelContext("towers", 0, 1, 0, devices[0], _device_id(devices[0]), True, devices)
    dev = parse_device(device)
    _make_current(dev)
    return ParallelContext("none", 0, 1, 0, dev, _device_id(dev), True, (dev,))


def _make_current(device: torch.device) -> None:
    """Make a CUDA device the current one, so that nothing (pinned-memory threads, streams, compiled kernels)
    opens a context on cuda:0 when the run is on cuda:N."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def wrap_model(model: nn.Module, ctx: ParallelContext) -> nn.Module:
    """Place `model` for the mode: moved to ctx.device, split into TowerAlexNet, or wrapped in DDP.

    Args:
        model: a freshly built (or loaded) one-device network.
        ctx: from init_parallel.

    Returns:
        The module to train; call it with images on ctx.device, it returns logits on ctx.device.
    """
    if ctx.mode == "towers":
        from model.towers import LAYERS, TowerAlexNet  # only this mode needs it

        if not all(hasattr(model, name) for name in LAYERS):
            raise InputError(f"--parallel towers splits the paper's two-tower `alexnet`; {type(model).__name__} "
                             "has no towers: use -a alexnet, or --parallel ddp")
        if getattr(model, "towers", 2) != 2:
            raise InputError("--parallel towers splits the two-tower net; --towers 1 is the one-GPU net: "
                             "drop one of them (or use --parallel ddp)")
        return TowerAlexNet.from_alexnet(model, ctx.devices)
    model = model.to(ctx.device)
    if ctx.mode == "ddp":
        # DDP broadcasts rank 0's parameters at construction, so every rank starts from the same weights.
        ids = [ctx.device_id] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def unwrap_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the one-device `alexnet` keys (conv1.weight ... fc8.bias), on the CPU.

    Args:
        model: what wrap_model returned.

    Returns:
        A state dict any mode can load (CPU tensors, so a checkpoint does not pin a device).
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return {key: value.detach().cpu() for key, value in inner.state_dict().items()}


def load_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load one-device `alexnet` weights into what wrap_model returned (any mode).

    Args:
        model: what wrap_model returned.
        state: a state dict with the one-device keys, e.g. a checkpoint's "state_dict".
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    inner.load_state_dict(state)


def all_reduce_sum(tensor: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """Sum `tensor` over all ranks (in place, and returned); the identity unless ddp.

    Args:
        tensor: e.g. torch.tensor([correct1, correct5, count, loss_sum]) on ctx.device (float64 keeps
            counts of 50,000 images exact).
        ctx: from init_parallel.

    Returns:
        The summed tensor (the same object).
    """
    if ctx.mode == "ddp" and ctx.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(value, ctx: ParallelContext) -> list:
    """[rank 0's value, rank 1's, ...] on every rank (picklable values, e.g. generator states); [value] unless ddp."""
    if ctx.mode != "ddp" or ctx.world_size == 1:
        return [value]
    values: list = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def cleanup(ctx: ParallelContext) -> None:
    """Leave the process group (ddp); nothing in the other modes."""
    if ctx.mode == "ddp" and dist.is_initialized():
        dist.destroy_process_group()


def optimizer_state_dict(optimizer: torch.optim.Optimizer, model: nn.Module, ctx: ParallelContext) -> dict:
    """The optimizer's state in the one-device layout (momentum of conv1.weight as one (96, ...) tensor).

    Under towers each one-device parameter is two half tensors, so the plain optimizer.state_dict() would
    not load in another mode; this joins the halves. Other modes: optimizer.state_dict() unchanged.

    Args:
        optimizer: built over model.parameters() (any grouping by parameter name).
        model: what wrap_model returned.
        ctx: from init_parallel.

    Returns:
        A state dict that load_optimizer_state_dict restores in any mode.
    """
    if ctx.mode == "towers":
        from model.towers import join_optimizer_state

        return join_optimizer_state(optimizer, model)
    return optimizer.state_dict()


def load_optimizer_state_dict(
    optimizer: torch.optim.Optimizer, state: dict, model: nn.Module, ctx: ParallelContext
) -> None:
    """Restore what optimizer_state_dict returned (in this mode or another) into `optimizer`.

    Args:
        optimizer: built over model.parameters() the same way as when the state was saved.
        state: the one-device-layout optimizer state, e.g. a checkpoint's "optimizer".
        model: what wrap_model returned.
        ctx: from init_parallel.
    """
    if ctx.mode == "towers":
        from model.towers import split_optimizer_state

        split_optimizer_state(optimizer, state, model)
        return
    optimizer.load_state_dict(state)


def min_over_ranks(value: int, ctx: ParallelContext) -> int:
    """The smallest `value` over all ranks (e.g. training batches per epoch); `value` itself unless ddp.

    DDP needs every rank to take the same number of steps: a rank with one batch more would wait forever
    in its gradient all-reduce. Shards differ by at most one image, which can still change the batch count
    (e.g. 4 and 5 images in batches of 5 with the last partial batch dropped: 0 and 1 batches).

    Args:
        value: this rank's count.
        ctx: from init_parallel.

    Returns:
        The minimum over ranks.
    """
    if ctx.mode != "ddp" or ctx.world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())
