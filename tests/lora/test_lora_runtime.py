"""`zoo.lora` on small chains: injecting, stacking, scaling, removing, fusing; refusals change nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo.fluxion as fl
from zoo.errors import ConfigError, CoverageError, FormatError, TensorValueError
from zoo.lora import (
    eject_loras,
    fuse_loras,
    inject_lora,
    lora_names,
    lora_scales,
    remove_lora,
    set_lora_scale,
)


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(
        fl.Conv2d(4, 8, 3, stride=2, padding=1),
        fl.Flatten(1),
        fl.Chain(fl.Linear(8 * 4 * 4, 16), fl.SiLU(), fl.Linear(16, 16)),
        fl.Linear(16, 3),
    )


def _weights(seed: int, rank: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "Conv2d.lora_down.weight": torch.randn(rank, 4, 3, 3, generator=g),
        "Conv2d.lora_up.weight": torch.randn(8, rank, 1, 1, generator=g),
        "Chain.Linear_1.lora_down.weight": torch.randn(rank, 128, generator=g),
        "Chain.Linear_1.lora_up.weight": torch.randn(16, rank, generator=g),
        "Chain.Linear_2.lora_down.weight": torch.randn(rank, 16, generator=g),
        "Chain.Linear_2.lora_up.weight": torch.randn(16, rank, generator=g),
    }


def _reference(
    model: fl.Chain, loras: list[tuple[dict[str, torch.Tensor], float]], x: torch.Tensor
) -> torch.Tensor:
    """The base model's forward with every update added to the weights by hand."""
    base = fl.base_state_dict(model)

    def weight(path: str) -> torch.Tensor:
        w = base[f"{path}.weight"].detach().clone()
        for weights, scale in loras:
            if f"{path}.lora_down.weight" not in weights:
                continue
            down, up = weights[f"{path}.lora_down.weight"], weights[f"{path}.lora_up.weight"]
            w += scale * (up.flatten(1) @ down.flatten(1)).reshape(w.shape)
        return w

    h = F.conv2d(x, weight("Conv2d"), base["Conv2d.bias"], stride=2, padding=1).flatten(1)
    h = F.silu(F.linear(h, weight("Chain.Linear_1"), base["Chain.Linear_1.bias"]))
    h = F.linear(h, weight("Chain.Linear_2"), base["Chain.Linear_2.bias"])
    return F.linear(h, base["Linear.weight"], base["Linear.bias"])


def _state(model: fl.Chain) -> tuple[list[str], dict[str, torch.Tensor]]:
    names = [name for name, _ in model.named_modules()]
    return names, {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: fl.Chain, before: tuple[list[str], dict[str, torch.Tensor]]) -> bool:
    names, state = before
    now = model.state_dict()
    return [n for n, _ in model.named_modules()] == names and all(
        torch.equal(now[k], v) for k, v in state.items()
    )


def test_two_loras_stack_scale_and_come_out_bit_for_bit() -> None:
    model, x = _model(), torch.randn(2, 4, 8, 8)
    before = _state(model)
    a, b = _weights(1), _weights(2, rank=3)
    base = _reference(model, [], x)
    adapters = inject_lora(model, "a", a, scale=0.8)
    inject_lora(model, "b", b, scale=0.3)
    assert len(adapters) == 3 and lora_names(model) == ["a", "b"]
    assert lora_scales(model) == {"a": 0.8, "b": 0.3}
    torch.testing.assert_close(model(x), _reference(model, [(a, 0.8), (b, 0.3)], x), rtol=1e-5, atol=1e-5)
    set_lora_scale(model, "a", -1.0)
    torch.testing.assert_close(model(x), _reference(model, [(a, -1.0), (b, 0.3)], x), rtol=1e-5, atol=1e-5)
    remove_lora(model, "a")
    torch.testing.assert_close(model(x), _reference(model, [(b, 0.3)], x), rtol=1e-5, atol=1e-5)
    eject_loras(model)
    assert _unchanged(model, before) and lora_names(model) == []
    assert torch.equal(model(x), base)


def test_fuse_matches_injected_and_unfuse_restores_the_bits() -> None:
    model, x = _model(), torch.randn(2, 4, 8, 8)
    before = _state(model)
    inject_lora(model, "a", _weights(1), scale=0.5)
    inject_lora(model, "b", _weights(2), scale=2.0)
    injected = model(x)
    fused = fuse_loras(model, ["a"])
    assert lora_names(model) == ["b"]
    torch.testing.assert_close(model(x), injected, rtol=1e-5, atol=1e-5)
    eject_loras(model)
    fused.unfuse()
    assert _unchanged(model, before)


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (
            lambda w: w.update(
                {"Nowhere.lora_down.weight": torch.zeros(2, 3), "Nowhere.lora_up.weight": torch.zeros(3, 2)}
            ),
            CoverageError,
            "no such layer",
        ),
        (
            lambda w: w.update({"Chain.Linear_2.lora_up.weight": torch.zeros(15, 2)}),
            CoverageError,
            "do not fit",
        ),
        (lambda w: w.update({"Chain.Linear_2.lora_up.weight": torch.zeros(16, 3)}), CoverageError, "rank"),
        (
            lambda w: w.update(
                {
                    "Chain.SiLU.lora_down.weight": torch.zeros(2, 3),
                    "Chain.SiLU.lora_up.weight": torch.zeros(3, 2),
                }
            ),
            CoverageError,
            "no such layer",
        ),
        (
            lambda w: w["Conv2d.lora_down.weight"].__setitem__((0, 0, 0, 0), float("inf")),
            TensorValueError,
            "NaN or Inf",
        ),
        (lambda w: w.update({"Conv2d.alpha": torch.tensor(1.0)}), FormatError, "Conv2d.alpha"),
        (lambda w: w.pop("Conv2d.lora_up.weight"), FormatError, "down or up"),
    ],
)
def test_refusals_leave_the_model_unchanged(edit, error: type[Exception], match: str) -> None:
    model = _model()
    inject_lora(model, "first", _weights(3))
    before = _state(model)
    weights = _weights(4)
    edit(weights)
    with pytest.raises(error, match=match):
        inject_lora(model, "second", weights)
    assert _unchanged(model, before) and lora_names(model) == ["first"]


def test_names_are_unique_and_unknown_names_are_errors() -> None:
    model = _model()
    inject_lora(model, "a", _weights(1))
    with pytest.raises(ConfigError, match="already has a LoRA named 'a'"):
        inject_lora(model, "a", _weights(2))
    for action in (
        lambda: remove_lora(model, "z"),
        lambda: set_lora_scale(model, "z", 1.0),
        lambda: fuse_loras(model, ["z"]),
    ):
        with pytest.raises(ConfigError, match="no LoRA named 'z'"):
            action()
    assert lora_names(model) == ["a"]


def test_a_lora_on_half_the_layers_of_a_parent_keeps_the_others_reachable() -> None:
    """Injecting renames siblings (`Linear_1` -> `Linear`): layers are still found by their base path."""
    model = _model()
    only_second = {k: v for k, v in _weights(1).items() if k.startswith("Chain.Linear_2")}
    inject_lora(model, "a", only_second)
    only_first = {k: v for k, v in _weights(2).items() if k.startswith("Chain.Linear_1")}
    inject_lora(model, "b", only_first)
    inject_lora(model, "c", _weights(3))
    assert sorted(len(adapter.loras) for adapter in model.layers(fl.LoraAdapter)) == [1, 2, 2]
    x = torch.randn(1, 4, 8, 8)
    expected = _reference(model, [(only_second, 1.0), (only_first, 1.0), (_weights(3), 1.0)], x)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_low_precision_models_get_loras_in_their_dtype_and_fuse_in_float32() -> None:
    model, x = _model().to(torch.bfloat16), torch.randn(2, 4, 8, 8)
    before = _state(model)
    inject_lora(model, "a", _weights(1))  # float32 weights, cast to the layers' dtype
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    injected = model(x.to(torch.bfloat16)).float()
    fused = fuse_loras(model)
    assert torch.allclose(model(x.to(torch.bfloat16)).float(), injected, rtol=0.05, atol=0.05)
    fused.unfuse()
    assert _unchanged(model, before)
