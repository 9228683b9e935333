"""A 2-process DDP step on one machine (model/parallel.py, as torchrun would start it) against one process
with the whole global batch: the all-reduced loss and DDP's averaged gradients must be the reference's.

On the CPU the ranks talk over gloo. On one GPU both ranks share it, which NCCL refuses, so they use gloo
there too (ALEXNET_DDP_BACKEND=gloo, as tests/test_model_ddp.py does); with two GPUs, NCCL, one GPU each.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

WORLD = 2
DEADLINE_S = 240
# Seconds the stage keeps after the ranks' deadline, to kill them, record the error and write its result.
MARGIN_S = 30


def deadline_s(now: float | None = None) -> float:
    """Seconds the ranks may take: DEADLINE_S, and at most the stage's time left less MARGIN_S (the selftest
    passes its stage's end, tools/checkup/stage.py), so that a hang is reported as the DDP error it is."""
    from tools.checkup.stage import ENDS_AT_ENV

    ends_at = os.environ.get(ENDS_AT_ENV)
    if not ends_at:
        return DEADLINE_S
    left = float(ends_at) - (time.time() if now is None else now)
    return max(1.0, min(DEADLINE_S, left - MARGIN_S))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_tf32() -> None:
    """fp32 on the GPU as on the CPU: cuDNN's and cuBLAS's TF32 paths off (torch's own switches; the
    NVIDIA_TF32_OVERRIDE variable alone leaves torch's settings as they are)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def global_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """WORLD x batch images on the pipeline's scale (pixels minus the mean), and labels."""
    generator = torch.Generator().manual_seed(1000)
    images = torch.rand(WORLD * batch, 3, 224, 224, generator=generator) * 255 - 120
    return images, torch.randint(0, 1000, (WORLD * batch,), generator=generator)


def reference_net(device: torch.device) -> torch.nn.Module:
    from model.alexnet import AlexNet

    torch.manual_seed(7)
    net = AlexNet(num_classes=1000)
    net.dropout.p = 0.0  # the ranks cannot draw the reference's masks
    return net.to(device)


def worker(rank: int, port: int, out: str, device: str, batch: int, threads: int) -> None:
    """One rank: the environment torchrun would set, then one training step of the loop's calls."""
    from model.parallel import all_reduce_sum, cleanup, init_parallel, wrap_model

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    if device == "cuda":
        no_tf32()
        if torch.cuda.device_count() < WORLD:
            os.environ["ALEXNET_DDP_BACKEND"] = "gloo"
    ctx = init_parallel("ddp", device, None)
    model = wrap_model(reference_net(torch.device("cpu")), ctx)
    images, labels = global_batch(batch)
    shard = slice(rank * batch, (rank + 1) * batch)
    loss = F.cross_entropy(model(images[shard].to(ctx.device)), labels[shard].to(ctx.device))
    loss.backward()
    total = all_reduce_sum(torch.tensor([loss.item() * batch, batch], dtype=torch.float64, device=ctx.device), ctx)
    grads = {name: p.grad.detach().cpu() for name, p in model.module.named_parameters()}
    torch.save({"loss": (total[0] / total[1]).item(), "grads": grads, "device": str(ctx.device),
                "backend": ctx.backend}, Path(out) / f"rank{rank}.pt")
    cleanup(ctx)


def run_ranks(out: Path, device: str, batch: int, threads: int) -> list[dict]:
    """Spawn the two ranks; an error (not a hang) if they do not finish within deadline_s()."""
    out.mkdir(parents=True, exist_ok=True)
    processes = mp.start_processes(worker, args=(free_port(), str(out), device, batch, threads), nprocs=WORLD,
                                   join=False, start_method="spawn")
    seconds = deadline_s()
    deadline = time.monotonic() + seconds
    try:
        while not processes.join(timeout=2):
            if time.monotonic() > deadline:
                for process in processes.processes:
                    process.kill()
                raise RuntimeError(f"the DDP ranks did not finish in {seconds:.0f} s")
    except mp.ProcessRaisedException as error:  # its first line says only which rank: keep the error itself
        last = [line.strip() for line in str(error).splitlines() if line.strip()][-1]
        raise RuntimeError(f"a DDP rank failed: {last}") from None
    results = []
    for rank in range(WORLD):
        results.append(torch.load(out / f"rank{rank}.pt", weights_only=True))
        (out / f"rank{rank}.pt").unlink()  # every gradient of the net: 0.24 GB
    return results


def reference_step(device: torch.device, batch: int) -> tuple[float, dict[str, torch.Tensor]]:
    """One process, no DDP, the whole global batch."""
    net = reference_net(device)
    images, labels = global_batch(batch)
    loss = F.cross_entropy(net(images.to(device)), labels.to(device))
    loss.backward()
    return loss.item(), {name: p.grad.detach().cpu() for name, p in net.named_parameters()}
