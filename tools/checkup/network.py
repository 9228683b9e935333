"""The model stages: one forward/backward of `alexnet` and `alexnet_owt` in fp32, bf16 autocast and
channels_last, the paper's two towers on (device, device), and a 2-process DDP step, each against its
one-device fp32 result; on a GPU also against the same step on the CPU.

Differences are relative: |a - b| over all values of a tensor set (logits, or every gradient), divided by
|b| (L2 norms). fp32 paths that only reorder the arithmetic agree to ~1e-6; bf16 keeps 8 bits of mantissa.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from model.alexnet import ARCHS, build_model
from tools.checkup.ddp import WORLD, no_tf32, reference_step, run_ranks
from tools.checkup.plan import Settings, WorkPaths
from tools.checkup.record import CheckFailed, NotApplicable, Outcome, Recorder

# Reordered fp32 arithmetic (channels_last, towers, DDP, another device): ~1e-6 measured on the CPU. cuDNN
# picks other algorithms per layout and device (Winograd, FFT) whose error is larger: a looser bound there.
FP32_BOUND = 1e-4
GPU_FP32_BOUND = 1e-3
BF16_LOSS_BOUND, BF16_GRAD_BOUND = 0.02, 0.2
CPU_BATCH = 2  # bf16 has no fast path on most CPUs: ~1 s per image for alexnet on 2 cores


def fp32_bound(device: torch.device) -> float:
    return GPU_FP32_BOUND if device.type == "cuda" else FP32_BOUND


def relative(a, b) -> float:
    """||a - b|| / ||b|| over tensors, or dicts of tensors (gradients by name)."""
    if isinstance(b, dict):
        a, b = torch.cat([a[k].flatten().double() for k in b]), torch.cat([b[k].flatten().double() for k in b])
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def step(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, amp: torch.dtype | None) -> dict:
    """Forward, cross-entropy, backward: the loss, logits and gradients on the CPU, and the seconds it took."""
    device = images.device
    net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with autocast:
        logits = net(images)
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"loss": loss.item(), "logits": logits.detach().float().cpu(), "seconds": time.perf_counter() - start,
            "grads": {name: p.grad.detach().float().cpu() for name, p in net.named_parameters()}}


def inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(batch, 3, 224, 224, generator=generator) * 255 - 120  # the pipeline's scale
    return images.to(device), torch.randint(0, 1000, (batch,), generator=generator).to(device)


def network(arch: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(5)
    net = build_model(arch, 1000)
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the same masks on every path
    return net.to(device)


def precisions(arch: str, device: torch.device, batch: int, cpu_reference: dict | None = None) -> Outcome:
    """fp32, bf16 autocast and channels_last against fp32 (and fp32 against the CPU's, when given)."""
    net, (images, labels) = network(arch, device), inputs(batch, device)
    if device.type == "cuda":
        step(net, images, labels, None)  # untimed: cuDNN's first call
    fp32 = step(net, images, labels, None)
    bf16 = step(net, images, labels, torch.bfloat16)
    last = step(net.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last),
                labels, None)
    figures = {"batch": batch, "fp32_loss": fp32["loss"], "fp32_s": fp32["seconds"], "bf16_s": bf16["seconds"],
               "channels_last_s": last["seconds"],
               "bf16_loss_rel_diff": abs(bf16["loss"] - fp32["loss"]) / abs(fp32["loss"]),
               "bf16_grad_rel_diff": relative(bf16["grads"], fp32["grads"]),
               "channels_last_logits_rel_diff": relative(last["logits"], fp32["logits"]),
               "channels_last_grad_rel_diff": relative(last["grads"], fp32["grads"])}
    if cpu_reference is not None:
        figures["vs_cpu_logits_rel_diff"] = relative(fp32["logits"], cpu_reference["logits"])
        figures["vs_cpu_grad_rel_diff"] = relative(fp32["grads"], cpu_reference["grads"])
    summary = (f"{arch}, batch {batch}: fp32 step {fp32['seconds']:.2f} s, bf16 gradients within "
               f"{figures['bf16_grad_rel_diff']:.1%} of fp32's, channels_last {figures['channels_last_grad_rel_diff']:.0e}")
    if cpu_reference is not None:
        summary += f", vs CPU {figures['vs_cpu_grad_rel_diff']:.0e}"
    fp32_worst = max(v for k, v in figures.items() if k.startswith(("channels_last_", "vs_cpu")) and k.endswith("diff"))
    bound = fp32_bound(device)
    if fp32_worst > bound or figures["bf16_loss_rel_diff"] > BF16_LOSS_BOUND \
            or figures["bf16_grad_rel_diff"] > BF16_GRAD_BOUND or not torch.isfinite(fp32["logits"]).all():
        raise CheckFailed(f"{arch}: fp32 paths {fp32_worst:.1e} apart (bound {bound}), bf16 loss "
                          f"{figures['bf16_loss_rel_diff']:.1%} / grads {figures['bf16_grad_rel_diff']:.1%} off "
                          f"(bounds {BF16_LOSS_BOUND:.0%}, {BF16_GRAD_BOUND:.0%})", figures, summary)
    return Outcome(summary, figures, fp32)


def cpu_fp32(arch: str, batch: int) -> Outcome:
    """The CPU's fp32 step, the reference of the GPU's."""
    result = step(network(arch, torch.device("cpu")), *inputs(batch, torch.device("cpu")), None)
    return Outcome("", {"loss": result["loss"], "seconds": result["seconds"]}, result)


def towers(devices: tuple[str, str], batch: int) -> Outcome:
    """TowerAlexNet on `devices` against the one-device AlexNet with the same weights. conv1 is scaled x10 so
    that LRN divides its maps by ~2 instead of ~1.02 (a wrong cut between the towers would then show)."""
    from model.parallel import init_parallel, wrap_model

    ctx = init_parallel("towers", devices[0], devices)
    reference = network("alexnet", ctx.device)
    with torch.no_grad():
        reference.conv1.weight.mul_(10)
    split = wrap_model(reference, ctx)
    split.dropout.p = 0.0
    images, labels = inputs(max(batch, 2), ctx.device)
    expected, got = step(reference, images, labels, None), step(split, images, labels, None)
    joined = {name: torch.cat([half.grad.cpu(), split.towers[1].get_parameter(name).grad.cpu()])
              for name, half in split.towers[0].named_parameters()}
    figures = {"devices": list(devices), "logits_rel_diff": relative(got["logits"], expected["logits"]),
               "grad_rel_diff": relative(joined, expected["grads"]), "seconds": got["seconds"]}
    summary = f"towers on {devices[0]},{devices[1]} {figures['grad_rel_diff']:.0e} from one device"
    bound = fp32_bound(ctx.device)
    if max(figures["logits_rel_diff"], figures["grad_rel_diff"]) > bound:
        raise CheckFailed(f"towers: {figures['grad_rel_diff']:.1e} from the one-device net (bound {bound})",
                          figures, summary)
    return Outcome(summary, figures)


def ddp(paths: WorkPaths, device: str, settings: Settings) -> Outcome:
    batch = settings.sizes.model_batch
    ranks = run_ranks(paths.stage_dir(f"ddp-{device}"), device, batch, max(1, settings.workers // WORLD))
    loss, grads = reference_step(torch.device("cuda" if device == "cuda" else "cpu"), batch)
    figures = {"ranks": [[r["device"], r["backend"]] for r in ranks], "per_rank_batch": batch,
               "loss_rel_diff": max(abs(r["loss"] - loss) / abs(loss) for r in ranks),
               "grad_rel_diff": max(relative(r["grads"], grads) for r in ranks)}
    summary = f"DDP 2 x {ranks[0]['backend']} {figures['grad_rel_diff']:.0e} from one process"
    bound = fp32_bound(torch.device(device))
    if max(figures["loss_rel_diff"], figures["grad_rel_diff"]) > bound:
        raise CheckFailed(f"DDP: {figures['grad_rel_diff']:.1e} from one process (bound {bound})", figures, summary)
    return Outcome(summary, figures)


def model_cpu(record: Recorder, settings: Settings) -> None:
    cpu, batch = torch.device("cpu"), min(settings.sizes.model_batch, CPU_BATCH)
    for arch in ARCHS:
        record.check(arch, precisions, arch, cpu, batch)
    record.check("towers", towers, ("cpu", "cpu"), batch)
    record.check("ddp", ddp, WorkPaths(Path(settings.work)), "cpu", settings)


def model_gpu(record: Recorder, settings: Settings) -> None:
    if not settings.cuda:
        record.check("cuda", _no_cuda)
        return
    no_tf32()  # the fp32 comparisons with the CPU are meant without TF32
    batch = settings.sizes.model_batch
    for arch in ARCHS:
        reference = record.check(f"{arch} fp32 on the cpu", cpu_fp32, arch, batch)
        record.check(arch, precisions, arch, torch.device("cuda", 0), batch, reference)
    pair = ("cuda:0", "cuda:1") if torch.cuda.device_count() > 1 else ("cuda:0", "cuda:0")
    record.check("towers", towers, pair, batch)
    record.check("ddp", ddp, WorkPaths(Path(settings.work)), "cuda", settings)


def _no_cuda() -> Outcome:
    raise NotApplicable("no CUDA device")
