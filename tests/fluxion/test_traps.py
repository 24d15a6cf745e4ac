"""Assignments that used to do something else silently now raise, saying what to do instead."""

from __future__ import annotations

import pytest
import torch

import zoo.fluxion as fl


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(fl.Linear(4, 4), fl.SiLU())


def test_assigning_a_module_to_a_built_chain_points_to_append_and_insert() -> None:
    model = _model()
    with pytest.raises(fl.ChainAttributeError, match=r"would add a child named 'foo'.*append.*insert"):
        model.foo = fl.Linear(4, 4)
    assert [name for name, _ in model.named_children()] == ["Linear", "SiLU"]


def test_replacing_a_child_by_assignment_points_to_replace() -> None:
    model = _model()
    linear = model.Linear
    with pytest.raises(
        AttributeError, match=r"swap the child 'Linear'.*\.replace\(chain\.Linear, new_module\)"
    ):
        model.Linear = fl.Linear(4, 4)
    assert model.Linear is linear


def test_deleting_a_child_by_attribute_points_to_remove() -> None:
    model = _model()
    with pytest.raises(fl.ChainAttributeError, match=r"del Chain\.SiLU.*\.remove\(chain\.SiLU\)"):
        del model.SiLU
    assert len(model) == 2


def test_plain_attributes_and_edits_through_methods_still_work() -> None:
    model = _model()
    model.note = "kept"  # not a module: an ordinary attribute
    model.append(fl.Linear(4, 2))
    model.replace(model.SiLU, fl.ReLU())
    model.training = False
    assert model.note == "kept" and [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]


class Gated(fl.Chain):
    """A chain whose constructor assigns a module attribute after super().__init__ (torch's way)."""

    def __init__(self) -> None:
        super().__init__(fl.Linear(2, 2))
        self.gate = fl.Identity()


def test_constructors_keep_torchs_behaviour_and_only_they_do() -> None:
    gated = Gated()
    assert [name for name, _ in gated.named_children()] == ["Linear", "gate"]
    with pytest.raises(fl.ChainAttributeError):
        gated.other = fl.Identity()


def test_a_subclass_calling_the_chain_constructor_finishes_construction_once() -> None:
    class Outer(Gated):
        def __init__(self) -> None:
            super().__init__()
            self.extra = fl.Identity()  # still inside Outer.__init__

    outer = Outer()
    assert "extra" in dict(outer.named_children())
    with pytest.raises(fl.ChainAttributeError):
        outer.late = fl.Identity()


def _adapter() -> tuple[fl.Chain, fl.LoraAdapter]:
    model = _model()
    target = model.layer("Linear", fl.Linear)
    loras = [fl.LinearLora.for_target(name, target, rank=2) for name in ("a", "b")]
    for lora in loras:
        with torch.no_grad():
            lora.up.weight.normal_()  # pyright: ignore[reportCallIssue]
    return model, fl.LoraAdapter(target, *loras).inject(model)


def test_adapter_scale_sets_every_lora_and_changes_the_output() -> None:
    model, adapter = _adapter()
    x = torch.randn(3, 4)
    full = model(x)
    adapter.scale = 0.0
    assert adapter.scales == {"a": 0.0, "b": 0.0} and adapter.scale == 0.0
    assert not torch.allclose(model(x), full)
    adapter.eject()
    base = model(x)
    adapter.inject()
    torch.testing.assert_close(model(x), base, rtol=0, atol=0)


def test_adapter_scales_set_by_name_and_unknown_names_raise_before_any_change() -> None:
    _, adapter = _adapter()
    adapter.scales = {"b": 0.25}
    assert adapter.scales == {"a": 1.0, "b": 0.25}
    with pytest.raises(fl.FluxionError, match=r"different scales.*adapter\.scales"):
        _ = adapter.scale
    with pytest.raises(KeyError, match=r"no LoRA named 'z'.*its LoRAs are \['a', 'b'\]"):
        adapter.scales = {"a": 0.5, "z": 2.0}
    assert adapter.scales == {"a": 1.0, "b": 0.25}


def test_an_adapter_without_loras_has_no_scale() -> None:
    model = _model()
    adapter = fl.LoraAdapter(model.layer("Linear", fl.Linear))
    with pytest.raises(fl.FluxionError, match=r"no LoRA.*add_lora"):
        _ = adapter.scale


def test_an_unknown_attribute_on_an_adapter_raises_and_lists_what_can_be_set() -> None:
    _, adapter = _adapter()
    with pytest.raises(AttributeError, match=r"no attribute 'sacle'.*scale, scales"):
        adapter.sacle = 0.5  # pyright: ignore[reportAttributeAccessIssue]
    adapter.training = False  # existing attributes stay settable
    adapter._private_note = 1  # so do private ones (torch and tools set those)


class Shift(fl.Sum, fl.Adapter[fl.Linear]):
    """An adapter that creates its own attribute during construction."""

    def __init__(self, target: fl.Linear) -> None:
        self.amount = 1.0
        with self.setup_adapter(target):
            super().__init__(target, fl.Multiply(0.0, bias=self.amount))
        self.label = "shift"


def test_adapters_create_attributes_in_their_constructor_only() -> None:
    model = _model()
    shift = Shift(model.layer("Linear", fl.Linear)).inject(model)
    shift.amount = 2.0
    with pytest.raises(fl.ChainAttributeError, match="'lable'"):
        shift.lable = "typo"
