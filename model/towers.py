"""The paper's model parallelism (§3.2): tower k's half of every layer on device k.

Each layer's output channels (or neurons) [0, C/2) are tower 1 and [C/2, C) tower 2, exactly as in the
one-device `AlexNet` (model/alexnet.py), so every parameter is the concatenation of its two halves along
dim 0 and the state dict keeps the one-device keys. The towers exchange activations only where the net
connects them:

    conv1 -> conv2 -> | conv3 (reads both towers' conv2 maps) -> conv4 -> conv5 -> | fc6 | fc7 | fc8 -> loss
          own tower   ^ exchange                                  own tower        ^ exchange before each FC

LRN normalises within each tower (as cuda-convnet did, and as alexnet.py's TowerLRN does), so it needs
no exchange. fc6, fc7, fc8 are split by output neurons, each half reading the full input; fc8's halves meet on
tower 1's device, where the labels and the loss live.

Concurrency: tower k's kernels are queued on device k's current CUDA stream, and the host never waits inside
a step (device-to-device copies are asynchronous, `non_blocking` from the host), so two GPUs compute at
once; each copy is a two-way barrier between the devices' streams, which is where the net needs the other
tower's output anyway. The autograd engine runs one thread per device, so the backward passes overlap too.
With both towers on one device (cuda:0,cuda:0 or cpu,cpu) the copies are no-ops and the same code runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.alexnet import DROPOUT, INPUT_PAD, TowerLRN

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
TOWERS = 2


def _half(layer: nn.Module, rows: slice, device: torch.device) -> nn.Module:
    """A layer with the output channels/neurons `rows` of `layer` (its weights copied), on `device`.

    Input channels are the layer's per-group input (weight.shape[1]): a tower's own maps for the grouped
    conv2/4/5, all maps for conv3, the full vector for the FC layers.
    """
    weight, bias = layer.weight[rows], layer.bias[rows]
    if isinstance(layer, nn.Conv2d):
        half = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride, layer.padding,
                         device=device)
    else:
        half = nn.Linear(weight.shape[1], weight.shape[0], device=device)
    with torch.no_grad():
        half.weight.copy_(weight)
        half.bias.copy_(bias)
    if weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        half = half.to(memory_format=torch.channels_last)  # keep --channels-last's NHWC kernels
    return half


def _rows(count: int) -> tuple[slice, slice]:
    """Tower 1 gets [0, ceil(C/2)), tower 2 the rest (torch.tensor_split's rule, for an odd fc8)."""
    first = (count + 1) // 2
    return slice(0, first), slice(first, count)


class TowerAlexNet(nn.Module):
    """The paper's AlexNet with tower k on devices[k]; a drop-in for `AlexNet` in training and checkpoints.

    Args:
        alexnet: a one-device `AlexNet` whose weights are copied (it is left as it was).
        devices: the two towers' devices; may be equal (one GPU, or the CPU).
    """

    def __init__(self, alexnet: nn.Module, devices: tuple[torch.device, torch.device]):
        super().__init__()
        self.devices = tuple(torch.device(d) for d in devices)
        towers = []
        for k, device in enumerate(self.devices):
            towers.append(nn.ModuleDict({name: _half(getattr(alexnet, name),
                                                     _rows(getattr(alexnet, name).weight.shape[0])[k], device)
                                         for name in LAYERS}))
        self.towers = nn.ModuleList(towers)
        # The one-device net's LRN (or none: --no-lrn), pooling (--pool) and dropout (--no-dropout).
        self.lrn = TowerLRN(towers=1) if isinstance(alexnet.lrn, TowerLRN) else nn.Identity()
        self.pool = nn.MaxPool2d(alexnet.pool.kernel_size, alexnet.pool.stride)
        self.dropout = nn.Dropout(getattr(getattr(alexnet, "dropout", None), "p", DROPOUT))
        self._input_stream: torch.cuda.Stream | None = None  # created on first use, on two distinct GPUs

    @classmethod
    def from_alexnet(cls, alexnet: nn.Module, devices: tuple[torch.device, ...]) -> "TowerAlexNet":
        """Split a one-device `AlexNet` over two devices (see the class docstring)."""
        if not all(hasattr(alexnet, name) for name in LAYERS) or len(devices) != TOWERS:
            raise ValueError("towers split the paper's `alexnet` (conv1..fc8) over exactly two devices")
        if getattr(alexnet, "towers", TOWERS) != TOWERS:
            raise ValueError("the one-GPU net (towers=1) has no towers to split over two devices")
        return cls(alexnet, (devices[0], devices[1]))

    # --- the exchanges ---------------------------------------------------------------------------------
    def _to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return x.to(self.devices[k], non_blocking=True)

    def _send_input(self, x: torch.Tensor) -> torch.Tensor:
        """The image batch for tower 2. Between two GPUs it is the largest copy of the step (79 MB at batch
        128 in fp32), so it goes on a side stream of devices[0]: tower 1's conv1 need not wait behind it."""
        target = self.devices[1]
        if x.device == target or x.device.type != "cuda" or target.type != "cuda":
            return x.to(target, non_blocking=True)
        return self._copy_on_side_stream(x, target)

    # Eager under torch.compile: stream switches and record_stream are not traced faithfully
    # (pytorch/pytorch#92804, #109848). Only the two-GPU case gets here, at the cost of one graph break.
    @torch.compiler.disable
    def _copy_on_side_stream(self, x: torch.Tensor, target: torch.device) -> torch.Tensor:
        if self._input_stream is None:
            self._input_stream = torch.cuda.Stream(device=x.device)
        self._input_stream.wait_stream(torch.cuda.current_stream(x.device))  # x is written by now
        with torch.cuda.stream(self._input_stream):
            # The copy runs on the source's current stream (this side stream) and makes devices[1]'s
            # current stream wait for it, so tower 2 reads a complete image.
            copied = x.to(target, non_blocking=True)
        x.record_stream(self._input_stream)  # x's memory is not reused before the copy has read it
        return copied

    def _gather(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each tower gets both towers' tensors, concatenated along dim 1, on its own device."""
        kind = parts[0].device.type
        if torch.is_autocast_enabled(kind) and parts[0].dtype == torch.float32:
            # TowerLRN keeps conv2's maps in the autocast dtype; should a layer here return fp32 (torch's own
            # LocalResponseNorm does), conv3 would cast them anyway: casting before the copy halves the exchange.
            parts = [part.to(torch.get_autocast_dtype(kind)) for part in parts]
        return [torch.cat([self._to(part, k) for part in parts], dim=1) for k in range(TOWERS)]

    def _lrn(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """LRN of each tower's own maps (the paper's LRN never crosses towers)."""
        return [self.lrn(part) for part in parts]

    # --- the net ---------------------------------------------------------------------------------------
    def _layer(self, name: str, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.towers[k][name](x) for k, x in enumerate(xs)]

    def conv_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images (N, 3, 224|227, 227) on devices[0] -> each tower's conv5 pooled maps (N, 128, 6, 6)."""
        x = self._to(x, 0)  # a no-op when the loader already put the batch on tower 1's device
        if x.shape[-1] == 224:
            x = F.pad(x, (0, INPUT_PAD, 0, INPUT_PAD))
        xs = [x, self._send_input(x)]  # both towers read the image
        xs = self._lrn([F.relu(y) for y in self._layer("conv1", xs)])
        xs = [self.pool(y) for y in xs]
        xs = self._lrn([F.relu(y) for y in self._layer("conv2", xs)])
        xs = self._gather([self.pool(y) for y in xs])  # conv3 reads both
        xs = [F.relu(y) for y in self._layer("conv3", xs)]
        xs = [F.relu(y) for y in self._layer("conv4", xs)]
        return [self.pool(F.relu(y)) for y in self._layer("conv5", xs)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images on devices[0] -> logits (N, classes) on devices[0], equal to `AlexNet.forward`."""
        # Tower 1's channels come first in the flattened vector, as in the one-device flatten.
        xs = self._gather([torch.flatten(y, 1) for y in self.conv_features(x)])
        xs = self._gather([self.dropout(F.relu(y)) for y in self._layer("fc6", xs)])
        xs = self._gather([self.dropout(F.relu(y)) for y in self._layer("fc7", xs)])
        logits = self._layer("fc8", xs)
        return torch.cat([logits[0], self._to(logits[1], 0)], dim=1)

    # --- one-device keys -------------------------------------------------------------------------------
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False) -> dict:
        """The one-device keys (conv1.weight ... fc8.bias), each tensor the two halves joined on devices[0]."""
        out = {} if destination is None else destination
        for name in LAYERS:
            for kind in ("weight", "bias"):
                halves = [getattr(tower[name], kind).detach() for tower in self.towers]
                out[f"{prefix}{name}.{kind}"] = torch.cat([halves[0], halves[1].to(self.devices[0])])
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """Copy one-device weights (the keys of `AlexNet`) into the two towers' halves.

        Raises:
            RuntimeError: missing or unexpected keys (when strict), or a shape that does not fit.
        """
        expected = {f"{name}.{kind}" for name in LAYERS for kind in ("weight", "bias")}
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
        if strict and (missing or unexpected):
            raise RuntimeError(f"TowerAlexNet state dict: missing keys {missing}, unexpected keys {unexpected}")
        with torch.no_grad():
            for key in sorted(expected & set(state_dict)):
                name, kind = key.split(".")
                halves = [getattr(tower[name], kind) for tower in self.towers]
                value = state_dict[key]
                if value.shape[0] != halves[0].shape[0] + halves[1].shape[0] or value.shape[1:] != halves[0].shape[1:]:
                    raise RuntimeError(f"size mismatch for {key}: checkpoint {tuple(value.shape)}, "
                                       f"towers {tuple(halves[0].shape)} + {tuple(halves[1].shape)}")
                for half, rows in zip(halves, _rows(value.shape[0])):
                    half.copy_(value[rows])
        return nn.modules.module._IncompatibleKeys(missing, unexpected)


# --- optimizer state in the one-device layout ------------------------------------------------------------
def _one_device_index(optimizer: torch.optim.Optimizer, model: TowerAlexNet) -> tuple[list, dict[str, int]]:
    """For each of the optimizer's parameters (state_dict order): (tower, one-device name); and the index
    each one-device name gets in the one-device optimizer (order of first appearance, as named_parameters of
    `AlexNet` lists them when the optimizer is built over model.parameters())."""
    names = {id(p): n for n, p in model.named_parameters()}  # "towers.<k>.<layer>.<kind>"
    where, index = [], {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            _, tower, layer, kind = names[id(param)].split(".")
            where.append((int(tower), f"{layer}.{kind}"))
            index.setdefault(f"{layer}.{kind}", len(index))
    return where, index


def join_optimizer_state(optimizer: torch.optim.Optimizer, model: TowerAlexNet) -> dict:
    """optimizer.state_dict() with each parameter's two halves joined (one-device layout, CPU tensors).

    Args:
        optimizer: built over model.parameters(); both halves of a parameter in the same group.
        model: the TowerAlexNet it optimises.

    Returns:
        The state dict a one-device optimizer built the same way would have.
    """
    saved = optimizer.state_dict()
    where, index = _one_device_index(optimizer, model)
    halves: dict[str, list[dict]] = {}
    groups = []
    for group in saved["param_groups"]:
        names = list(dict.fromkeys(where[i][1] for i in group["params"]))
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": [index[n] for n in names]})
        for i in group["params"]:
            halves.setdefault(where[i][1], [{}, {}])[where[i][0]] = saved["state"].get(i, {})
    state = {}
    for name, (first, second) in halves.items():
        if first:
            state[index[name]] = {key: torch.cat([value.cpu(), second[key].cpu()])
                                  if torch.is_tensor(value) and value.dim() > 0 else value
                                  for key, value in first.items()}
    return {"state": state, "param_groups": groups}


def split_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, model: TowerAlexNet) -> None:
    """Load a one-device-layout optimizer state (join_optimizer_state's, or a one-device run's) into
    `optimizer`, giving each half its rows.

    Args:
        optimizer: built over model.parameters() with the same grouping as when the state was saved.
        state: {"state": ..., "param_groups": ...} in the one-device layout.
        model: the TowerAlexNet it optimises.
    """
    where, index = _one_device_index(optimizer, model)
    own = optimizer.state_dict()
    if len(own["param_groups"]) != len(state["param_groups"]):
        raise ValueError("the optimizer state has a different number of parameter groups than the optimizer")
    groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": mine["params"]}
              for saved, mine in zip(state["param_groups"], own["param_groups"])]
    split = {}
    for i, (k, name) in enumerate(where):
        one = state["state"].get(index[name])
        if one:
            split[i] = {key: value[_rows(value.shape[0])[k]].clone()
                        if torch.is_tensor(value) and value.dim() > 0 else value
                        for key, value in one.items()}
    optimizer.load_state_dict({"state": split, "param_groups": groups})
