"""Adapters: stacking, ejecting in any order, LoRA management, stable base/adapter weights."""

from __future__ import annotations

import itertools

import pytest
import torch

import zoo.fluxion as fl


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(fl.Linear(4, 6), fl.SiLU(), fl.Chain(fl.Linear(6, 3)))


def _lora(target: fl.Linear, name: str, seed: int) -> fl.LinearLora:
    torch.manual_seed(seed)
    lora = fl.LinearLora.for_target(name, target, rank=2)
    with torch.no_grad():
        lora.up.weight.normal_()  # pyright: ignore[reportCallIssue]
    return lora


def _stack(model: fl.Chain) -> list[fl.LoraAdapter]:
    """Two LoRA adapters stacked on the same Linear, plus one elsewhere."""
    first = model.layer("Linear", fl.Linear)
    inner = fl.LoraAdapter(first, _lora(first, "a", 1)).inject(model)
    outer = fl.LoraAdapter(inner, _lora(first, "b", 2)).inject(model)  # pyright: ignore[reportArgumentType]
    last = model.layer("Chain.Linear", fl.Linear)
    other = fl.LoraAdapter(last, _lora(last, "c", 3)).inject(model.Chain)
    return [inner, outer, other]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_stacked_adapters_eject_in_any_order(order: tuple[int, ...]) -> None:
    model = _model()
    x = torch.randn(2, 4)
    before, keys, modules = model(x), list(model.state_dict()), list(model.modules())
    adapters = _stack(model)
    adapted = model(x)
    assert not torch.allclose(adapted, before)
    for index in order:
        adapters[index].eject()
    assert torch.equal(model(x), before)
    assert list(model.state_dict()) == keys and list(model.modules()) == modules


def test_ejected_adapter_can_be_injected_again() -> None:
    model = _model()
    x = torch.randn(2, 4)
    adapter = _stack(model)[2]
    adapted = model(x)
    adapter.eject()
    adapter.inject()
    assert torch.equal(model(x), adapted)


def test_leaf_target_without_parent_needs_one() -> None:
    lone = fl.Linear(2, 2)
    with pytest.raises(ValueError, match="pass the chain"):
        fl.LoraAdapter(lone, fl.LinearLora("a", 2, 2)).inject()


def test_base_weights_keep_their_keys_with_adapters_injected() -> None:
    model = _model()
    plain = model.state_dict()
    _stack(model)
    assert list(model.state_dict()) != list(plain)  # injection renames the live keys...
    base = fl.base_state_dict(model)
    assert list(base) == list(plain)  # ...but the base view does not
    assert all(torch.equal(base[k], plain[k]) for k in plain)

    fresh = _model()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    _stack(fresh)
    fl.load_base_state_dict(fresh, base)
    fl.load_adapter_state_dict(fresh, fl.adapter_state_dict(model))
    x = torch.randn(2, 4)
    assert torch.equal(fresh(x), model(x))


def test_adapter_keys_name_the_base_layer_and_stack_depth() -> None:
    model = _model()
    _stack(model)
    keys = set(fl.adapter_state_dict(model))
    assert "Linear@0.LinearLora.Linear_1.weight" in keys  # "a", closest to the base layer
    assert "Linear@1.LinearLora.Linear_2.weight" in keys  # "b", stacked on top
    assert "Chain.Linear@0.LinearLora.Linear_1.weight" in keys
    with pytest.raises(KeyError, match="missing"):
        fl.load_adapter_state_dict(model, {})


def test_lora_scale_add_remove_by_name_and_fuse() -> None:
    model = _model()
    x = torch.randn(2, 4)
    before = model(x)
    target = model.layer("Chain.Linear", fl.Linear)
    adapter = fl.LoraAdapter(target, _lora(target, "a", 1)).inject(model.Chain)
    adapter.add_lora(_lora(target, "b", 2))
    assert adapter.lora_names == ["a", "b"]
    with pytest.raises(ValueError, match="unique"):
        adapter.add_lora(_lora(target, "a", 3))
    both = model(x)

    fused = torch.nn.functional.linear(
        torch.nn.functional.silu(model.Linear(x)), adapter.fused_weight(), target.bias
    )
    torch.testing.assert_close(fused, both, rtol=1e-5, atol=1e-6)

    adapter.loras["b"].scale = 0.0
    only_a = model(x)
    removed = adapter.remove_lora("b")
    assert removed.name == "b" and torch.equal(model(x), only_a)
    with pytest.raises(KeyError, match="no LoRA named 'b'"):
        adapter.remove_lora("b")
    adapter.loras["a"].scale = 0.0
    assert torch.allclose(model(x), before)


def test_conv2d_lora_matches_a_conv_with_the_fused_weight() -> None:
    torch.manual_seed(0)
    conv = fl.Conv2d(3, 5, 3, padding=1)
    model = fl.Chain(conv)
    lora = fl.Conv2dLora.for_target("a", conv, rank=2)
    with torch.no_grad():
        lora.up.weight.normal_()  # pyright: ignore[reportCallIssue]
    adapter = fl.LoraAdapter(conv, lora).inject(model)
    x = torch.randn(1, 3, 8, 8)
    expected = torch.nn.functional.conv2d(x, adapter.fused_weight(), conv.bias, padding=1)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
