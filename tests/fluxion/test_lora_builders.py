"""LoRAs built from tensors: from_weights and from_dict compute what the tensors say."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import zoo.fluxion as fl

TOLERANCE = 1e-5


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def test_linear_lora_from_weights_computes_scale_up_down() -> None:
    torch.manual_seed(0)
    down, up, x = torch.randn(3, 8), torch.randn(5, 3), torch.randn(2, 8)
    lora = fl.LinearLora.from_weights("style", down, up, scale=0.5)
    assert (lora.in_features, lora.rank, lora.out_features) == (8, 3, 5)
    assert lora.down.weight.data_ptr() != down.data_ptr()  # copied, not shared
    assert _relative_error(lora(x), 0.5 * x @ down.T @ up.T) <= TOLERANCE


def test_conv2d_lora_from_weights_computes_scale_up_down_with_the_given_geometry() -> None:
    torch.manual_seed(0)
    down, up, x = torch.randn(2, 4, 3, 3), torch.randn(6, 2, 1, 1), torch.randn(1, 4, 9, 9)
    same = fl.Conv2dLora.from_weights("style", down, up)
    assert _relative_error(same(x), F.conv2d(F.conv2d(x, down, padding=1), up)) <= TOLERANCE
    strided = fl.Conv2dLora.from_weights("style", down, up, scale=2.0, stride=2, padding=0)
    expected = 2.0 * F.conv2d(F.conv2d(x, down, stride=2), up)
    assert _relative_error(strided(x), expected) <= TOLERANCE


def test_from_weights_takes_dtype_and_device_from_down() -> None:
    down, up = torch.randn(2, 4, dtype=torch.float16), torch.randn(3, 2)
    lora = fl.LinearLora.from_weights("a", down, up)
    assert lora.dtype == torch.float16 and lora.up.weight.dtype == torch.float16
    on_meta = fl.LinearLora.from_weights("a", down.to("meta"), up.to("meta"))
    assert on_meta.device.type == "meta"


@pytest.mark.parametrize(
    ("down", "up", "message"),
    [
        ((2, 4), (3, 3), r"down has rank 2.*up has rank 3.*swapped"),
        ((2, 4, 1, 1), (3, 2), r"not both 2-d"),
        ((4, 2), (2, 3), r"down has rank 4"),
    ],
)
def test_linear_from_weights_rejects_inconsistent_shapes(
    down: tuple[int, ...], up: tuple[int, ...], message: str
) -> None:
    with pytest.raises(fl.LoraWeightsError, match=message):
        fl.LinearLora.from_weights("a", torch.zeros(down), torch.zeros(up))


def test_conv_from_weights_rejects_non_square_kernels() -> None:
    with pytest.raises(ValueError, match="down kernel is 3×1"):
        fl.Conv2dLora.from_weights("a", torch.zeros(2, 4, 3, 1), torch.zeros(6, 2, 1, 1))


def test_load_weights_rejects_other_shapes() -> None:
    lora = fl.LinearLora("a", 8, 4, rank=2)
    with pytest.raises(fl.LoraWeightsError, match=r"down has shape \(3, 8\).*needs \(2, 8\).*from_weights"):
        lora.load_weights(torch.zeros(3, 8), torch.zeros(4, 3))


def test_from_dict_builds_one_lora_per_layer_path_and_they_inject() -> None:
    torch.manual_seed(0)
    model = fl.Chain(fl.Linear(8, 6), fl.Chain(fl.Conv2d(6, 6, 3, padding=1)))
    weights = {
        "Linear.down.weight": torch.randn(2, 8),
        "Linear.up.weight": torch.randn(6, 2),
        "Chain.Conv2d.down.weight": torch.randn(2, 6, 3, 3),
        "Chain.Conv2d.up.weight": torch.randn(6, 2, 1, 1),
    }
    loras = fl.Lora.from_dict("style", weights, scale=0.5)
    assert {path: type(lora).__name__ for path, lora in loras.items()} == {
        "Chain.Conv2d": "Conv2dLora",
        "Linear": "LinearLora",
    }
    linear = model.layer("Linear", fl.Linear)
    fl.LoraAdapter(linear, loras["Linear"]).inject()
    x = torch.randn(3, 8)
    expected = F.linear(
        x, linear.weight + 0.5 * weights["Linear.up.weight"] @ weights["Linear.down.weight"], linear.bias
    )
    assert _relative_error(model.layer("LoraAdapter", fl.LoraAdapter)(x), expected) <= TOLERANCE


def test_from_dict_with_other_key_names() -> None:
    weights = {"Linear.lora_down.weight": torch.zeros(2, 8), "Linear.lora_up.weight": torch.zeros(4, 2)}
    loras = fl.Lora.from_dict("a", weights, down_key="lora_down.weight", up_key="lora_up.weight")
    assert list(loras) == ["Linear"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["Linear.down.weight", "Linear.up.weight", "Linear.alpha"], r"'Linear.alpha' is neither.*down_key"),
        (["Linear.down.weight", "Other.up.weight"], r"without their down or up half: \['Linear', 'Other'\]"),
    ],
)
def test_from_dict_rejects_stray_and_unpaired_keys(keys: list[str], message: str) -> None:
    with pytest.raises(fl.LoraWeightsError, match=message):
        fl.Lora.from_dict("a", dict.fromkeys(keys, torch.zeros(2, 2)))
