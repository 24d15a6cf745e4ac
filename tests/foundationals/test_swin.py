"""Swin backbone: parity with transformers at other image sizes, windows, configs, sizes, structure."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from pytest_regressions.data_regression import DataRegressionFixture
from torch import nn

from converters._tracing import KeyMap, trace_key_map
from converters.swin.upstream import (
    derive_swin_config,
    example_images,
    run_ours,
    run_upstream,
    swin_model,
    upstream_swin_config,
)
from zoo.errors import ConfigError
from zoo.foundationals.swin import SwinConfig, SwinTransformer
from zoo.foundationals.swin.windows import WindowPlan, relative_position_index

LIMIT = 1e-5  # float32, relative to the reference's largest value
TOY = SwinConfig.toy()
# Other widths, ratios and norms than the toy's: a 4-wide window, no q/k/v bias, a 2× feed-forward.
VARIANT = dataclasses.replace(
    TOY, window_size=4, image_size=32, qkv_bias=False, mlp_ratio=2.0, layer_norm_eps=1e-6, num_channels=4
)
PARAMETERS = {
    "tiny": 27_519_354,
    "small": 48_837_258,
    "base": 86_743_224,
    "large": 194_995_476,
    "base_window12": 86_878_584,
    "large_window12": 195_198_516,
}


@functools.cache
def _reference(config: SwinConfig, seed: int = 0) -> tuple[dict[str, torch.Tensor], KeyMap]:
    """Seeded random weights of transformers' model, and the key map traced on meta (once per config)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        state = swin_model(upstream_swin_config(config)).state_dict()
    meta_images = example_images(config, "meta")
    with torch.device("meta"):
        upstream, ours = swin_model(upstream_swin_config(config)), SwinTransformer(config)
    key_map = trace_key_map(
        upstream, ours, lambda m: run_upstream(m, meta_images), lambda m: run_ours(m, meta_images)
    )
    return state, key_map


def _pair(config: SwinConfig) -> tuple[nn.Module, SwinTransformer]:
    """A fresh transformers model (it keeps the window and shift it last clamped to) and ours, same weights."""
    state, key_map = _reference(config)
    upstream = swin_model(upstream_swin_config(config))
    upstream.load_state_dict(state)
    ours = SwinTransformer(config, device="meta")
    ours.load_state_dict(
        {key: key_map.apply(state.__getitem__, key).clone() for key in key_map.target_keys()}, assign=True
    )
    return upstream, ours.eval()


def _errors(ours: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> list[float]:
    assert [t.shape for t in ours] == [t.shape for t in reference]
    return [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, reference, strict=True)]


# -- parity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "size"),
    [
        (TOY, (24, 24)),  # the training size: the last stage is one window, not shifted
        (TOY, (37, 29)),  # odd, not square: padded to whole patches and windows, odd merges padded
        (TOY, (48, 48)),  # twice the training size: every stage shifted
        (VARIANT, (45, 70)),
    ],
)
def test_parity_with_transformers_at_any_image_size(config: SwinConfig, size: tuple[int, int]) -> None:
    upstream, ours = _pair(config)
    images = example_images(config, size=size)
    with torch.no_grad():
        errors = _errors(run_ours(ours, images), run_upstream(upstream, images))
    print(f"{size}: relative errors (stages, last hidden state, pooled) {errors}")
    assert max(errors) <= LIMIT


def test_runs_in_bfloat16() -> None:
    upstream, ours = _pair(TOY)
    images = example_images(TOY)
    with torch.no_grad():
        reference = run_upstream(upstream, images)
        low = run_ours(ours.to(torch.bfloat16), images.to(torch.bfloat16))
    assert all(tensor.dtype == torch.bfloat16 for tensor in low)
    assert max(_errors(tuple(t.float() for t in low), reference)) < 0.05


def test_a_feature_map_smaller_than_the_window_is_refused() -> None:
    ours = SwinTransformer(TOY)
    with pytest.raises(ValueError, match=r"a 2x2 feature map is smaller than the 3x3 attention window"):
        ours(torch.zeros(1, 3, 16, 16))


def test_context_holds_nothing_after_a_forward_and_results_repeat() -> None:
    _, ours = _pair(TOY)
    images = example_images(TOY)
    with torch.no_grad():
        first, second, last = ours.encode(images), ours.encode(images), ours(images)
    assert ours.provider.contexts == {}
    assert all(torch.equal(a, b) for a, b in zip(first.stages, second.stages, strict=True))
    assert torch.equal(last, first.last_hidden_state)


# -- windows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "shift"), [(7, 10, 1), (9, 9, 1), (6, 11, 0)])
def test_partition_then_merge_gives_the_map_back(height: int, width: int, shift: int) -> None:
    plan = WindowPlan.for_feature_map(height, width, 3, shift)
    x = torch.randn(2, height, width, 5)
    windows = plan.partition(x)
    assert windows.shape == (2, plan.padded_height * plan.padded_width // 9, 9, 5)
    assert torch.equal(plan.merge(windows), x)


def test_windows_as_wide_as_the_map_are_not_shifted() -> None:
    assert WindowPlan.for_feature_map(7, 20, 7, 3).shift == 0
    assert WindowPlan.for_feature_map(8, 20, 7, 3).shift == 3


def test_shift_mask_and_position_index_equal_transformers() -> None:
    from transformers import SwinConfig as UpstreamConfig
    from transformers.models.swin.modeling_swin import SwinLayer, SwinRelativePositionBias

    layer = SwinLayer(
        UpstreamConfig(window_size=4), dim=8, input_resolution=(8, 12), num_heads=2, shift_size=2
    )
    expected = layer.get_attn_mask(8, 12, dtype=torch.float32, device=torch.device("cpu"))
    mask = WindowPlan(8, 12, 4, 2).shift_mask(torch.device("cpu"), torch.float32)
    assert expected is not None and mask is not None and torch.equal(mask, expected)
    index = SwinRelativePositionBias(2, (5, 5)).relative_position_index.view(25, 25)
    assert torch.equal(relative_position_index(5), index)


# -- configs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*PARAMETERS, "toy"])
def test_configs_round_trip_through_transformers(name: str) -> None:
    config = getattr(SwinConfig, name)()
    assert derive_swin_config(upstream_swin_config(config)) == config


def test_a_hub_config_json_derives_swin_t() -> None:
    hub = {  # the fields of microsoft/swin-tiny-patch4-window7-224's config.json that matter
        "architectures": ["SwinForImageClassification"],
        "model_type": "swin",
        "depths": [2, 2, 6, 2],
        "embed_dim": 96,
        "num_heads": [3, 6, 12, 24],
        "window_size": 7,
        "image_size": 224,
        "patch_size": 4,
        "drop_path_rate": 0.1,
        "encoder_stride": 32,
        "id2label": {"0": "tench"},
    }
    assert derive_swin_config(hub) == SwinConfig.tiny()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_type", "swinv2"),
        ("use_absolute_embeddings", True),
        ("hidden_act", "relu"),
        ("patch_size", [4, 2]),
        ("num_heads", [3, 5, 12, 24]),
    ],
)
def test_unsupported_upstream_configs_are_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field if field != "num_heads" else "not a multiple of 5 heads"):
        derive_swin_config({field: value})


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_release_parameter_counts(name: str) -> None:
    # The same counts as transformers' SwinModel (checked for every declared conversion by
    # tests/converters/test_every_conversion.py); timm's and the original's add their 1000-class head.
    model = SwinTransformer(getattr(SwinConfig, name)(), device="meta")
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]


# -- structure --------------------------------------------------------------------------------------


def test_builds_on_meta_with_device_and_dtype() -> None:
    model = SwinTransformer(SwinConfig.tiny(), device="meta", dtype=torch.float16)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.float16)}


def test_stage_features_have_backbone_strides() -> None:
    output = SwinTransformer(SwinConfig.tiny(), device="meta").encode(
        torch.zeros(1, 3, 224, 224, device="meta")
    )
    assert [tuple(f.shape) for f in output.stages] == [
        (1, 96, 56, 56),
        (1, 192, 28, 28),
        (1, 384, 14, 14),
        (1, 768, 7, 7),
    ]
    assert output.last_hidden_state.shape == (1, 49, 768) and output.pooled.shape == (1, 768)


def test_key_map_regression(data_regression: DataRegressionFixture) -> None:
    """The toy's key map: a renamed class or a reordered chain shows up here."""
    _, key_map = _reference(TOY)
    assert key_map.coverage is not None and key_map.coverage.override_entries == 0
    pairs = sorted((entry.sources[0], entry.targets[0]) for entry in key_map.entries)
    data_regression.check({"pairs": [list(pair) for pair in pairs]}, basename="swin_toy_key_map")
