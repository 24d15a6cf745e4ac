"""CLIP text tower: parity with transformers, sizes, full-size traces, key layouts, configs."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn

from converters._tracing import KeyMap, trace_key_map
from converters.stable_diffusion.clip_text import (
    CLIP_TEXT_OVERRIDES,
    POSITION_IDS_REASON,
    derive_clip_text_config,
    example_input_ids,
    normalize_clip_keys,
    upstream_clip_text_config,
    upstream_clip_text_model,
)
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.text_encoder import CLIPTextEncoder, CLIPTextEncoderConfig

# The fields of the Hub's config.json files that matter (SD 1.5 `text_encoder`, SDXL `text_encoder_2`).
SD15_TEXT_ENCODER_CONFIG = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}
SDXL_TEXT_ENCODER_2_CONFIG = {
    **SD15_TEXT_ENCODER_CONFIG,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "torch_dtype": "float16",
}
TINY_CONFIGS = {
    "tiny": CLIPTextEncoderConfig.tiny(),
    "tiny_with_projection": CLIPTextEncoderConfig.tiny_with_projection(),
    "tiny_first_eos": dataclasses.replace(CLIPTextEncoderConfig.tiny(), eos_token_id=7),
}
FULL_SIZE = {
    "clip_l": (CLIPTextEncoderConfig.clip_l(), 123_060_480, 196),
    "open_clip_big_g": (CLIPTextEncoderConfig.open_clip_big_g(), 694_659_840, 517),
}


def _convert(upstream: nn.Module, ours: nn.Module, inputs: tuple[torch.Tensor, ...]) -> KeyMap:
    """Trace both models on `meta` copies of the inputs and return the key map."""
    meta_inputs = tuple(torch.zeros_like(tensor, device="meta") for tensor in inputs)
    return trace_key_map(
        upstream, ours, lambda m: m(*meta_inputs), lambda m: m(*meta_inputs), CLIP_TEXT_OVERRIDES
    )


def _load(ours: nn.Module, key_map: KeyMap, get: Callable[[str], torch.Tensor]) -> None:
    ours.load_state_dict({key: key_map.apply(get, key) for key in key_map.target_keys()}, strict=True)


def _relative_error(ours: torch.Tensor, reference: torch.Tensor, name: str) -> float:
    absolute = (ours - reference).abs().max().item()
    relative = absolute / reference.abs().max().item()
    print(f"{name}: max abs error {absolute:.3e}, relative {relative:.3e}")
    return relative


def _converted_pair(config: CLIPTextEncoderConfig) -> tuple[nn.Module, CLIPTextEncoder, torch.Tensor]:
    torch.manual_seed(0)
    upstream = upstream_clip_text_model(config)
    ours = CLIPTextEncoder(config)
    input_ids = example_input_ids(config)
    key_map = _convert(
        upstream_clip_text_model(config, "meta"), CLIPTextEncoder(config, device="meta"), (input_ids,)
    )
    _load(ours, key_map, upstream.state_dict().__getitem__)
    return upstream, ours.eval(), input_ids


@pytest.fixture(autouse=True)
def _restore_rng() -> object:
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_parity_with_transformers(name: str) -> None:
    config = TINY_CONFIGS[name]
    upstream, ours, input_ids = _converted_pair(config)
    with torch.no_grad():
        reference = upstream(input_ids, output_hidden_states=True)
        output = ours.encode(input_ids)
        last = ours(input_ids)
    with_projection = config.projection_dim is not None
    hidden_states = reference.hidden_states
    reference_last = reference.last_hidden_state
    reference_pooled = reference.text_embeds if with_projection else reference.pooler_output
    assert torch.equal(last, output.last_hidden_state)
    assert _relative_error(output.last_hidden_state, reference_last, "last hidden state") <= 1e-5
    assert _relative_error(output.penultimate_hidden_state, hidden_states[-2], "penultimate") <= 1e-5
    assert _relative_error(output.pooled, reference_pooled, "pooled") <= 1e-5


def test_pooling_follows_the_eos_rule() -> None:
    """First end token when `eos_token_id` is set (padding repeats it), else the highest id."""
    config = TINY_CONFIGS["tiny_first_eos"]
    encoder = CLIPTextEncoder(config).eval()
    input_ids = torch.tensor([[998, 5, 7, 999, 7, *[7] * 72], [998, 999, 5, 6, 7, *[0] * 72]])
    with torch.no_grad():
        output = encoder.encode(input_ids)
        legacy = CLIPTextEncoder(dataclasses.replace(config, eos_token_id=None))
        legacy.load_state_dict(encoder.state_dict())
        legacy_output = legacy.eval().encode(input_ids)
    assert torch.equal(output.pooled, output.last_hidden_state[[0, 1], [2, 4]])
    assert torch.equal(legacy_output.pooled, legacy_output.last_hidden_state[[0, 1], [3, 1]])


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_parameter_count_equals_upstream(name: str) -> None:
    config, expected, tensors = FULL_SIZE[name]
    ours = CLIPTextEncoder(config, device="meta")
    upstream = upstream_clip_text_model(config, "meta")
    count = sum(parameter.numel() for parameter in ours.parameters())
    assert count == sum(parameter.numel() for parameter in upstream.parameters()) == expected
    assert len(ours.state_dict()) == len(upstream.state_dict()) == tensors


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_key_map(name: str, data_regression) -> None:
    config, _, tensors = FULL_SIZE[name]
    start = time.perf_counter()
    upstream = upstream_clip_text_model(config, "meta")
    ours = CLIPTextEncoder(config, device="meta")
    built = time.perf_counter()
    key_map = _convert(upstream, ours, (example_input_ids(config, "meta"),))
    print(f"{name} on meta: built in {built - start:.2f} s, traced in {time.perf_counter() - built:.2f} s")
    coverage = key_map.coverage
    assert coverage is not None
    print(coverage.summary())
    assert coverage.mapped_sources == coverage.source_tensors == tensors
    assert coverage.produced_targets == coverage.target_tensors == tensors
    assert not coverage.ignored_source and not coverage.ignored_target and not coverage.unused_overrides
    assert coverage.transforms == {"identity": tensors}
    pairs = sorted([entry.sources[0], entry.targets[0]] for entry in key_map.entries)
    data_regression.check({"pairs": pairs})


def test_state_dict_keys_are_stable() -> None:
    for config in (CLIPTextEncoderConfig.tiny(), CLIPTextEncoderConfig.tiny_with_projection()):
        first, second = CLIPTextEncoder(config, device="meta"), CLIPTextEncoder(config, device="meta")
        assert list(first.state_dict()) == list(second.state_dict())
    keys = list(CLIPTextEncoder(CLIPTextEncoderConfig.tiny_with_projection(), device="meta").state_dict())
    assert keys[:2] == ["TokenEncoder.TokenEmbedding.weight", "TokenEncoder.PositionEmbedding.weight"]
    assert "Transformer.TransformerLayer_3.FeedForwardBlock.Linear_2.bias" in keys
    assert keys[-3:] == ["LayerNorm.weight", "LayerNorm.bias", "Pooling.TextProjection.weight"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_in_half_precision(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    config = CLIPTextEncoderConfig.tiny_with_projection()
    encoder = CLIPTextEncoder(config, dtype=dtype).eval()
    with torch.no_grad():
        output = encoder.encode(example_input_ids(config))
    for tensor in output:
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()


def test_sequence_longer_than_the_positions_is_refused() -> None:
    encoder = CLIPTextEncoder(CLIPTextEncoderConfig.tiny())
    with pytest.raises(ValueError, match="exceeds the 77 learned positions"):
        encoder(torch.zeros(1, 78, dtype=torch.long))


# -- configs ---------------------------------------------------------------------------------------


def test_derive_config_from_the_hub_configs() -> None:
    assert derive_clip_text_config(SD15_TEXT_ENCODER_CONFIG) == CLIPTextEncoderConfig.clip_l()
    assert derive_clip_text_config(SDXL_TEXT_ENCODER_2_CONFIG) == CLIPTextEncoderConfig.open_clip_big_g()
    with_eos = {**SD15_TEXT_ENCODER_CONFIG, "eos_token_id": 49407}
    assert derive_clip_text_config(with_eos).eos_token_id == 49407


@pytest.mark.parametrize("config", [*TINY_CONFIGS.values(), *(c for c, _, _ in FULL_SIZE.values())])
def test_upstream_config_round_trips(config: CLIPTextEncoderConfig) -> None:
    assert derive_clip_text_config(upstream_clip_text_config(config)) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "relu"}, "hidden_act='relu'"),
        ({"model_type": "clip"}, "model_type='clip'"),
        ({"hidden_size": 770}, "hidden_size=770"),
        ({"architectures": ["CLIPVisionModel"]}, "architectures="),
    ],
)
def test_derive_config_names_unsupported_fields(change: Mapping[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        derive_clip_text_config({**SD15_TEXT_ENCODER_CONFIG, **change})


def test_derive_config_with_explicit_projection_ignores_architectures() -> None:
    config = {key: value for key, value in SDXL_TEXT_ENCODER_2_CONFIG.items() if key != "architectures"}
    assert derive_clip_text_config(config, with_projection=True).projection_dim == 1280
    assert derive_clip_text_config(config, with_projection=False).projection_dim is None


# -- file key layouts ------------------------------------------------------------------------------


def _hub_layout(upstream: nn.Module, prefixed: bool, position_ids: bool) -> dict[str, torch.Tensor]:
    """A file as upstream repositories hold it: `text_model.` prefixed or not, with old buffers."""
    state = upstream.state_dict()
    files = {
        (
            f"text_model.{key}"
            if prefixed and not key.startswith(("text_model.", "text_projection"))
            else key
        ): value
        for key, value in state.items()
    }
    if position_ids:
        length = next(value for key, value in state.items() if "position_embedding" in key).shape[0]
        files["text_model.embeddings.position_ids" if prefixed else "embeddings.position_ids"] = torch.arange(
            length
        )[None]
    return files


@pytest.mark.parametrize("prefixed", [True, False], ids=["hub_layout", "transformers5_layout"])
@pytest.mark.parametrize("name", ["tiny", "tiny_with_projection"])
def test_both_file_layouts_convert(name: str, prefixed: bool) -> None:
    config = TINY_CONFIGS[name]
    with_projection = config.projection_dim is not None
    torch.manual_seed(0)
    upstream = upstream_clip_text_model(config)
    file = _hub_layout(upstream, prefixed, position_ids=True)
    layout = normalize_clip_keys(file, with_projection=with_projection)
    assert sorted(layout.model_keys.values()) == sorted(upstream.state_dict())
    assert list(layout.ignored.values()) == [POSITION_IDS_REASON]
    ours = CLIPTextEncoder(config)
    input_ids = example_input_ids(config)
    key_map = _convert(
        upstream_clip_text_model(config, "meta"), CLIPTextEncoder(config, device="meta"), (input_ids,)
    )
    _load(ours, key_map, layout.getter(file.__getitem__))
    with torch.no_grad():
        reference = upstream(input_ids).last_hidden_state
        assert _relative_error(ours.eval()(input_ids), reference, "last hidden state") <= 1e-5


def test_key_layouts_map_onto_the_upstream_names() -> None:
    plain = normalize_clip_keys(
        ["text_model.embeddings.position_ids", "text_model.final_layer_norm.weight"], with_projection=False
    )
    assert plain.model_keys == {"text_model.final_layer_norm.weight": "final_layer_norm.weight"}
    assert plain.ignored == {"text_model.embeddings.position_ids": POSITION_IDS_REASON}
    projected = normalize_clip_keys(
        ["final_layer_norm.weight", "text_projection.weight"],
        with_projection=True,
        model_prefix="text_encoder_2.",
    )
    assert projected.model_keys == {
        "final_layer_norm.weight": "text_encoder_2.text_model.final_layer_norm.weight",
        "text_projection.weight": "text_encoder_2.text_projection.weight",
    }
    single_file = normalize_clip_keys(
        ["cond_stage_model.transformer.text_model.final_layer_norm.bias", "model.diffusion_model.out.0.bias"],
        with_projection=False,
        file_prefix="cond_stage_model.transformer.",
    )
    assert single_file.file_keys() == {
        "final_layer_norm.bias": "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    }


@pytest.mark.parametrize(
    ("keys", "with_projection", "message"),
    [
        (["text_model.encoder.layers.0.self_attn.qkv.weight"], False, "not a tensor of a CLIP text tower"),
        (["text_projection.weight"], False, "has none"),
        (["final_layer_norm.bias", "text_model.final_layer_norm.bias"], False, "both name"),
    ],
)
def test_key_layouts_refuse_foreign_tensors(keys: list[str], with_projection: bool, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        normalize_clip_keys(keys, with_projection=with_projection)
