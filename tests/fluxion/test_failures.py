"""Errors raised inside a chain come back once, at the top, with the place and the inputs it received."""

from __future__ import annotations

import traceback

import pytest
import torch

import zoo.fluxion as fl
from zoo.errors import ConfigError
from zoo.fluxion import failures
from zoo.fluxion.tree import summarize, summarize_all
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig


def _view(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(fl.Linear(4, 8), fl.Chain(fl.SiLU(), fl.Linear(6, 2)), fl.SiLU())


def test_the_error_names_the_path_shows_the_tree_and_what_the_layer_received() -> None:
    with pytest.raises(RuntimeError, match="cannot be multiplied") as caught:
        _model()(torch.ones(3, 4, dtype=torch.float32))
    view = _view(caught.value)
    assert view.startswith("Chain.Linear (Linear) failed in Chain; it received Tensor[3, 8] float32 cpu")
    assert "└── Linear(in_features=6, out_features=2, bias=True)  ◀ failed here" in view
    assert view.count("◀") == 1


def test_the_original_is_chained_with_its_traceback_and_the_error_keeps_its_type_and_message() -> None:
    with pytest.raises(RuntimeError) as caught:
        _model()(torch.ones(3, 4))
    located, original = caught.value, caught.value.__cause__
    assert type(located) is RuntimeError and isinstance(original, RuntimeError)
    assert str(located) == str(original)
    assert not getattr(original, "__notes__", [])  # the view is on the exception raised at the top only
    frames = traceback.extract_tb(original.__traceback__)
    assert frames[-1].name == "forward" and frames[-1].filename.endswith("linear.py")  # down to torch


def test_the_view_is_added_once_however_deep_the_failure() -> None:
    deep: torch.nn.Module = fl.Linear(6, 2)
    for _ in range(5):
        deep = fl.Chain(deep)
    with pytest.raises(RuntimeError) as caught:
        fl.Chain(fl.Linear(4, 8), deep)(torch.ones(1, 4))
    assert len(caught.value.__notes__) == 1
    assert "Chain.Chain.Chain.Chain.Chain.Linear (Linear)" in _view(caught.value)
    assert caught.value.__cause__ is not None and caught.value.__cause__.__cause__ is None


def test_far_siblings_of_the_failing_layer_are_elided() -> None:
    layers: list[torch.nn.Module] = [fl.Multiply(float(index)) for index in range(9)]
    layers[4] = fl.Linear(3, 3)
    with pytest.raises(RuntimeError) as caught:
        fl.Chain(*layers)(torch.ones(2, 2))
    assert _view(caught.value).split("\n")[2:] == [
        "├── … 2 more",
        "├── Multiply_3(scale=2.0, bias=0.0)",
        "├── Multiply_4(scale=3.0, bias=0.0)",
        "├── Linear(in_features=3, out_features=3, bias=True)  ◀ failed here",
        "├── Multiply_5(scale=5.0, bias=0.0)",
        "├── Multiply_6(scale=6.0, bias=0.0)",
        "└── … 2 more",
    ]


def test_errors_of_zoo_and_key_errors_keep_what_callers_catch() -> None:
    def refuse(_x: torch.Tensor) -> torch.Tensor:
        raise ConfigError("this layer refuses", file="model.json", hint="do something else")

    with pytest.raises(ConfigError, match="refuses") as caught:
        fl.Chain(fl.Chain(fl.Lambda(refuse)))(torch.ones(1))
    assert caught.value.hint == "do something else" and caught.value.file == "model.json"
    assert "Chain.Lambda (Lambda)" in _view(caught.value)

    model = fl.Chain(fl.Chain(fl.UseContext("cond", "shift")))
    with pytest.raises(KeyError, match="set it before the forward") as missing:
        model(torch.zeros(1))
    assert "Chain.UseContext (UseContext)" in _view(missing.value)


class _TwoArguments(Exception):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} because {why}")


def test_an_exception_that_cannot_be_rebuilt_gets_the_view_itself() -> None:
    def fail(_x: torch.Tensor) -> torch.Tensor:
        raise _TwoArguments("no", "reasons")

    with pytest.raises(_TwoArguments) as caught:
        fl.Chain(fl.Lambda(fail))(torch.ones(1))
    assert caught.value.__cause__ is None  # re-raised as it was, nothing swallowed
    assert str(caught.value) == "no because reasons" and "Lambda (Lambda)" in _view(caught.value)


def test_a_failure_in_the_called_chains_own_forward_is_located_too() -> None:
    with pytest.raises(RuntimeError) as caught:
        fl.Residual(fl.Linear(4, 2))(torch.ones(1, 4))
    assert _view(caught.value).startswith("Residual (Residual) failed in its own forward")


def test_a_model_running_another_model_shows_the_inner_place_once() -> None:
    inner = fl.Chain(fl.Chain(fl.Linear(6, 2)))
    outer = fl.Chain(fl.Linear(4, 4), fl.Lambda(inner))
    with pytest.raises(RuntimeError) as caught:
        outer(torch.ones(1, 4))
    assert len(caught.value.__notes__) == 1
    assert _view(caught.value).startswith("Chain.Linear (Linear) failed in Chain; it received Tensor[1, 4]")


def test_interrupts_pass_untouched() -> None:
    def interrupt(_x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        fl.Chain(fl.Chain(fl.Lambda(interrupt)))(torch.ones(1))
    assert caught.value.__cause__ is None and not getattr(caught.value, "__notes__", [])


def test_nothing_is_recorded_when_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args: object) -> None:
        raise AssertionError("failure handling ran on the success path")

    monkeypatch.setattr(failures, "_child_view", forbidden)
    monkeypatch.setattr(failures, "_twin", forbidden)
    model = _model()
    model.Chain.replace(model.Chain.Linear, fl.Linear(8, 2))
    assert model(torch.ones(3, 4)).shape == (3, 2)


def test_inputs_are_summarized_compactly() -> None:
    values = (torch.zeros(2, 3, dtype=torch.float16), None, 3, [torch.zeros(1, dtype=torch.int64)], "x")
    assert summarize_all(values) == "Tensor[2, 3] float16 cpu, None, 3, [Tensor[1] int64 cpu], 'x'"
    assert summarize(tuple(range(9))) == "(0, 1, 2, 3, 4, 5, … 3 more)"


def test_a_wrong_conditioning_shape_in_the_tiny_sdxl_unet_names_the_layer_and_the_shapes() -> None:
    config = UNetConfig.tiny_sdxl()
    torch.manual_seed(0)
    unet = UNet(config)
    wrong_width = config.cross_attention_dim + 8
    with pytest.raises(RuntimeError, match="cannot be multiplied") as caught:
        unet.denoise(
            torch.randn(1, config.in_channels, 16, 16),
            timestep=999,
            text_embedding=torch.randn(1, 7, wrong_width),
            pooled=torch.randn(1, config.cross_attention_dim),
            time_ids=torch.zeros(1, 6),
        )
    view = _view(caught.value)
    path = "DownBlocks.Chain_4.SpatialTransformer.TransformerLayer_1.CrossAttentionBlock.CrossAttention"
    assert view.startswith(f"{path}.Distribute.Linear_2 (Linear) failed in UNet")
    assert f"it received Tensor[1, 7, {wrong_width}] float32 cpu" in view
    assert f"Linear_2(in_features={config.cross_attention_dim}, out_features=64, bias=False)  ◀" in view
    assert unet.layer(f"{path}.Distribute.Linear_2", fl.Linear).in_features == config.cross_attention_dim
