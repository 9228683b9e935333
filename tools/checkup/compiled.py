"""The compile stage (selftest --compile): what `model.train --compile` costs. torch.compile traces and
compiles on the first step, and again for what its guards did not cover: evaluation (the model's training
flag) and a new batch size (the partial last batch of validation), each ~40 s on a 2-core CPU, so it stays
out of the default run. Each phase's time and the graphs compiled so far are reported, and the compiled
model's evaluation logits are checked against eager mode's.
"""
from __future__ import annotations

import time

import torch

from model.engine import Trainer, train_step
from model.optim import make_sgd
from tools.checkup.network import FP32_BOUND, inputs, network, relative
from tools.checkup.plan import Settings
from tools.checkup.record import CheckFailed, Outcome, Recorder


def timed(device: torch.device, call) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_steps(device: torch.device, batch: int) -> Outcome:
    net = network("alexnet", device)
    compiled = torch.compile(net)
    trainer = Trainer(compiled, make_sgd(net, 0.001, 0.9, 5e-4, False), device)
    images, labels = inputs(batch, device)
    phases = {}
    for phase, call in (
        ("first training step (compiles)", lambda: train_step(trainer, images, labels)),
        ("second training step", lambda: train_step(trainer, images, labels)),
        ("third training step", lambda: train_step(trainer, images, labels)),
        ("evaluation (recompiles)", lambda: _evaluate(compiled, images)),
        (f"training step at batch {batch - 1} (recompiles)", lambda: train_step(trainer, images[1:], labels[1:])),
    ):
        compiled.train()
        seconds, _ = timed(device, call)
        phases[phase] = {"seconds": seconds, "graphs_so_far": graphs()}
    eager_logits = _evaluate(net, images)
    compiled_logits = _evaluate(compiled, images)
    figures = {"device": str(device), "batch": batch, "phases": phases,
               "eval_logits_rel_diff": relative(compiled_logits.float().cpu(), eager_logits.float().cpu())}
    first, third = phases["first training step (compiles)"]["seconds"], phases["third training step"]["seconds"]
    recompiles = [p["seconds"] for name, p in phases.items() if "recompiles" in name]
    summary = (f"compile {first:.0f} s, then {third:.2f} s a step; eval and a new batch size recompile "
               f"({' + '.join(f'{s:.0f}' for s in recompiles)} s); {graphs()} graphs")
    if figures["eval_logits_rel_diff"] > FP32_BOUND * 10:
        raise CheckFailed(f"compiled logits {figures['eval_logits_rel_diff']:.1e} from eager mode", figures, summary)
    return Outcome(summary, figures)


def _evaluate(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images)


def compile_stage(record: Recorder, settings: Settings) -> None:
    device = torch.device("cuda", 0) if settings.device == "gpu" else torch.device("cpu")
    batch = max(2, settings.sizes.batch)
    record.check("torch.compile", compile_steps, device, batch)
