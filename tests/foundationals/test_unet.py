"""The SD 1.5 / SDXL UNet: config derivation, parity with diffusers, full-size size and trace, key map."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from pytest_regressions.data_regression import DataRegressionFixture

from converters._tracing import KeyMap, trace_key_map
from converters.stable_diffusion.unet import (
    UNetExampleInputs,
    derive_unet_config,
    diffusers_unet_config,
    unet_example_inputs,
)
from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig

# `unet/config.json` of stabilityai/stable-diffusion-xl-base-1.0 (architecture fields, see MODELS.md).
SDXL_UPSTREAM: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.19.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}

# `unet/config.json` of stable-diffusion-v1-5/stable-diffusion-v1-5 (an older diffusers wrote it: fewer fields).
SD15_UPSTREAM: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

FULL_SIZE = {"sdxl": (UNetConfig.sdxl, SDXL_UPSTREAM), "sd15": (UNetConfig.sd15, SD15_UPSTREAM)}
PARAMETERS = {"sdxl": 2_567_463_684, "sd15": 859_520_964}  # MODELS.md

TINY = {
    "tiny_sdxl": UNetConfig.tiny_sdxl(),
    "tiny_sd15": UNetConfig.tiny_sd15(),
    "tiny_sdxl_lcm": dataclasses.replace(UNetConfig.tiny_sdxl(), time_cond_proj_dim=16),
}


@pytest.fixture(autouse=True)
def _restore_rng() -> Iterator[None]:
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def relative_error(reference: torch.Tensor, ours: torch.Tensor) -> float:
    return ((reference - ours).abs().max() / reference.abs().max()).item()


def upstream_on_meta(config: UNetConfig) -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**diffusers_unet_config(config))


def trace_both(config: UNetConfig) -> KeyMap:
    inputs = unet_example_inputs(config, "meta")
    ours = UNet(config, device="meta")
    return trace_key_map(upstream_on_meta(config), ours, inputs.run_upstream, inputs.run_target)


def converted_pair(config: UNetConfig, seed: int = 0) -> tuple[UNet2DConditionModel, UNet]:
    """A seeded random diffusers UNet and ours with its weights, converted through the traced key map."""
    torch.manual_seed(seed)
    upstream = UNet2DConditionModel(**diffusers_unet_config(config)).eval()
    source = upstream.state_dict()
    key_map = trace_both(config)
    ours = UNet(config).eval()
    ours.load_state_dict(
        {key: key_map.apply(source.__getitem__, key) for key in key_map.target_keys()}, strict=True
    )
    return upstream, ours


# -- config derivation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_configs_derive_from_upstream(name: str) -> None:
    make, upstream = FULL_SIZE[name]
    assert derive_unet_config(upstream) == make()


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_round_trips_through_diffusers(name: str) -> None:
    assert derive_unet_config(diffusers_unet_config(TINY[name])) == TINY[name]


def test_every_diffusers_field_is_accounted_for_with_diffusers_defaults() -> None:
    # Every parameter of diffusers' constructor at its default: none is unknown, and omitting them
    # all must mean the same architecture (so our table of defaults agrees with diffusers').
    signature = inspect.signature(UNet2DConditionModel.__init__)
    defaults = {name: p.default for name, p in signature.parameters.items() if name != "self"}
    assert derive_unet_config(defaults) == derive_unet_config({})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("upcast_attention", True),
        ("resnet_time_scale_shift", "scale_shift"),
        ("addition_embed_type", "text"),
        ("class_embed_type", "projection"),
        ("attention_type", "gated"),
        ("mid_block_type", "UNetMidBlock2DSimpleCrossAttn"),
        ("time_embedding_type", "fourier"),
        ("layers_per_block", [1, 2, 2, 2]),
        ("only_cross_attention", [True, False, False, False]),
        (
            "down_block_types",
            ["AttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        ),
        ("up_block_types", ["UpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
        ("brand_new_switch", 1),
    ],
)
def test_unsupported_upstream_configs_name_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as error:
        derive_unet_config({**SD15_UPSTREAM, field: value})
    assert field in str(error.value) and repr(value) in str(error.value)


def test_inconsistent_upstream_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_heads"):
        derive_unet_config({**SD15_UPSTREAM, "attention_head_dim": 7})


def test_upcast_attention_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="upcast_attention"):
        UNetConfig(upcast_attention=True)


# -- parity with diffusers --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_parity_with_diffusers(name: str) -> None:
    upstream, ours = converted_pair(TINY[name])
    inputs = unet_example_inputs(TINY[name], seed=1)
    with torch.no_grad():
        reference, prediction = inputs.run_upstream(upstream), inputs.run_target(ours)
    error = relative_error(reference, prediction)
    print(f"{name}: max |Δ| {(reference - prediction).abs().max().item():.3g}, relative {error:.3g}")
    assert prediction.shape == reference.shape
    assert error <= 1e-5


@pytest.mark.parametrize("name", ["tiny_sdxl", "tiny_sd15"])
def test_parity_with_odd_latent_size_and_per_sample_timesteps(name: str) -> None:
    # 15 is not divisible by 2: upsampling must reach the skips' sizes as upstream's does.
    upstream, ours = converted_pair(TINY[name])
    inputs = dataclasses.replace(
        unet_example_inputs(TINY[name], batch_size=2, latent_size=15, seed=2),
        timestep=torch.tensor([10, 700]),
    )
    with torch.no_grad():
        reference, prediction = inputs.run_upstream(upstream), inputs.run_target(ours)
    assert prediction.shape == (2, 4, 15, 15)
    assert relative_error(reference, prediction) <= 1e-5


def test_context_is_set_again_for_every_forward() -> None:
    config = TINY["tiny_sdxl"]
    torch.manual_seed(0)
    unet = UNet(config).eval()
    inputs = unet_example_inputs(config)
    with torch.no_grad():
        first, second = inputs.run_target(unet), inputs.run_target(unet)
        assert torch.equal(first, second)
        unet.set_timestep(999)
        unet.set_clip_text_embedding(inputs.text_embedding)
        with pytest.raises(KeyError, match="set_pooled_text_embedding"):
            unet(inputs.latents)


def test_timestep_as_number_or_tensor_gives_the_same_result() -> None:
    config = TINY["tiny_sd15"]
    torch.manual_seed(0)
    unet = UNet(config).eval()
    inputs = unet_example_inputs(config, batch_size=2)
    with torch.no_grad():
        as_number = unet.denoise(inputs.latents, 999, inputs.text_embedding)
        as_tensor = unet.denoise(inputs.latents, torch.tensor(999), inputs.text_embedding)
        per_sample = unet.denoise(inputs.latents, torch.tensor([999, 999]), inputs.text_embedding)
    assert torch.equal(as_number, as_tensor) and torch.equal(as_number, per_sample)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["tiny_sdxl", "tiny_sd15"])
def test_runs_in_half_precision_on_cpu(name: str, dtype: torch.dtype) -> None:
    config = TINY[name]
    torch.manual_seed(0)
    unet = UNet(config, dtype=dtype).eval()
    inputs = unet_example_inputs(config, dtype=dtype)
    with torch.no_grad():
        prediction = inputs.run_target(unet)
    assert prediction.dtype == dtype
    assert prediction.shape == inputs.latents.shape
    assert torch.isfinite(prediction).all()


# -- structure --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_state_dict_keys_are_stable(name: str) -> None:
    first = list(UNet(TINY[name], device="meta").state_dict())
    second = list(UNet(TINY[name], device="meta").state_dict())
    assert first == second


def test_builds_on_meta_with_device_and_dtype() -> None:
    unet = UNet(UNetConfig.tiny_sdxl(), device="meta", dtype=torch.float16)
    assert {p.device.type for p in unet.parameters()} == {"meta"}
    assert {p.dtype for p in unet.parameters()} == {torch.float16}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_parameter_count(name: str) -> None:
    config = FULL_SIZE[name][0]()
    ours = sum(p.numel() for p in UNet(config, device="meta").parameters())
    upstream = sum(p.numel() for p in upstream_on_meta(config).parameters())
    assert ours == upstream == PARAMETERS[name]


# -- full-size trace and key map --------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_size_key_maps() -> Callable[[str], tuple[KeyMap, float]]:
    cache: dict[str, tuple[KeyMap, float]] = {}

    def get(name: str) -> tuple[KeyMap, float]:
        if name not in cache:
            start = time.perf_counter()
            key_map = trace_both(FULL_SIZE[name][0]())
            cache[name] = key_map, time.perf_counter() - start
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_trace_covers_everything(
    name: str, full_size_key_maps: Callable[[str], tuple[KeyMap, float]]
) -> None:
    key_map, seconds = full_size_key_maps(name)
    coverage = key_map.coverage
    assert coverage is not None
    print(f"{name}: built and traced both full-size UNets on meta in {seconds:.2f} s\n{coverage.summary()}")
    assert coverage.mapped_sources == coverage.source_tensors
    assert coverage.produced_targets == coverage.target_tensors
    assert not coverage.ignored_source and not coverage.ignored_target and coverage.override_entries == 0


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_key_map_regression(
    name: str,
    full_size_key_maps: Callable[[str], tuple[KeyMap, float]],
    data_regression: DataRegressionFixture,
) -> None:
    key_map, _ = full_size_key_maps(name)
    assert all(
        len(e.sources) == len(e.targets) == 1 and e.transform.kind == "identity" for e in key_map.entries
    )
    pairs = sorted((entry.sources[0], entry.targets[0]) for entry in key_map.entries)
    data_regression.check({"pairs": [list(pair) for pair in pairs]}, basename=f"unet_key_map_{name}")


def test_example_inputs_have_the_shapes_of_the_config() -> None:
    inputs: UNetExampleInputs = unet_example_inputs(UNetConfig.sdxl(), "meta", batch_size=2)
    assert inputs.latents.shape == (2, 4, 16, 16)
    assert inputs.text_embedding.shape == (2, 77, 2048)
    assert inputs.pooled_text_embedding is not None and inputs.pooled_text_embedding.shape == (2, 1280)
    assert inputs.time_ids is not None and inputs.time_ids.shape == (2, 6)
    assert unet_example_inputs(UNetConfig.sd15(), "meta").pooled_text_embedding is None
