"""SD 1.5 and SDXL text conditioning: parity with transformers / diffusers' SDXL prompt encoding."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import pytest
import torch
from torch import nn

from converters._tracing import KeyMap, trace_key_map
from converters.stable_diffusion.clip_text import (
    SDXL_TEXT_OVERRIDES,
    derive_clip_text_config,
    derive_sdxl_text_encoder_config,
    example_input_ids,
    normalize_clip_keys,
    sdxl_example_inputs,
    upstream_clip_text_config,
    upstream_clip_text_model,
    upstream_sdxl_text_encoders,
)
from zoo.errors import ConfigError
from zoo.foundationals.clip.text_encoder import CLIPTextEncoder, CLIPTextEncoderConfig
from zoo.foundationals.latent_diffusion.text_encoders import (
    SD15TextEncoder,
    SDXLTextEncoder,
    SDXLTextEncoderConfig,
)

SDXL_PARAMETERS = 123_060_480 + 694_659_840
SDXL_TENSORS = 196 + 517


@pytest.fixture(autouse=True)
def _restore_rng() -> object:
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


def _key_map(upstream: nn.Module, ours: nn.Module, inputs: tuple[torch.Tensor, ...]) -> KeyMap:
    meta_inputs = tuple(torch.zeros_like(tensor, device="meta") for tensor in inputs)
    return trace_key_map(
        upstream, ours, lambda m: m(*meta_inputs), lambda m: m(*meta_inputs), SDXL_TEXT_OVERRIDES
    )


def _relative_error(ours: torch.Tensor, reference: torch.Tensor, name: str) -> float:
    absolute = (ours - reference).abs().max().item()
    relative = absolute / reference.abs().max().item()
    print(f"{name}: max abs error {absolute:.3e}, relative {relative:.3e}")
    return relative


def _converted_sdxl(config: SDXLTextEncoderConfig) -> tuple[nn.Module, SDXLTextEncoder]:
    torch.manual_seed(0)
    upstream = upstream_sdxl_text_encoders(config)
    inputs = sdxl_example_inputs(config)
    key_map = _key_map(
        upstream_sdxl_text_encoders(config, "meta"), SDXLTextEncoder(config, device="meta"), inputs
    )
    ours = SDXLTextEncoder(config)
    state = upstream.state_dict()
    ours.load_state_dict(
        {key: key_map.apply(state.__getitem__, key) for key in key_map.target_keys()}, strict=True
    )
    return upstream, ours.eval()


# -- SD 1.5 ----------------------------------------------------------------------------------------


def test_sd15_parity_with_transformers_last_hidden_state() -> None:
    config = CLIPTextEncoderConfig.tiny()
    torch.manual_seed(0)
    upstream = upstream_clip_text_model(config)
    input_ids = example_input_ids(config)
    key_map = _key_map(
        upstream_clip_text_model(config, "meta"), SD15TextEncoder(config, device="meta"), (input_ids,)
    )
    ours = SD15TextEncoder(config)
    state = upstream.state_dict()
    ours.load_state_dict(
        {key: key_map.apply(state.__getitem__, key) for key in key_map.target_keys()}, strict=True
    )
    with torch.no_grad():
        # diffusers' StableDiffusionPipeline.encode_prompt with clip_skip=None: `text_encoder(ids)[0]`.
        reference = upstream(input_ids)[0]
        assert _relative_error(ours.eval()(input_ids), reference, "SD 1.5 context") <= 1e-5


def test_sd15_and_sdxl_share_the_clip_l_tower() -> None:
    """One CLIP-L module (and state-dict layout) serves both families."""
    sd15 = SD15TextEncoder(CLIPTextEncoderConfig.clip_l(), device="meta")
    sdxl = SDXLTextEncoder(SDXLTextEncoderConfig.sdxl(), device="meta")
    prefix = "TextEncoders.CLIPTextEncoderL."
    sdxl_clip_l = [key.removeprefix(prefix) for key in sdxl.state_dict() if key.startswith(prefix)]
    assert (
        sdxl_clip_l
        == list(sd15.state_dict())
        == list(CLIPTextEncoder(sd15.config, device="meta").state_dict())
    )


def test_sd15_full_size_parameter_count() -> None:
    config = derive_clip_text_config(upstream_clip_text_config(CLIPTextEncoderConfig.clip_l()))
    sd15 = SD15TextEncoder(config, device="meta")
    assert sum(parameter.numel() for parameter in sd15.parameters()) == 123_060_480


# -- SDXL ------------------------------------------------------------------------------------------


def test_sdxl_parity_with_diffusers_prompt_encoding() -> None:
    config = SDXLTextEncoderConfig.tiny()
    upstream, ours = _converted_sdxl(config)
    input_ids, input_ids_2 = sdxl_example_inputs(config)
    assert not torch.equal(input_ids, input_ids_2)  # the tokenizers pad differently
    with torch.no_grad():
        reference_context, reference_pooled = upstream(input_ids, input_ids_2)
        context, pooled = ours(input_ids, input_ids_2)
    assert context.shape == (2, 77, config.context_dim) and pooled.shape == (2, config.pooled_dim)
    assert _relative_error(context, reference_context, "SDXL context") <= 1e-5
    assert _relative_error(pooled, reference_pooled, "SDXL pooled text embedding") <= 1e-5


def test_sdxl_second_ids_default_to_the_first() -> None:
    config = SDXLTextEncoderConfig.tiny()
    upstream, ours = _converted_sdxl(config)
    input_ids, _ = sdxl_example_inputs(config)
    with torch.no_grad():
        reference_context, reference_pooled = upstream(input_ids)
        context, pooled = ours(input_ids)
    assert _relative_error(context, reference_context, "SDXL context") <= 1e-5
    assert _relative_error(pooled, reference_pooled, "SDXL pooled text embedding") <= 1e-5


def test_sdxl_full_size_parameter_count_equals_upstream() -> None:
    config = SDXLTextEncoderConfig.sdxl()
    ours = SDXLTextEncoder(config, device="meta")
    upstream = upstream_sdxl_text_encoders(config, "meta")
    count = sum(parameter.numel() for parameter in ours.parameters())
    assert count == sum(parameter.numel() for parameter in upstream.parameters()) == SDXL_PARAMETERS
    assert len(ours.state_dict()) == len(upstream.state_dict()) == SDXL_TENSORS


def test_sdxl_full_size_trace_covers_everything() -> None:
    config = SDXLTextEncoderConfig.sdxl()
    start = time.perf_counter()
    upstream = upstream_sdxl_text_encoders(config, "meta")
    ours = SDXLTextEncoder(config, device="meta")
    built = time.perf_counter()
    key_map = _key_map(upstream, ours, sdxl_example_inputs(config, "meta"))
    print(
        f"SDXL text encoders on meta: built in {built - start:.2f} s, traced in {time.perf_counter() - built:.2f} s"
    )
    coverage = key_map.coverage
    assert coverage is not None
    print(coverage.summary())
    assert coverage.mapped_sources == coverage.source_tensors == SDXL_TENSORS
    assert coverage.produced_targets == coverage.target_tensors == SDXL_TENSORS
    assert coverage.transforms == {"identity": SDXL_TENSORS}
    towers = {(entry.sources[0].split(".")[0], entry.targets[0].split(".")[1]) for entry in key_map.entries}
    assert towers == {("text_encoder", "CLIPTextEncoderL"), ("text_encoder_2", "CLIPTextEncoderG")}


def test_sdxl_files_in_hub_layout_name_the_reference_tensors() -> None:
    """Each Hub file (`text_model.` prefixed, old `position_ids`) maps onto the reference's keys."""
    config = SDXLTextEncoderConfig.tiny()
    upstream = upstream_sdxl_text_encoders(config, "meta")
    first = [f"text_model.{key}" for key in upstream.text_encoder.state_dict()] + [
        "text_model.embeddings.position_ids"
    ]
    second = [*upstream.text_encoder_2.state_dict(), "text_model.embeddings.position_ids"]
    layouts = (
        normalize_clip_keys(first, with_projection=False, model_prefix="text_encoder."),
        normalize_clip_keys(second, with_projection=True, model_prefix="text_encoder_2."),
    )
    model_keys = sorted(key for layout in layouts for key in layout.model_keys.values())
    assert model_keys == sorted(upstream.state_dict())
    assert all(len(layout.ignored) == 1 for layout in layouts)


def test_state_dict_keys_are_stable() -> None:
    config = SDXLTextEncoderConfig.tiny()
    first, second = SDXLTextEncoder(config, device="meta"), SDXLTextEncoder(config, device="meta")
    assert list(first.state_dict()) == list(second.state_dict())
    assert list(first.state_dict())[-1] == "TextEncoders.CLIPTextEncoderG.Pooling.TextProjection.weight"
    sd15 = SD15TextEncoder(CLIPTextEncoderConfig.tiny(), device="meta")
    assert list(sd15.state_dict()) == list(
        SD15TextEncoder(CLIPTextEncoderConfig.tiny(), device="meta").state_dict()
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_in_half_precision(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    config = SDXLTextEncoderConfig.tiny()
    with torch.no_grad():
        context, pooled = SDXLTextEncoder(config, dtype=dtype).eval()(*sdxl_example_inputs(config))
        last = SD15TextEncoder(config.text_encoder, dtype=dtype).eval()(
            example_input_ids(config.text_encoder)
        )
    for tensor in (context, pooled, last):
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()


# -- configs ---------------------------------------------------------------------------------------


def _hub_configs(config: SDXLTextEncoderConfig) -> tuple[dict[str, object], dict[str, object]]:
    return upstream_clip_text_config(config.text_encoder), upstream_clip_text_config(config.text_encoder_2)


@pytest.mark.parametrize("config", [SDXLTextEncoderConfig.sdxl(), SDXLTextEncoderConfig.tiny()])
def test_derive_sdxl_config(config: SDXLTextEncoderConfig) -> None:
    assert derive_sdxl_text_encoder_config(*_hub_configs(config)) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architectures": ["CLIPTextModel"]}, "CLIPTextModelWithProjection"),
        ({"max_position_embeddings": 64}, "max_position_embeddings differs"),
        ({"hidden_act": "silu"}, "hidden_act='silu'"),
    ],
)
def test_derive_sdxl_config_names_unsupported_fields(change: Mapping[str, object], message: str) -> None:
    first, second = _hub_configs(SDXLTextEncoderConfig.sdxl())
    with pytest.raises(ConfigError, match=message):
        derive_sdxl_text_encoder_config(first, {**second, **change})


def test_sdxl_config_needs_a_projection() -> None:
    with pytest.raises(ValueError, match="needs a projection"):
        SDXLTextEncoderConfig(CLIPTextEncoderConfig.tiny(), CLIPTextEncoderConfig.tiny())
    shorter = dataclasses.replace(CLIPTextEncoderConfig.tiny_with_projection(), max_position_embeddings=64)
    with pytest.raises(ValueError, match="same sequence length"):
        SDXLTextEncoderConfig(CLIPTextEncoderConfig.tiny(), shorter)
