"""The Converter moves inputs to the device and dtype of the next layer with weights."""

from __future__ import annotations

import pytest
import torch

import zoo.fluxion as fl


def test_inputs_take_the_dtype_of_the_next_layer_with_weights() -> None:
    torch.manual_seed(0)
    model = fl.Chain(fl.Converter(), fl.SiLU(), fl.Linear(4, 2, dtype=torch.float64))
    x = torch.randn(3, 4)
    out = model(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, model.Linear(torch.nn.functional.silu(x.double())), rtol=0, atol=0)


def test_the_next_layer_may_sit_after_the_converters_parent() -> None:
    model = fl.Chain(fl.Chain(fl.Identity(), fl.Converter()), fl.Linear(4, 2, device="meta"))
    assert model(torch.zeros(1, 4)).device.type == "meta"


def test_only_floating_point_tensors_change_dtype_and_other_inputs_pass() -> None:
    converted = fl.Chain(fl.Converter(), fl.Lambda(lambda *args: args))
    model = fl.Parallel(converted, fl.Parameter(1, dtype=torch.float16))  # weights after the converter
    (ids, scale, note), _ = model(torch.tensor([1, 2]), torch.ones(1), "note")
    assert ids.dtype == torch.int64 and scale.dtype == torch.float16 and note == "note"


def test_device_or_dtype_can_be_left_alone() -> None:
    model = fl.Chain(fl.Converter(set_dtype=False), fl.Lambda(lambda x: x), fl.Linear(2, 2, device="meta"))
    out = model(torch.zeros(1, 2, dtype=torch.float64))
    assert out.device.type == "meta" and out.dtype == torch.float64


def test_a_converter_with_nothing_after_it_says_where_to_put_it() -> None:
    with pytest.raises(fl.ConverterError, match=r"no layer after it holds weights.*place it before"):
        fl.Chain(fl.Linear(2, 2), fl.Converter())(torch.zeros(1, 2))
