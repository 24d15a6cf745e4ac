"""Every layer builds on meta and runs on CPU in float32, float16 and bfloat16."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import zoo.fluxion as fl

Factory = Callable[[torch.device, torch.dtype], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]


def _tokens(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor]:
    return (torch.randn(2, 5, 8, device=device, dtype=dtype),)


def _image(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor]:
    return (torch.randn(1, 4, 8, 8, device=device, dtype=dtype),)


CASES: dict[str, Factory] = {
    "Linear": lambda d, t: (fl.Linear(8, 3, device=d, dtype=t), _tokens(d, t)),
    "Conv2d": lambda d, t: (fl.Conv2d(4, 6, 3, padding=1, device=d, dtype=t), _image(d, t)),
    "GroupNorm": lambda d, t: (fl.GroupNorm(2, 4, device=d, dtype=t), _image(d, t)),
    "LayerNorm": lambda d, t: (fl.LayerNorm(8, device=d, dtype=t), _tokens(d, t)),
    "Embedding": lambda d, t: (
        fl.Embedding(10, 4, device=d, dtype=t),
        (torch.tensor([[1, 2, 3]], device=d),),
    ),
    "Parameter": lambda d, t: (fl.Parameter(3, 4, device=d, dtype=t), ()),
    "SiLU": lambda d, t: (fl.SiLU(), _tokens(d, t)),
    "GeLU": lambda d, t: (fl.GeLU(), _tokens(d, t)),
    "GeLU-tanh": lambda d, t: (fl.GeLU(approximate="tanh"), _tokens(d, t)),
    "QuickGeLU": lambda d, t: (fl.QuickGeLU(), _tokens(d, t)),
    "GLU": lambda d, t: (fl.GLU(fl.GeLU()), _tokens(d, t)),
    "SelfAttention": lambda d, t: (fl.SelfAttention(8, num_heads=2, device=d, dtype=t), _tokens(d, t)),
    "CausalSelfAttention": lambda d, t: (
        fl.SelfAttention(8, 2, is_causal=True, device=d, dtype=t),
        _tokens(d, t),
    ),
    "Downsample": lambda d, t: (fl.Downsample(4, device=d, dtype=t), _image(d, t)),
    "Downsample-pad0": lambda d, t: (fl.Downsample(4, padding=0, device=d, dtype=t), _image(d, t)),
    "Upsample": lambda d, t: (fl.Upsample(4, device=d, dtype=t), _image(d, t)),
    "Reshape": lambda d, t: (fl.Reshape(40), _tokens(d, t)),
    "Flatten": lambda d, t: (fl.Flatten(1), _tokens(d, t)),
    "Unflatten": lambda d, t: (fl.Unflatten(2, (2, 4)), _tokens(d, t)),
    "Transpose": lambda d, t: (fl.Transpose(1, 2), _tokens(d, t)),
    "Permute": lambda d, t: (fl.Permute(0, 2, 1), _tokens(d, t)),
    "Slicing": lambda d, t: (fl.Slicing(dim=1, start=1, end=3), _tokens(d, t)),
    "LinearLora": lambda d, t: (fl.LinearLora("a", 8, 3, rank=2, device=d, dtype=t), _tokens(d, t)),
    "Conv2dLora": lambda d, t: (
        fl.Conv2dLora("a", 4, 6, rank=2, kernel_size=3, padding=1, device=d, dtype=t),
        _image(d, t),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_on_meta(name: str) -> None:
    device = torch.device("meta")
    layer, inputs = CASES[name](device, torch.float32)
    assert all(p.device.type == "meta" for p in layer.parameters())
    output = layer(*inputs)
    assert output.device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_on_cpu(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer, inputs = CASES[name](torch.device("cpu"), dtype)
    output = layer(*inputs)
    if output.is_floating_point():
        assert output.dtype == dtype and torch.isfinite(output).all()
    if isinstance(layer, fl.Module) and any(True for _ in layer.parameters()):
        assert layer.dtype == dtype
