"""Per-layer statistics of the paper's AlexNet at one training step (what `imagenet-tools start-stats` writes).

Each record is computed from the layer outputs that forward hooks kept (before ReLU) and the gradients of
the step, before the update. docs/training.md reads them ("Why the paper's start fails on 10 classes").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def layer_record(name: str, pre: torch.Tensor, module: torch.nn.Module, lr: float) -> dict:
    """Statistics of one layer's output `pre` (before its ReLU; fc8's logits have none)."""
    post = pre if name == "fc8" else F.relu(pre)
    per_unit = post if post.dim() == 2 else post.mean(dim=(2, 3))  # (N, units): channels for convolutions
    seen_max = post.amax(dim=[0, 2, 3] if post.dim() == 4 else [0])
    shared = per_unit.mean(0).pow(2).sum() / per_unit.pow(2).sum(1).mean().clamp_min(1e-30)
    grad = module.weight.grad
    return {
        "pre_rms": pre.pow(2).mean().sqrt().item(), "act_rms": post.pow(2).mean().sqrt().item(),
        "dead": None if name == "fc8" else (seen_max <= 0).float().mean().item(),
        "shared": shared.item(), "w_norm": module.weight.norm().item(), "g_norm": grad.norm().item(),
        "b_mean": module.bias.mean().item(), "update_ratio": (lr * grad.norm() / module.weight.norm()).item(),
    }


def step_record(step: int, lr: float, loss: torch.Tensor, images: torch.Tensor, net, outputs: dict,
                lrn: list) -> dict:
    """One JSON line: the step's loss and every layer's statistics (gradients of this step, before the update)."""
    logits = outputs["fc8"]
    record = {"step": step, "lr": lr, "loss": loss.item(), "input_rms": images.pow(2).mean().sqrt().item()}
    record.update({name: layer_record(name, outputs[name], getattr(net, name), lr) for name in LAYERS})
    record["logits"] = {"std_over_images": logits.std(0).mean().item(), "std_over_classes": logits.std(1).mean().item(),
                        "fc8_bias_std": net.fc8.bias.std().item()}
    record["lrn_divisor"] = [(a.abs().sum() / b.abs().sum().clamp_min(1e-30)).item() for a, b in lrn]
    return record
