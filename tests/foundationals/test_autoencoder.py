"""The latent diffusion autoencoder against diffusers' AutoencoderKL: parity, size, tracing, key layouts."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, cast

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from converters._tracing import KeyMap, trace_key_map
from converters.stable_diffusion.autoencoder import (
    UPSTREAM_DEFAULTS,
    autoencoder_example_inputs,
    derive_autoencoder_config,
    normalize_vae_keys,
    run_autoencoder,
    run_upstream_autoencoder,
    upstream_autoencoder_config,
    vae_tensor_getter,
)
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig, LatentDiffusionAutoencoder

FULL_SIZE_PARAMETERS = 83_653_863  # MODELS.md: SDXL / SD 1.5 autoencoder, 248 tensors
FULL_SIZE_TENSORS = 248

# The `vae/config.json` files of the pinned Hub revisions (MODELS.md), as diffusers reads them.
SD15_CONFIG_JSON: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SDXL_CONFIG_JSON: dict[str, Any] = {
    **SD15_CONFIG_JSON,
    "_diffusers_version": "0.18.0.dev0",
    "force_upcast": True,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}

# Variants the parity test covers: the tiny twin, and one without quant convs and mid-block attention
# and with shifted latents (the options Flux-style VAEs use), so every config branch is checked.
TINY_VARIANTS = {
    "tiny": AutoencoderConfig.tiny(),
    "tiny-no-quant-no-attention-shifted": dataclasses.replace(
        AutoencoderConfig.tiny(),
        latent_channels=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_attention=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    ),
    # Playground v2.5 style: its own latent space, with per-channel statistics.
    "tiny-latent-statistics": dataclasses.replace(
        AutoencoderConfig.tiny(),
        scaling_factor=0.5,
        latents_mean=(-1.6574, 1.886, -1.383, 2.5155),
        latents_std=(8.4927, 5.9022, 6.5498, 5.2299),
    ),
}


@pytest.fixture(autouse=True)
def _restore_rng() -> Iterator[None]:
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)


def _randomized_upstream(config: AutoencoderConfig, seed: int = 0) -> AutoencoderKL:
    """A diffusers VAE with every tensor random (norms too, so swapped norms cannot hide)."""
    torch.manual_seed(seed)
    upstream = AutoencoderKL(**upstream_autoencoder_config(config)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in upstream.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return upstream


def _key_map(config: AutoencoderConfig, device: str = "meta") -> KeyMap:
    with torch.device(device):
        upstream = AutoencoderKL(**upstream_autoencoder_config(config))
    ours = LatentDiffusionAutoencoder(config, device=device)
    images = autoencoder_example_inputs(config, device)
    return trace_key_map(upstream, ours, run_upstream_autoencoder(images), run_autoencoder(images))


def _converted(config: AutoencoderConfig, upstream: AutoencoderKL) -> LatentDiffusionAutoencoder:
    key_map = _key_map(config)
    state = upstream.state_dict()
    ours = LatentDiffusionAutoencoder(config).eval()
    ours.load_state_dict(
        {key: key_map.apply(state.__getitem__, key) for key in key_map.target_keys()}, strict=True
    )
    return ours


def _upstream_mean(upstream: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    return upstream.encode(images, return_dict=False)[0].mean


def _upstream_decode(upstream: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    return upstream.decode(cast(torch.FloatTensor, latents), return_dict=False)[0]


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    error = ((ours - reference).abs().max() / reference.abs().max()).item()
    print(f"max abs {(ours - reference).abs().max().item():.3e}, relative {error:.3e}")
    return error


# -- parity -----------------------------------------------------------------------------------------


def _statistics(config: AutoencoderConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    if config.latents_mean is None or config.latents_std is None:
        return None
    return torch.tensor(config.latents_mean).view(1, -1, 1, 1), torch.tensor(config.latents_std).view(
        1, -1, 1, 1
    )


def _pipeline_scaled(config: AutoencoderConfig, mean: torch.Tensor) -> torch.Tensor:
    """As diffusers' pipelines scale an encoded mean (image to image)."""
    statistics = _statistics(config)
    if statistics is not None:
        return (mean - statistics[0]) * config.scaling_factor / statistics[1]
    return (mean - (config.shift_factor or 0.0)) * config.scaling_factor


def _pipeline_unscaled(config: AutoencoderConfig, latents: torch.Tensor) -> torch.Tensor:
    """As diffusers' SDXL pipeline unscales latents before decoding."""
    statistics = _statistics(config)
    if statistics is not None:
        return latents * statistics[1] / config.scaling_factor + statistics[0]
    return latents / config.scaling_factor + (config.shift_factor or 0.0)


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_parity_with_diffusers(variant: str) -> None:
    config = TINY_VARIANTS[variant]
    upstream = _randomized_upstream(config)
    ours = _converted(config, upstream)
    images = autoencoder_example_inputs(config)
    latents = torch.randn(1, config.latent_channels, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_latents = _pipeline_scaled(config, _upstream_mean(upstream, images))
        expected_images = _upstream_decode(upstream, _pipeline_unscaled(config, latents))
        assert _relative_error(ours.encode(images), expected_latents) <= 1e-5
        assert _relative_error(ours.decode(latents), expected_images) <= 1e-5
        assert _relative_error(ours(images), ours.decode(ours.encode(images))) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_in_half_precision_on_cpu(dtype: torch.dtype) -> None:
    config = AutoencoderConfig.tiny()
    torch.manual_seed(0)
    model = LatentDiffusionAutoencoder(config, dtype=dtype).eval()
    images = autoencoder_example_inputs(config, dtype=dtype)
    with torch.no_grad():
        latents = model.encode(images)
        reconstructed = model.decode(latents)
    assert latents.dtype == reconstructed.dtype == dtype
    assert latents.shape == (1, config.latent_channels, 8, 8)
    assert reconstructed.shape == images.shape
    assert torch.isfinite(latents).all() and torch.isfinite(reconstructed).all()


# -- full size --------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [AutoencoderConfig.sd15(), AutoencoderConfig.sdxl()], ids=["sd15", "sdxl"])
def test_full_size_parameter_count(config: AutoencoderConfig) -> None:
    ours = LatentDiffusionAutoencoder(config, device="meta")
    with torch.device("meta"):
        upstream = AutoencoderKL(**upstream_autoencoder_config(config))
    count = sum(parameter.numel() for parameter in ours.parameters())
    assert count == sum(parameter.numel() for parameter in upstream.parameters()) == FULL_SIZE_PARAMETERS
    assert len(ours.state_dict()) == len(upstream.state_dict()) == FULL_SIZE_TENSORS


def test_full_size_trace_covers_everything(data_regression: Any) -> None:
    start = time.perf_counter()
    key_map = _key_map(AutoencoderConfig.sdxl())
    print(f"full-size autoencoder: built and traced on meta in {time.perf_counter() - start:.2f} s")
    coverage = key_map.coverage
    assert coverage is not None
    print(coverage.summary())
    assert coverage.mapped_sources == coverage.source_tensors == FULL_SIZE_TENSORS
    assert coverage.produced_targets == coverage.target_tensors == FULL_SIZE_TENSORS
    assert coverage.override_entries == 0 and not coverage.unused_overrides
    assert dict(coverage.transforms) == {"identity": FULL_SIZE_TENSORS}
    pairs = sorted(
        [target, source]
        for entry in key_map.entries
        for source, target in zip(entry.sources, entry.targets, strict=True)
    )
    data_regression.check({"pairs": pairs})


def test_state_dict_keys_are_stable() -> None:
    first = LatentDiffusionAutoencoder(AutoencoderConfig.sdxl(), device="meta").state_dict()
    second = LatentDiffusionAutoencoder(AutoencoderConfig.sdxl(), device="meta").state_dict()
    assert list(first) == list(second)
    assert {key: value.shape for key, value in first.items()} == {
        key: value.shape for key, value in second.items()
    }


def test_builds_on_meta_with_dtype() -> None:
    model = LatentDiffusionAutoencoder(AutoencoderConfig.tiny(), device="meta", dtype=torch.float16)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.float16)}


# -- config derivation ------------------------------------------------------------------------------


def test_derives_the_hub_configs() -> None:
    assert derive_autoencoder_config(SD15_CONFIG_JSON) == AutoencoderConfig.sd15()
    assert derive_autoencoder_config(SDXL_CONFIG_JSON) == AutoencoderConfig.sdxl()


@pytest.mark.parametrize("config", [*TINY_VARIANTS.values(), AutoencoderConfig.sd15()])
def test_upstream_config_round_trips(config: AutoencoderConfig) -> None:
    assert derive_autoencoder_config(upstream_autoencoder_config(config)) == config


def test_upstream_defaults_are_diffusers_defaults() -> None:
    parameters = inspect.signature(AutoencoderKL.__init__).parameters
    assert {name: p.default for name, p in parameters.items() if name != "self"} == dict(UPSTREAM_DEFAULTS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("_class_name", "AutoencoderTiny"),
        ("act_fn", "gelu"),
        ("down_block_types", ["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"]),
        ("up_block_types", ["UpDecoderBlock2D"] * 3),
        ("latents_mean", [0.0, 0.0, 0.0, 0.0]),  # without latents_std
        ("norm_num_groups", 24),
    ],
)
def test_unsupported_variants_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        derive_autoencoder_config({**SDXL_CONFIG_JSON, field: value})
    message = str(error.value)
    assert field in message and str(value)[:20] in message


def test_inconsistent_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match="layers_per_block"):
        derive_autoencoder_config({**SDXL_CONFIG_JSON, "layers_per_block": 0})
    with pytest.raises(ConfigError, match="eps"):
        upstream_autoencoder_config(dataclasses.replace(AutoencoderConfig.tiny(), eps=1e-5))


# -- key layouts ------------------------------------------------------------------------------------

_TO_DEPRECATED = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
_TO_LDM_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _deprecated_key(key: str) -> str:
    for new, old in _TO_DEPRECATED.items():
        key = key.replace(f".{new}.", f".{old}.")
    return key


def _ldm_key(key: str, levels: int) -> str:
    """The original LDM name of a diffusers VAE key (the fixture side of the LDM layout test)."""
    replacements = [
        (".conv_norm_out.", ".norm_out."),
        (".conv_shortcut.", ".nin_shortcut."),
        (".downsamplers.0.conv.", ".downsample.conv."),
        (".upsamplers.0.conv.", ".upsample.conv."),
        (".mid_block.resnets.0.", ".mid.block_1."),
        (".mid_block.resnets.1.", ".mid.block_2."),
        *(
            (f".mid_block.attentions.0.{new}.", f".mid.attn_1.{old}.")
            for new, old in _TO_LDM_ATTENTION.items()
        ),
        *((f".down_blocks.{i}.resnets.", f".down.{i}.block.") for i in range(levels)),
        *((f".down_blocks.{i}.", f".down.{i}.") for i in range(levels)),
        *((f".up_blocks.{i}.resnets.", f".up.{levels - 1 - i}.block.") for i in range(levels)),
        *((f".up_blocks.{i}.", f".up.{levels - 1 - i}.") for i in range(levels)),
    ]
    for new, old in replacements:
        key = key.replace(new, old)
    return key


def _as_conv(key: str, tensor: torch.Tensor) -> torch.Tensor:
    is_attention = any(
        f".{name}.weight" in key for name in ("q", "k", "v", "proj_out", "query", "key", "value", "proj_attn")
    )
    return tensor[:, :, None, None] if is_attention and tensor.ndim == 2 else tensor


def _normalized_state(file_state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    normalized = normalize_vae_keys({key: tuple(t.shape) for key, t in file_state.items()}, prefix=prefix)
    get = vae_tensor_getter(file_state.__getitem__, normalized)
    return {entry.key: get(entry.key) for entry in normalized.values()}


def _assert_same_state(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert sorted(ours) == sorted(reference)
    for key, tensor in reference.items():
        assert ours[key].shape == tensor.shape, key
        assert torch.equal(ours[key], tensor), key


@pytest.fixture(scope="module")
def upstream_state() -> dict[str, torch.Tensor]:
    return _randomized_upstream(AutoencoderConfig.tiny()).state_dict()


def test_current_layout_is_unchanged(upstream_state: dict[str, torch.Tensor]) -> None:
    normalized = normalize_vae_keys({key: tuple(t.shape) for key, t in upstream_state.items()})
    assert {key: tuple(entry) for key, entry in normalized.items()} == {
        key: (key, tuple(t.shape)) for key, t in upstream_state.items()
    }


@pytest.mark.parametrize("conv_shaped", [False, True], ids=["linear", "conv1x1"])
def test_deprecated_attention_names(upstream_state: dict[str, torch.Tensor], conv_shaped: bool) -> None:
    file_state = {_deprecated_key(key): tensor for key, tensor in upstream_state.items()}
    assert "encoder.mid_block.attentions.0.proj_attn.weight" in file_state
    if conv_shaped:
        file_state = {key: _as_conv(key, tensor) for key, tensor in file_state.items()}
        assert file_state["decoder.mid_block.attentions.0.query.weight"].ndim == 4
    else:  # diffusers itself renames exactly these on load; it is the oracle for the Linear-shaped file
        fixed = OrderedDict(file_state)
        AutoencoderKL(**upstream_autoencoder_config(AutoencoderConfig.tiny()))._fix_state_dict_keys_on_load(
            fixed
        )
        _assert_same_state(_normalized_state(file_state), fixed)
    _assert_same_state(_normalized_state(file_state), upstream_state)


def test_single_file_ldm_layout(upstream_state: dict[str, torch.Tensor]) -> None:
    config = AutoencoderConfig.tiny()
    levels = len(config.block_channels)
    vae_file = {
        f"first_stage_model.{_ldm_key(k, levels)}": _as_conv(_ldm_key(k, levels), t)
        for k, t in upstream_state.items()
    }
    assert "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight" in vae_file  # lowest-resolution first
    file_state = {
        **vae_file,
        "model.diffusion_model.out.0.weight": torch.zeros(1),
        "cond_stage_model.x": torch.zeros(1),
    }
    # diffusers' own single-file converter is the oracle for the fixture and for our mapping.
    oracle = convert_ldm_vae_checkpoint(file_state, upstream_autoencoder_config(config))
    _assert_same_state(oracle, upstream_state)
    _assert_same_state(_normalized_state(file_state, prefix="first_stage_model."), upstream_state)


def test_colliding_names_are_refused() -> None:
    shapes = {
        "encoder.mid_block.attentions.0.to_q.weight": (8, 8),
        "encoder.mid_block.attentions.0.query.weight": (8, 8),
    }
    with pytest.raises(FormatError, match=r"to_q\.weight"):
        normalize_vae_keys(shapes)


def test_converts_a_deprecated_single_file_layout_end_to_end(upstream_state: dict[str, torch.Tensor]) -> None:
    config = AutoencoderConfig.tiny()
    file_state = {
        _deprecated_key(key): _as_conv(_deprecated_key(key), t) for key, t in upstream_state.items()
    }
    get = vae_tensor_getter(
        file_state.__getitem__, normalize_vae_keys({k: tuple(t.shape) for k, t in file_state.items()})
    )
    key_map = _key_map(config)
    ours = LatentDiffusionAutoencoder(config).eval()
    ours.load_state_dict({key: key_map.apply(get, key) for key in key_map.target_keys()}, strict=True)
    upstream = AutoencoderKL(**upstream_autoencoder_config(config)).eval()
    upstream.load_state_dict(upstream_state)
    images = autoencoder_example_inputs(config)
    with torch.no_grad():
        expected = _upstream_mean(upstream, images) * config.scaling_factor
        assert _relative_error(ours.encode(images), expected) <= 1e-5
