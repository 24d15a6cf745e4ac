"""The three scenarios the framework exists for, as executable code."""

from __future__ import annotations

import torch

import zoo.fluxion as fl


def _seed() -> None:
    torch.manual_seed(0)


class ShiftAdapter(fl.Sum, fl.Adapter[fl.Linear]):
    """Adds a learned shift to a Linear's output: Sum(target, Parameter)."""

    def __init__(self, target: fl.Linear) -> None:
        with self.setup_adapter(target):
            super().__init__(target, fl.Parameter(target.out_features))


def _model() -> fl.Chain:
    _seed()
    return fl.Chain(fl.Linear(4, 6), fl.Chain(fl.SiLU(), fl.Linear(6, 3)))


def _snapshot(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(key, value.clone()) for key, value in model.state_dict().items()]


def _assert_same_state(model: torch.nn.Module, snapshot: list[tuple[str, torch.Tensor]]) -> None:
    current = list(model.state_dict().items())
    assert [key for key, _ in current] == [key for key, _ in snapshot]
    for (_, a), (_, b) in zip(current, snapshot, strict=True):
        assert torch.equal(a, b)


def test_leaf_adapter_found_by_walk_injects_and_ejects_exactly() -> None:
    model = _model()
    x = torch.randn(2, 4)
    before, state, modules = model(x), _snapshot(model), list(model.modules())

    adapters: list[ShiftAdapter] = []
    for target, parent in model.walk(fl.Linear):
        adapters.append(ShiftAdapter(target))  # creating it must leave the model unchanged
        assert target.parent is parent
    assert torch.equal(model(x), before)
    _assert_same_state(model, state)

    for adapter, (_target, parent) in zip(adapters, model.walk(fl.Linear), strict=True):
        adapter.inject(parent)
    assert not torch.equal(model(x), before)
    assert any(isinstance(m, ShiftAdapter) for m in model.modules())

    for adapter in adapters:
        adapter.eject()
    assert torch.equal(model(x), before)
    _assert_same_state(model, state)
    assert list(model.modules()) == modules


class ReorderAdapter(fl.Chain, fl.Adapter[fl.Chain]):
    """Runs a copy of the target's last layer before the whole target (weights shared)."""

    def __init__(self, target: fl.Chain) -> None:
        square = target.layer("Linear_2", fl.Linear)
        with self.setup_adapter(target):
            super().__init__(fl.Residual(fl.Chain(square).structural_copy()), target)


def test_chain_adapter_reuses_structural_copy_and_injects_without_parent() -> None:
    torch.manual_seed(0)
    block = fl.Chain(fl.Linear(3, 3), fl.SiLU(), fl.Linear(3, 3))
    model = fl.Chain(fl.Linear(5, 3), block)
    x = torch.randn(2, 5)
    before, state = model(x), _snapshot(model)

    adapter = ReorderAdapter(block)
    assert block.parent is model
    copied = adapter.layer("Residual.Chain.Linear", fl.Linear)
    assert copied.weight.data_ptr() == block.Linear_2.weight.data_ptr()  # shared storage, no copy

    adapter.inject()  # a chain target knows its parent
    assert model[1] is adapter and block.parent is adapter
    assert not torch.equal(model(x), before)

    adapter.eject()
    assert model[1] is block and block.parent is model
    assert torch.equal(model(x), before)
    _assert_same_state(model, state)


def test_lora_adapter_zero_init_train_like_edit_and_eject() -> None:
    model = _model()
    x = torch.randn(2, 4)
    before, state = model(x), _snapshot(model)
    target = model.layer("Chain.Linear", fl.Linear)
    lora = fl.LinearLora("style", target.in_features, target.out_features, rank=2)
    adapter = fl.LoraAdapter(target, lora).inject(model.Chain)
    assert torch.equal(model(x), before)  # zero-initialised up: no change

    with torch.no_grad():
        lora.up.weight.normal_()  # pyright: ignore[reportCallIssue]
    edited = model(x)
    assert not torch.allclose(edited, before)
    lora.scale = 0.0
    assert torch.allclose(model(x), before)

    adapter.eject()
    assert torch.equal(model(x), before)
    _assert_same_state(model, state)
