"""`zoo.lora` with every kind of update on small chains: stacking, scaling, exact fuse / unfuse of weights
and biases, and refusals that leave the model as it was."""

from __future__ import annotations

import pytest
import torch

import zoo.fluxion as fl
from zoo.errors import ConfigError, CoverageError, FormatError
from zoo.lora import eject_loras, fuse_loras, inject_lora, lora_names, remove_lora, set_lora_scale


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(
        fl.Conv2d(4, 8, 3, padding=1),
        fl.GroupNorm(2, 8),
        fl.Flatten(1),
        fl.Linear(8 * 4 * 4, 12, bias=False),
        fl.LayerNorm(12),
        fl.Linear(12, 6),
    )


def _tensors(seed: int, **shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {role: 0.3 * torch.randn(shape, generator=generator) for role, shape in shapes.items()}


def _every_kind(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """One LoRA per kind, by name: `<layer>.<role>` tensors."""
    loha = _tensors(seed, hada_t1=(2, 2, 3, 3), hada_w1_a=(2, 8), hada_w1_b=(2, 4))
    loha |= _tensors(seed + 1, hada_t2=(2, 2, 3, 3), hada_w2_a=(2, 8), hada_w2_b=(2, 4))
    lokr = _tensors(seed + 2, lokr_w1=(3, 8), lokr_w2_a=(4, 2), lokr_w2_b=(2, 16))
    dora = _tensors(seed + 3, **{"lora_down.weight": (2, 12), "lora_up.weight": (6, 2)})
    dora["lora_magnitude_vector"] = torch.rand(6, 1) + 0.5
    lycoris_dora = _tensors(
        seed + 4, hada_w1_a=(12, 2), hada_w1_b=(2, 128), hada_w2_a=(12, 2), hada_w2_b=(2, 128)
    )
    lycoris_dora["dora_scale"] = torch.rand(1, 128) + 0.5  # LyCORIS on the input axis
    return {
        "loha": {f"Conv2d.{role}": tensor for role, tensor in loha.items()},
        "lokr": {f"Linear_1.{role}": tensor for role, tensor in lokr.items()},
        "dora": {f"Linear_2.{role}": tensor for role, tensor in dora.items()},
        "lycoris_dora": {f"Linear_1.{role}": tensor for role, tensor in lycoris_dora.items()},
        "full": {f"Linear_2.{role}": t for role, t in _tensors(seed + 5, diff=(6, 12), diff_b=(6,)).items()},
        "norm": {f"GroupNorm.{role}": t for role, t in _tensors(seed + 6, w_norm=(8,), b_norm=(8,)).items()},
        "layer_norm": {f"LayerNorm.{role}": t for role, t in _tensors(seed + 7, w_norm=(12,)).items()},
    }


def _state(model: fl.Chain) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _same(model: fl.Chain, before: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return set(now) == set(before) and all(torch.equal(now[key], value) for key, value in before.items())


def test_every_kind_at_once_removing_one_leaves_the_others_and_ejecting_all_restores_the_bits() -> None:
    x, loras = torch.randn(2, 4, 4, 4), _every_kind(1)
    model, others = _model(), _model()
    before = _state(model)
    base = model(x)
    for name, weights in loras.items():
        inject_lora(model, name, weights, scale=0.7)
        if name != "lokr":
            inject_lora(others, name, weights, scale=0.7)
    assert sorted(lora_names(model)) == sorted(loras)
    assert not torch.allclose(model(x), base, rtol=1e-3, atol=1e-3)
    remove_lora(model, "lokr")
    torch.testing.assert_close(model(x), others(x), rtol=1e-5, atol=1e-6)
    eject_loras(model)
    assert _same(model, before) and torch.equal(model(x), base)


def test_two_kinds_on_one_layer_add_up_and_rescale_alone() -> None:
    x, kinds = torch.randn(3, 128), _every_kind(2)
    loras = {
        name: {k.replace("Linear_1", "Linear"): t for k, t in kinds[name].items()}
        for name in ("lokr", "lycoris_dora")
    }
    model = fl.Chain(fl.Linear(128, 12, bias=False))
    base = model(x)
    changes = {}
    for name in ("lokr", "lycoris_dora"):
        inject_lora(model, name, loras[name], scale=0.5)
        changes[name] = model(x) - base
        eject_loras(model)
    inject_lora(model, "lokr", loras["lokr"], scale=0.5)
    inject_lora(model, "lycoris_dora", loras["lycoris_dora"], scale=0.5)
    torch.testing.assert_close(
        model(x) - base, changes["lokr"] + changes["lycoris_dora"], rtol=1e-5, atol=1e-6
    )
    set_lora_scale(model, "lokr", 0.0)
    torch.testing.assert_close(model(x) - base, changes["lycoris_dora"], rtol=1e-5, atol=1e-6)
    remove_lora(model, "lycoris_dora")
    assert torch.equal(model(x), base)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0])
def test_fusing_every_kind_matches_and_unfusing_restores_weights_and_biases(scale: float) -> None:
    x, model = torch.randn(2, 4, 4, 4), _model()
    before = _state(model)
    for name, weights in _every_kind(3).items():
        inject_lora(model, name, weights, scale=scale)
    injected = model(x)
    fused = fuse_loras(model)
    assert lora_names(model) == []
    torch.testing.assert_close(model(x), injected, rtol=1e-5, atol=1e-5)
    fused.unfuse()
    assert _same(model, before)


def test_a_dora_left_unfused_on_a_fused_layer_is_refused_before_anything_changes() -> None:
    model, loras = _model(), _every_kind(4)
    inject_lora(model, "lokr", loras["lokr"])
    inject_lora(model, "lycoris_dora", loras["lycoris_dora"])
    before = _state(model)
    with pytest.raises(ConfigError, match=r"DoRA .* would stay unfused"):
        fuse_loras(model, ["lokr"])
    assert _same(model, before) and sorted(lora_names(model)) == ["lokr", "lycoris_dora"]
    fused = fuse_loras(model, ["lycoris_dora", "lokr"])
    assert lora_names(model) == []
    fused.unfuse()


def test_a_peft_dora_at_scale_0_still_renormalises_as_peft_does() -> None:
    """peft's rule puts the scale inside the norm: at 0 the weight is m · W / ‖W‖, not W."""
    x, model = torch.randn(2, 12), fl.Chain(fl.Linear(12, 6))
    weights = {key.replace("Linear_2", "Linear"): t for key, t in _every_kind(5)["dora"].items()}
    inject_lora(model, "dora", weights, scale=0.0)
    layer = model.layer("LoraAdapter.Linear", fl.Linear)
    magnitude = weights["Linear.lora_magnitude_vector"]
    expected = torch.nn.functional.linear(
        x, magnitude * layer.weight / layer.weight.norm(dim=1, keepdim=True), layer.bias
    )
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (
            {"Linear_1.diff": torch.zeros(12, 128), "Linear_1.diff_b": torch.zeros(12)},
            CoverageError,
            "without a bias",
        ),
        ({"Linear_2.w_norm": torch.zeros(6)}, CoverageError, "does not go on a linear"),
        ({"LayerNorm.hada_w1_a": torch.zeros(12, 2)}, FormatError, "lacks hada_w1_b"),
        (
            {"Linear_2.diff": torch.zeros(6, 12), "Linear_2.lora_up.weight": torch.zeros(6, 2)},
            FormatError,
            "mixes",
        ),
        ({"Linear_2.diff": torch.zeros(6, 12), "Linear_2.dora_scale": torch.ones(6, 1)}, FormatError, "DoRA"),
        (
            {"Linear_2.lokr_w1": torch.zeros(2, 3), "Linear_2.lokr_w2": torch.zeros(3, 3)},
            CoverageError,
            r"\(6, 9\)",
        ),
        (
            {
                "Conv2d.lora_down.weight": torch.zeros(2, 4, 1, 1),
                "Conv2d.lora_mid.weight": torch.zeros(2, 2, 1, 1),
                "Conv2d.lora_up.weight": torch.zeros(8, 2, 1, 1),
            },
            CoverageError,
            "expected",
        ),
    ],
)
def test_updates_that_do_not_fit_are_refused_and_change_nothing(
    weights: dict[str, torch.Tensor], error: type[Exception], match: str
) -> None:
    model = _model()
    inject_lora(model, "first", _every_kind(6)["loha"])
    before = _state(model)
    with pytest.raises(error, match=match):
        inject_lora(model, "second", weights)
    assert _same(model, before) and lora_names(model) == ["first"]


def test_low_precision_models_get_updates_in_their_dtype_and_fuse_in_float32() -> None:
    model, x = _model().to(torch.bfloat16), torch.randn(2, 4, 4, 4, dtype=torch.bfloat16)
    before = _state(model)
    for name, weights in _every_kind(7).items():
        inject_lora(model, name, weights)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    injected = model(x).float()
    fused = fuse_loras(model)
    assert torch.allclose(model(x).float(), injected, rtol=0.05, atol=0.05)
    fused.unfuse()
    assert _same(model, before)


def test_a_dora_outside_an_adapter_says_where_it_belongs() -> None:
    layer = fl.Linear(8, 4)
    inner = fl.LinearLora.from_weights("a", torch.randn(2, 8), torch.randn(4, 2))
    dora = fl.Dora(inner, fl.LayerOp.of(layer), torch.ones(4, 1))
    with pytest.raises(fl.FluxionError, match="put it in a LoraAdapter"):
        dora.delta_weight()
