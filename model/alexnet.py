"""The networks: the paper's two-tower AlexNet (shared PAPER.md §3) and torchvision's one-tower variant.

`alexnet` is the paper's Figure 2 on one device: the towers are the two groups of the grouped convolutions
(conv2, conv4, conv5 read only their own tower's maps), while conv3 and the FC layers read both towers.
Output channels [0, C/2) of every layer are tower 1, [C/2, C) tower 2; model/towers.py splits the same
tensors across two devices, so a state dict moves freely between the two.

Input size: the paper says 224x224, which does not give 55x55 after an 11x11 stride-4 kernel. cuda-convnet
let the last window hang past the edge; we do the equivalent: pad a 224 input by 3 pixels right and bottom
to 227 (zeros, i.e. the mean after mean subtraction), then convolve without padding: (227 - 11) / 4 + 1 = 55.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# §3.3 local response normalisation, b = a / (k + alpha/n * sum a^2)^beta over n = 5 channels. The paper
# writes alpha without the 1/n; cuda-convnet2 (the authors' own code) divides by n, which is exactly what
# torch's LocalResponseNorm does, so these are the paper's constants with the authors' semantics.
# The sum runs over adjacent maps of the same tower: each GPU normalised its own layer, so the maps at the
# edge of tower 1 never see tower 2's (TowerLRN below).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
# §3.4 overlapping pooling: z = 3, s = 2. The paper's comparison (+0.4 / +0.3 % error): non-overlapping
# z = s = 2, which gives the same 55 -> 27 -> 13 -> 6 sizes.
POOL_KERNEL, POOL_STRIDE = 3, 2
PLAIN_POOL_KERNEL, PLAIN_POOL_STRIDE = 2, 2
POOLS = ("overlap", "plain")
# Kernels per conv layer of the two-tower net (Figure 2), and of the one-GPU net of §3.2's footnote: half
# the kernels in conv1-conv4; conv5 (and the FC layers after it) not halved, "to make the two nets have
# approximately the same number of parameters". One tower, so no grouped convolutions.
CONV_KERNELS = {2: (96, 256, 384, 384, 256), 1: (48, 128, 192, 192, 256)}
# §4.2 dropout probability in fc6 and fc7.
DROPOUT = 0.5
# §5 initialisation: weights N(0, 0.01); bias 1 in conv2, conv4, conv5, fc6, fc7 (0 elsewhere).
INIT_STD = 0.01
PAPER_BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")
PAPER_BIAS_ONE = 1.0
# model.train's default for that bias: 0.1, Caffe's reimplementation (models/bvlc_alexnet/train_val.prototxt,
# bias_filler value 0.1 in the same five layers). With 1, conv4/conv5/fc6/fc7 start almost image-independent
# (99 % of conv5's activation is the same for every image) and fc8 sees a near-constant 4096-vector: the
# update along it is ~4096 x lr x p(1 - p), unstable when p ~ 1/C is large (10 classes: loss 3 -> 30 in
# four steps, then dead fc7 units and a loss stuck at ln C). docs/training.md has the measurements.
DEFAULT_BIAS_ONE = 0.1
# Right/bottom padding that turns a 224 input into cuda-convnet's effective 227.
INPUT_PAD = 3

ARCHS = ("alexnet", "alexnet_owt")
# "paper": §5's N(0, 0.01) weights and constant biases. "kaiming": He et al.'s N(0, 2 / fan_in) for every
# layer but fc8 (N(0, 0.01)), biases 0 -- the same network, a start that leaves the initial plateau in tens
# of steps instead of thousands (with inputs of unit scale: --normalize meanstd); the demo uses it.
INITS = ("paper", "kaiming")


@dataclass(frozen=True)
class NetConfig:
    """The paper's network (the defaults) and the ablations its text measures.

    Attributes:
        towers: 2 (Figure 2) or 1 (§3.2's one-GPU comparison net: CONV_KERNELS[1]; +1.7 / +1.2 % error).
        lrn: local response normalisation after conv1 and conv2 (§3.3; without: +1.4 / +1.2 %).
        pool: "overlap" (3/2, §3.4) or "plain" (2/2; +0.4 / +0.3 %).
        dropout: dropout 0.5 in fc6 and fc7 (§4.2; without it "substantial overfitting").
    """

    towers: int = 2
    lrn: bool = True
    pool: Literal["overlap", "plain"] = "overlap"
    dropout: bool = True

    def check(self) -> None:
        """Raise ValueError for a value the network cannot be built with."""
        if self.towers not in CONV_KERNELS or self.pool not in POOLS:
            raise ValueError(f"towers must be one of {tuple(CONV_KERNELS)} and pool one of {POOLS}, "
                             f"got {self.towers!r}, {self.pool!r}")


class AlexNet(nn.Module):
    """The paper's net: 96-256-384-384-256 kernels, 4096-4096-classes neurons, two towers as groups.

    Args:
        num_classes: outputs of fc8 (1000 for ImageNet).
        bias_one: the constant bias of conv2, conv4, conv5, fc6, fc7 (the paper's 1.0; model.train's default
            is Caffe's 0.1, DEFAULT_BIAS_ONE).
        init: "paper" (§5) or "kaiming" (see INITS).
        net: the paper's net (NetConfig()) or one of its ablations; the layer names stay conv1..fc8.
    """

    def __init__(self, num_classes: int = 1000, bias_one: float = PAPER_BIAS_ONE, init: str = "paper",
                 net: NetConfig = NetConfig()) -> None:
        super().__init__()
        net.check()
        self.towers = net.towers
        c1, c2, c3, c4, c5 = CONV_KERNELS[net.towers]
        self.conv1 = nn.Conv2d(3, c1, 11, stride=4)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=net.towers)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=net.towers)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=net.towers)
        self.fc6 = nn.Linear(c5 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.lrn = TowerLRN(net.towers) if net.lrn else nn.Identity()
        self.pool = nn.MaxPool2d(*((POOL_KERNEL, POOL_STRIDE) if net.pool == "overlap"
                                   else (PLAIN_POOL_KERNEL, PLAIN_POOL_STRIDE)))
        self.dropout = nn.Dropout(DROPOUT if net.dropout else 0.0)
        if init == "kaiming":
            init_kaiming(self)
        else:
            init_paper(self, bias_one)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, 224|227, 227) -> conv5 pooled maps (N, 256, 6, 6)."""
        if x.shape[-1] == 224:
            x = F.pad(x, (0, INPUT_PAD, 0, INPUT_PAD))
        x = self.pool(self.lrn(F.relu(self.conv1(x))))
        x = self.pool(self.lrn(F.relu(self.conv2(x))))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        return self.pool(F.relu(self.conv5(x)))

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (N, 4096), after ReLU: the space of the paper's Figure 4."""
        x = torch.flatten(self.conv_features(x), 1)
        x = self.dropout(F.relu(self.fc6(x)))
        return F.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.dropout(self.fc7_features(x)))


class AlexNetOWT(nn.Module):
    """torchvision's "one weird trick" AlexNet (64-192-384-256-256, no LRN), with its state-dict keys.

    A local torchvision `alexnet` checkpoint loads into it with `load_state_dict`.
    """

    def __init__(self, num_classes: int = 1000, bias_one: float | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(DROPOUT), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def fc7_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (N, 4096), after ReLU."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[6](self.fc7_features(x))


def _channel_mean(a: torch.Tensor, towers: int) -> torch.Tensor:
    """The mean of `a` over the LRN_SIZE channels around each channel, zeros past each tower's edge.

    One pooling pass over a view of `a` in its own memory format (NCHW or channels_last), no copy: the
    window runs along C, which is the innermost dimension of a channels_last tensor and a row of an NCHW one.
    """
    n, c, h, w = a.shape
    pad = LRN_SIZE // 2  # torch's LocalResponseNorm pads size // 2 before and (size - 1) // 2 after: equal for 5
    if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        rows = a.permute(0, 2, 3, 1).reshape(n * h * w * towers, 1, c // towers)  # (pixel, tower) x channels
        mean = F.avg_pool1d(rows, LRN_SIZE, stride=1, padding=pad)  # count_include_pad: zeros count, / n
        return mean.view(n, h, w, c).permute(0, 3, 1, 2)
    maps = a.reshape(n * towers, 1, c // towers, h * w)
    return F.avg_pool2d(maps, (LRN_SIZE, 1), stride=1, padding=(pad, 0)).view(n, c, h, w)


class _LRN(torch.autograd.Function):
    """b = a * d^-beta, d = k + alpha * mean(a^2) = k + alpha/n * sum(a^2) (LRN_ALPHA's semantics).

    Six passes over the maps forward (square, window mean, scale, shift, pow, product), five backward.

    Backward by hand: autograd's graph of the same ops cost 1.3-1.5x on the CPU (docs/BENCHMARKS.md). With
    g = dL/db, dL/da = g * d^-beta - 2 * alpha * beta * a * mean(g * a * d^-beta / d), where `mean` is the
    same window (it is symmetric, so it is its own transpose).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, towers: int) -> torch.Tensor:
        # In a's dtype on every device: autocast would run pow (CUDA) or avg_pool3d (CPU, torch's own LRN) in
        # fp32 and return fp32 maps that are twice the bytes, only for conv2 to cast them back to bf16.
        with torch.autocast(a.device.type, enabled=False):
            d = _channel_mean(a * a, towers).mul_(LRN_ALPHA).add_(LRN_K)
            scale = d.pow(-LRN_BETA)
        ctx.save_for_backward(a, scale, d)
        ctx.towers = towers
        return a * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        a, scale, d = ctx.saved_tensors
        grad_scaled = grad * scale
        inner = _channel_mean(grad_scaled.mul(a).div_(d), ctx.towers)
        return torch.addcmul(grad_scaled, a, inner, value=-2 * LRN_ALPHA * LRN_BETA), None


class TowerLRN(nn.Module):
    """LRN within each tower: channels [0, C/2) and [C/2, C) are normalised separately (towers=2).

    Equal to torch's LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K) on each tower's channels, but
    it keeps the input's memory format (a channels_last input is not copied to NCHW and back) and makes
    fewer passes over memory (tests/test_model_lrn.py, docs/BENCHMARKS.md).
    """

    def __init__(self, towers: int = 2) -> None:
        super().__init__()
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRN.apply(x, self.towers)

    def extra_repr(self) -> str:
        return f"towers={self.towers}, size={LRN_SIZE}, alpha={LRN_ALPHA}, beta={LRN_BETA}, k={LRN_K}"


def init_paper(model: nn.Module, bias_one: float = PAPER_BIAS_ONE) -> None:
    """§5: every weight N(0, 0.01); bias `bias_one` in conv2, conv4, conv5, fc6, fc7; 0 elsewhere."""
    for name, module in model.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            nn.init.constant_(module.bias, bias_one if name in PAPER_BIAS_ONE_LAYERS else 0.0)


def init_kaiming(model: nn.Module) -> None:
    """He initialisation N(0, 2 / fan_in) for the ReLU layers, N(0, 0.01) for fc8, all biases 0."""
    for name, module in model.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if name == "fc8":
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


def build_model(arch: str, num_classes: int = 1000, bias_one: float = PAPER_BIAS_ONE, init: str = "paper",
                net: NetConfig = NetConfig()) -> nn.Module:
    """`alexnet` (the paper's) or `alexnet_owt` (torchvision's layout, torchvision's default init).

    Args:
        arch: one of ARCHS.
        num_classes: outputs of the last layer.
        bias_one: alexnet, init "paper": the bias of conv2, conv4, conv5, fc6, fc7.
        init: alexnet: "paper" (§5) or "kaiming".
        net: alexnet: the paper's net or an ablation (NetConfig); alexnet_owt only takes the default.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if arch == "alexnet":
        return AlexNet(num_classes, bias_one, init, net)
    if arch == "alexnet_owt":
        if net != NetConfig():
            raise ValueError(f"{net} applies to -a alexnet only; alexnet_owt is torchvision's fixed layout")
        return AlexNetOWT(num_classes)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
