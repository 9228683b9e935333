"""TowerLRN against torch.nn.LocalResponseNorm applied to each tower's channels (the reference), in both
memory formats, fp32 and bf16 autocast, forward and the gradient w.r.t. the input."""
import pytest
import torch

from model.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, TowerLRN

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# (N, C, H, W): conv1's maps at a small batch, and odd ones (batch 1, 1x1 and 2x3 maps, a tower of 3 maps:
# narrower than the 5-map window).
SHAPES = [(2, 96, 13, 11), (1, 8, 1, 1), (1, 6, 2, 3), (3, 10, 5, 1)]


def reference(x: torch.Tensor, towers: int) -> torch.Tensor:
    """torch's LocalResponseNorm on each tower's channels separately (zero-padded at each tower's edge)."""
    lrn = torch.nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
    return torch.cat([lrn(part) for part in x.chunk(towers, dim=1)], dim=1)


def is_memory_format(t: torch.Tensor, memory_format: torch.memory_format) -> bool:
    """True when `t` is laid out in `memory_format` (for shapes where both formats coincide, either)."""
    return t.is_contiguous(memory_format=memory_format)


def inputs(shape, memory_format, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # ReLU maps of a scale at which LRN divides by 1.68-2.78 (median 1.78; k alone: 2^0.75 = 1.68): the sum matters
    x = torch.randn(shape, generator=generator).mul(60).relu().contiguous(memory_format=memory_format)
    grad = torch.randn(shape, generator=generator).contiguous(memory_format=memory_format)
    return x, grad


def forward_backward(fn, x, grad, autocast=False):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = fn(x)
    out.backward(grad.to(out.dtype))
    return out, x.grad


@pytest.mark.parametrize("towers", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", list(FORMATS))
def test_fp32_equals_local_response_norm_per_tower(towers, shape, layout):
    x, grad = inputs(shape, FORMATS[layout])
    out, x_grad = forward_backward(TowerLRN(towers), x, grad)
    expected, expected_grad = forward_backward(lambda t: reference(t, towers), x.contiguous(), grad.contiguous())
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_grad, expected_grad, rtol=1e-5, atol=1e-6)
    assert is_memory_format(out, FORMATS[layout]) and is_memory_format(x_grad, FORMATS[layout])


@pytest.mark.parametrize("towers", [1, 2])
@pytest.mark.parametrize("layout", list(FORMATS))
def test_bf16_autocast_equals_local_response_norm_per_tower(towers, layout):
    x, grad = inputs(SHAPES[0], FORMATS[layout], seed=1)
    x = x.bfloat16()  # under autocast LRN gets conv/ReLU output in bf16
    out, x_grad = forward_backward(TowerLRN(towers), x, grad, autocast=True)
    expected, expected_grad = forward_backward(lambda t: reference(t, towers), x.contiguous(), grad.contiguous(),
                                               autocast=True)
    # torch's LRN returns fp32 under autocast (CPU runs its avg_pool3d in fp32); TowerLRN stays in bf16
    assert out.dtype == x_grad.dtype == expected_grad.dtype == torch.bfloat16 and expected.dtype == torch.float32
    # bf16 keeps 8 significant bits: a rounding step is up to 0.4 %, once in d = k + alpha * mean(a^2), once in b
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(x_grad.float(), expected_grad.float(), rtol=2e-2, atol=2e-2)
    assert is_memory_format(out, FORMATS[layout]) and is_memory_format(x_grad, FORMATS[layout])


def test_channels_last_makes_no_nchw_copy():
    """No hidden format conversion: the forward and backward run no copy kernel (today's reshape to
    (N x towers, C / towers, H, W) copied a channels_last input to NCHW and back)."""
    x, grad = inputs(SHAPES[0], torch.channels_last)
    x.requires_grad_()
    with torch.profiler.profile(record_shapes=True) as prof:
        TowerLRN(2)(x).backward(grad)
    copies = [(e.name, e.input_shapes) for e in prof.events()
              if e.name in ("aten::copy_", "aten::clone", "aten::contiguous") and any(e.input_shapes)]
    assert copies == []  # (0-dim copies of the Python scalars alpha, k do not count)
