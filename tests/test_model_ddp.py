"""DDP (model/parallel.py) with 2 gloo processes on the CPU against a 1-process run of the global batch.

The reference is plain `AlexNet` on one process with the whole global batch: no process group, no DDP.
Two ranks each take half of the same global batch; DDP's averaged gradients, the all-reduced losses and
the weights after the SGD steps must equal the reference's.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from model.alexnet import AlexNet
from model.parallel import all_reduce_sum, cleanup, init_parallel, min_over_ranks, unwrap_state_dict, wrap_model
from pipeline.errors import InputError
from tests.conftest import CLASSES as CLASS_NAMES
from tests.conftest import requires_cuda, write_image_tree, write_lists

CLASSES = 10
WORLD = 2
PER_RANK = 2
STEPS = 2
SEED = 100  # rank 0's; the other rank starts from different weights, which DDP must overwrite
DEADLINE_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    images = torch.rand(WORLD * PER_RANK, 3, 224, 224, generator=generator) * 255 - 120
    return images, torch.randint(0, CLASSES, (WORLD * PER_RANK,), generator=generator)


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _worker(rank: int, port: int, out_dir: str, device: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then the training loop's calls."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if device == "cuda":  # the CPU reference is plain fp32: no TF32 convolutions or matrix products here
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    ctx = init_parallel("ddp", device, None)
    torch.manual_seed(SEED + rank)
    net = AlexNet(num_classes=CLASSES)
    net.dropout.p = 0.0  # the reference cannot draw the same masks
    model = wrap_model(net, ctx)
    optimizer = _optimizer(model)
    losses, grads = [], {}
    for step in range(STEPS):
        images, labels = _global_batch(step)
        shard = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images[shard].to(ctx.device)), labels[shard].to(ctx.device))
        loss.backward()
        if step == 0:
            grads = {name: p.grad.detach().cpu().clone() for name, p in model.module.named_parameters()}
        optimizer.step()
        # As the validation loop does: sums of loss x count and count over ranks.
        total = all_reduce_sum(torch.tensor([loss.item() * PER_RANK, PER_RANK], dtype=torch.float64,
                                            device=ctx.device), ctx)
        losses.append((total[0] / total[1]).item())
    fewest = min_over_ranks(5 + rank, ctx)  # e.g. batches per epoch: 5 on rank 0, 6 on rank 1
    fitted = _fit_unequal_shards(rank, Path(out_dir), device)
    torch.save({"ctx": (ctx.rank, ctx.world_size, ctx.is_main, str(ctx.device), ctx.backend), "fewest": fewest,
                "losses": losses, "grads": grads, "state": unwrap_state_dict(model), "fitted": fitted},
               Path(out_dir) / f"rank{rank}.pt")
    cleanup(ctx)


def _fit_unequal_shards(rank: int, out: Path, device: str) -> tuple[int, dict[str, torch.Tensor]]:
    """model/run.py's training loop under DDP where rank r's shard has 2 + r batches: every rank must take
    2 steps (one more on rank 1 would pair its gradient all-reduce with rank 0's metric sums)."""
    from model import run as run_module
    from model.config import OptimConfig, RunConfig, ScheduleConfig
    from pipeline.config import DataConfig

    def fake_make_loader(cfg, split, shard_id=0, num_shards=1):
        images, labels = _global_batch(7)
        count = 2 + shard_id if split == "train" else 1
        return [(images[i:i + 1], labels[i:i + 1]) for i in range(count)]

    run_module.make_loader = fake_make_loader  # this process only (a spawned rank)
    (out / "val.txt").write_text("a.JPEG 0\n")  # a validation list (the fake loader never opens it)
    session = run_module.open_session(
        DataConfig(root=out, batch_size=1, val_list=out / "val.txt"), OptimConfig(lr=0.001), ScheduleConfig(epochs=1),
        RunConfig(arch="alexnet", out=out / "fit", device=device, parallel="ddp", print_freq=100))
    run_module.fit(session)
    return session.position.step, unwrap_state_dict(session.net)


def _stop_worker(rank: int, port: int, out_dir: str, device: str) -> None:
    """A signal reaches rank 1 only, at step 3: both ranks must see the stop at the same step (the next
    poll, step 10), and not before, since one rank leaving the loop alone would hang the other."""
    from model.run_log import DDP_POLL_STEPS, StopRequest

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx = init_parallel("ddp", device, None)
    stop = StopRequest(ctx)
    seen = []
    for step in range(1, DDP_POLL_STEPS + 3):
        if rank == 1 and step == 3:
            stop.name = "SIGTERM"  # what the signal handler records
        seen.append(stop.requested(step))
    torch.save({"seen": seen, "now": stop.requested(), "name": stop.name}, Path(out_dir) / f"rank{rank}.pt")
    cleanup(ctx)


def test_a_signal_on_one_rank_stops_both_at_the_same_step(tmp_path):
    from model.run_log import DDP_POLL_STEPS

    results = _run_ranks(tmp_path, "cpu", _stop_worker)
    expected = [step >= DDP_POLL_STEPS for step in range(1, DDP_POLL_STEPS + 3)]
    assert [r["seen"] for r in results] == [expected, expected] and all(r["now"] for r in results)
    assert [r["name"] for r in results] == ["a signal on another rank", "SIGTERM"]


def _run_ranks(tmp_path: Path, device: str, worker=_worker) -> list[dict]:
    """Spawn the two ranks; fail (not hang) if they do not finish within DEADLINE_S."""
    processes = mp.start_processes(worker, args=(_free_port(), str(tmp_path), device), nprocs=WORLD,
                                   join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    while not processes.join(timeout=5):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.terminate()
            pytest.fail(f"DDP ranks did not finish in {DEADLINE_S} s")
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


def _reference() -> tuple[list[float], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One process, no DDP, the whole global batch per step."""
    torch.manual_seed(SEED)
    net = AlexNet(num_classes=CLASSES)
    net.dropout.p = 0.0
    optimizer = _optimizer(net)
    losses, grads = [], {}
    for step in range(STEPS):
        images, labels = _global_batch(step)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
        if step == 0:
            grads = {name: p.grad.clone() for name, p in net.named_parameters()}
        optimizer.step()
        losses.append(loss.item())
    return losses, grads, net.state_dict()


def _check_ranks_equal_reference(results: list[dict]) -> None:
    losses, grads, state = _reference()
    for rank, result in enumerate(results):
        assert result["ctx"][:3] == (rank, WORLD, rank == 0)
        assert result["fewest"] == 5
        assert result["fitted"][0] == 2, rank
        for key, value in results[0]["fitted"][1].items():
            assert torch.equal(result["fitted"][1][key], value), f"rank {rank} {key}"
        assert result["losses"] == pytest.approx(losses, rel=1e-5), rank
        for name, grad in grads.items():
            scale = grad.abs().max().item()
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-3, atol=1e-4 * scale,
                                       msg=f"rank {rank} {name}")
        # After two steps (the second at loss ~21) the weights carry float32 reduction-order noise of the
        # split batch: measured up to 1.3e-3 of a tensor's largest entry (conv3.bias, a near-zero tensor).
        for key, value in state.items():
            torch.testing.assert_close(result["state"][key], value, rtol=1e-3,
                                       atol=1e-2 * value.abs().max().item(), msg=f"rank {rank} {key}")


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_with_the_global_batch(tmp_path):
    results = _run_ranks(tmp_path, "cpu")
    assert [r["ctx"][3:] for r in results] == [("cpu", "gloo")] * WORLD
    _check_ranks_equal_reference(results)


def test_ddp_without_torchrun_environment_is_one_line_error(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="torchrun"):
        init_parallel("ddp", "cpu", None)


@pytest.mark.gpu
@pytest.mark.timeout(120)
@requires_cuda
def test_two_gloo_ranks_sharing_one_gpu_equal_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_DDP_BACKEND", "gloo")  # NCCL refuses two ranks on one GPU
    # The CPU reference is plain fp32. Each rank turns torch's TF32 switches off itself (_worker); the
    # environment variable also keeps cuBLAS/cuDNN from choosing TF32 on their own.
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    results = _run_ranks(tmp_path, "cuda")
    count = torch.cuda.device_count()
    assert [r["ctx"][3:] for r in results] == [(f"cuda:{rank % count}", "gloo") for rank in range(WORLD)]
    _check_ranks_equal_reference(results)


# --- end to end: torchrun -m model.train --parallel ddp on a generated tree --------------------------------
def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "model.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=DEADLINE_S)


@dataclass(frozen=True)
class DdpRun:
    """A generated tree, the flags of a 2-rank torchrun run on it, and one uninterrupted run (`whole`)."""
    common: list[str]
    whole: Path
    folder: Path


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Iterator[DdpRun]:
    """9 training images in batches of 1 per rank: shards of 4 and 5, so 4 steps an epoch; dropout on. One
    uninterrupted epoch, shared by the two tests below (the evaluation and the stop-and-resume)."""
    folder = tmp_path_factory.mktemp("ddp")
    root = folder / "tree"
    written = write_image_tree(root, {"train": 3, "val": 3})  # 9 + 9 images: shards of 4 and 5
    lists = write_lists(root, written, folder / "lists")
    common = ["--root", str(root), "--lists", str(lists), "--parallel", "ddp", "--device", "cpu",
              "--workers", "1", "-b", "1", "--epochs", "1", "--lr", "0.001"]
    whole = folder / "whole"
    trained = _torchrun([*common, "--out", str(whole)], folder)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stdout.count("epoch 0: train loss") == 1  # rank 0 reports, rank 1 does not
    yield DdpRun(common, whole, folder)
    shutil.rmtree(folder)  # whole-net checkpoints: not kept to the session's end


@pytest.mark.slow
def test_torchrun_ddp_trains_and_validates_each_image_once(ddp_run, tmp_path):
    """Shards of 4 and 5 batches: both ranks must stop after 4 steps (a 5th step on one rank would wait
    forever in DDP's all-reduce); -e on 2 ranks validates each of the 9 val images once."""
    checkpoint = torch.load(ddp_run.whole / "checkpoint.pth.tar", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 4)  # a complete epoch of min(4, 5) steps
    AlexNet(num_classes=len(CLASS_NAMES)).load_state_dict(checkpoint["state_dict"])  # one-device keys

    evaluated = _torchrun([*ddp_run.common, "--out", str(tmp_path / "eval"), "-e", "--resume",
                           str(ddp_run.whole / "checkpoint.pth.tar")], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "(centre, 9 images)" in evaluated.stdout, evaluated.stdout


@pytest.mark.slow
def test_torchrun_ddp_resume_mid_epoch_gives_the_same_weights(ddp_run, tmp_path):
    """Dropout on, 2 ranks: each rank draws its own masks, the checkpoint keeps every rank's generators and DALI
    reader state, and a run stopped after 2 of 4 steps and resumed ends with the weights of the run that never
    stopped."""
    whole, parts = ddp_run.whole, tmp_path / "parts"
    for args in (["--out", str(parts), "--max-steps", "2"],
                 ["--out", str(parts), "--resume", str(parts / "checkpoint.pth.tar")]):
        result = _torchrun([*ddp_run.common, *args], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        if "--max-steps" in args:
            stopped = torch.load(parts / "checkpoint.pth.tar", weights_only=True)
            assert (stopped["epoch"], stopped["epoch_step"]) == (0, 2)
            first, second = stopped["rng_ranks"]
            assert not torch.equal(first["torch"], second["torch"])  # the ranks' dropout streams differ
            assert torch.equal(stopped["rng"]["torch"], first["torch"])
            reader = stopped["reader"]  # each rank's DALI state: its own shard, so not the same
            assert reader["world_size"] == 2 and reader["states"][0] != reader["states"][1]
        else:  # both ranks restored their reader state (the main process says so)
            assert "resuming epoch 0 at batch 2: restored DALI's reader state" in result.stderr, result.stderr[-3000:]
    expected = torch.load(whole / "checkpoint.pth.tar", weights_only=True)
    resumed = torch.load(parts / "checkpoint.pth.tar", weights_only=True)
    assert (resumed["epoch"], resumed["step"]) == (expected["epoch"], expected["step"]) == (1, 4)
    for key, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # The epoch's logged training figures count each rank's steps once, across the stop as without it.
    logged = [json.loads((out / "metrics.jsonl").read_text().splitlines()[-1]) for out in (whole, parts)]
    for key in ("train_loss", "train_top1_err", "train_top5_err"):
        assert logged[1][key] == pytest.approx(logged[0][key], rel=1e-9), key
