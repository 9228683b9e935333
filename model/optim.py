"""The optimiser of §5: SGD with momentum, weight decay on the weights and (by default) not on the biases.

The paper's rule is v <- 0.9 v - 0.0005 lr w - lr dL/dw. The authors' code gives biases no weight cost:
cuda-convnet2 builds every layer's biases as `Weights(..., wc=0, ...)` (cudaconvnet/src/layer.cu:743), the
`wc=0.0005` of layers/layer-params-imagenet-*.cfg is the weights' only; Caffe's bvlc_alexnet says
`decay_mult: 0` for every bias (models/bvlc_alexnet/train_val.prototxt:51). `decay_biases=True`
(model.train --wd-biases) decays them too: one parameter group, what torch.optim.SGD(weight_decay=...)
over all parameters does.
"""
from __future__ import annotations

import torch
from torch import nn


def is_bias(name: str, param: torch.Tensor) -> bool:
    """A bias (or any 1-D parameter): conv*.bias, fc*.bias, towers.k.<layer>.bias, module.<...>.bias."""
    return name.endswith("bias") or param.dim() == 1


def param_groups(model: nn.Module, weight_decay: float, decay_biases: bool = False) -> list[dict]:
    """SGD parameter groups: [weights with weight_decay, biases with 0], or one group when decay_biases.

    Args:
        model: the module to train (maybe wrapped: TowerAlexNet, DDP); parameters in named_parameters order.
        weight_decay: the L2 coefficient of the weights (§5: 0.0005).
        decay_biases: decay the biases with the same coefficient (one group, torch's plain SGD).

    Returns:
        Groups for torch.optim.SGD; every parameter of `model` is in exactly one.
    """
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    if decay_biases:
        return [{"params": [param for _, param in named], "weight_decay": weight_decay}]
    return [
        {"params": [param for name, param in named if not is_bias(name, param)], "weight_decay": weight_decay},
        {"params": [param for name, param in named if is_bias(name, param)], "weight_decay": 0.0},
    ]


def make_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float,
             decay_biases: bool = False) -> torch.optim.SGD:
    """torch.optim.SGD over `param_groups(model, weight_decay, decay_biases)`."""
    return torch.optim.SGD(param_groups(model, weight_decay, decay_biases), lr=lr, momentum=momentum)


def decays_biases(optimizer_state: dict) -> bool:
    """Whether a saved optimizer state (a checkpoint's "optimizer") decays the biases: one parameter group
    (checkpoints written before biases had their own group, or --wd-biases) does, two do not."""
    return len(optimizer_state.get("param_groups", ())) == 1
