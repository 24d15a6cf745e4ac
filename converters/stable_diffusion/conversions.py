"""The Stable Diffusion components as conversions, parameterised by family facts.

Each builder returns a `Conversion` for one component (UNet, text encoder(s), autoencoder); the
family folders (`converters/sdxl/`, `converters/sd15/`) fill in their repo, licence, pinned files,
full-size and tiny configs and single-file layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from converters._tracing import Overrides
from converters.declaration import (
    Asset,
    Conversion,
    KeyNormalization,
    PinnedFile,
    Shape,
    SingleFileLayout,
    Size,
    UpstreamConfigs,
    UpstreamPart,
)
from converters.stable_diffusion.assets import scheduler_asset, tokenizer_asset
from converters.stable_diffusion.autoencoder import (
    autoencoder_example_inputs,
    derive_autoencoder_config,
    normalize_vae_keys,
    run_autoencoder,
    run_upstream_autoencoder,
    upstream_autoencoder_config,
)
from converters.stable_diffusion.clip_text import (
    SDXLTextEncodersReference,
    derive_clip_text_config,
    derive_sdxl_text_encoder_config,
    example_input_ids,
    normalize_clip_keys,
    sdxl_example_inputs,
    upstream_clip_text_config,
)
from converters.stable_diffusion.unet import derive_unet_config, diffusers_unet_config, unet_example_inputs
from zoo.foundationals.clip.text_encoder import CLIPTextEncoder, CLIPTextEncoderConfig
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig, LatentDiffusionAutoencoder
from zoo.foundationals.latent_diffusion.text_encoders import (
    SD15TextEncoder,
    SDXLTextEncoder,
    SDXLTextEncoderConfig,
)
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig


def _diffusers_model(class_name: str, config: dict[str, Any]) -> nn.Module:
    import diffusers

    return getattr(diffusers, class_name).from_config(config)


# -- autoencoder ------------------------------------------------------------------------------------


def _differs(field: str, value: object, expected: object) -> str | None:
    return None if value == expected else f"{field} is {value!r}, this family has {expected!r}"


def _latent_space_differs(config: AutoencoderConfig, full: AutoencoderConfig) -> str | None:
    """A VAE with per-channel latent statistics declares its own latent space (Playground v2.5 style):
    it is of the family's architecture on purpose. Otherwise its scale must be the family's."""
    if config.latents_mean is not None:
        return None
    return _differs("scaling_factor", config.scaling_factor, full.scaling_factor)


def vae_normalization(shapes: Mapping[str, Shape]) -> KeyNormalization:
    """Current, deprecated (`query`/`key`/`value`/`proj_attn`) and 1×1-conv-shaped VAE names."""
    normalized = normalize_vae_keys(shapes)
    return KeyNormalization(
        renames={file_key: entry.key for file_key, entry in normalized.items()},
        reshapes={k: e.shape for k, e in normalized.items() if tuple(e.shape) != tuple(shapes[k])},
    )


def autoencoder_conversion(
    name: str,
    hub_repo: str,
    license: str,
    full: AutoencoderConfig,
    tiny: UpstreamConfigs,
    pinned: PinnedFile | None = None,
    fp16_warning: str | None = None,
    repo_folder: str | None = None,
    single_file: SingleFileLayout | None = None,
) -> Conversion:
    """The latent diffusion autoencoder (diffusers `AutoencoderKL`)."""

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {"vae": upstream_autoencoder_config(full) if size == "full" else dict(tiny["vae"])}

    return Conversion(
        name=name,
        description="latent diffusion autoencoder (diffusers AutoencoderKL)",
        hub_repo=hub_repo,
        license=license,
        parts=(
            UpstreamPart(
                "vae",
                "diffusers.AutoencoderKL",
                lambda config: _diffusers_model("AutoencoderKL", config),
                normalize_keys=vae_normalization,
                pinned=pinned,
                repo_folder=repo_folder,
            ),
        ),
        derive_config=lambda configs: derive_autoencoder_config(configs["vae"]),
        build_target=LatentDiffusionAutoencoder,
        example_inputs=lambda config, device, dtype: autoencoder_example_inputs(config, device, dtype),
        run_upstream=lambda model, images: run_upstream_autoencoder(images)(model),
        run_target=lambda model, images: run_autoencoder(images)(model),
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=single_file,
        fp16_warning=fp16_warning,
        family_check=lambda config: _latent_space_differs(config, full),
        upstream_configs_of=lambda config: {"vae": upstream_autoencoder_config(config)},
    )


# -- text encoders ----------------------------------------------------------------------------------


def _clip_model(config: dict[str, Any], with_projection: bool) -> nn.Module:
    import transformers

    cls = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    return cls(transformers.CLIPTextConfig.from_dict(config))


def clip_normalization(with_projection: bool) -> Callable[[Mapping[str, Shape]], KeyNormalization]:
    """Files with or without the `text_model.` prefix, and the legacy `position_ids` buffer."""

    def normalize(shapes: Mapping[str, Shape]) -> KeyNormalization:
        keys = normalize_clip_keys(shapes, with_projection=with_projection)
        return KeyNormalization(renames=keys.model_keys, ignored=keys.ignored)

    return normalize


def _hub_clip_key(key: str) -> str:
    """The Hub's files (SD 1.5, SDXL) name CLIPTextModel tensors with the `text_model.` prefix."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


def clip_part(subfolder: str, with_projection: bool, pinned: PinnedFile | None = None) -> UpstreamPart:
    """A transformers CLIP text tower, as a pipeline's `text_encoder*` folder holds it."""
    return UpstreamPart(
        subfolder,
        "transformers.CLIPTextModelWithProjection" if with_projection else "transformers.CLIPTextModel",
        lambda config: _clip_model(config, with_projection),
        normalize_keys=clip_normalization(with_projection),
        pinned=pinned,
        hub_key=None if with_projection else _hub_clip_key,
    )


END = "<|endoftext|>"  # CLIP-L's tokenizers pad with the end token
OPEN_CLIP_PAD = "!"  # SDXL's second tokenizer pads with id 0, "!", as OpenCLIP does


def _tokenizer(
    subfolder: str, pad_token: str, synthetic: Callable[[Size], dict[str, dict[str, Any]]], part: str
) -> Asset:
    """A tokenizer folder; synthetic stand-ins fit the tower's positions and vocabulary."""
    return tokenizer_asset(
        subfolder,
        pad_token,
        max_length=lambda size: int(synthetic(size)[part]["max_position_embeddings"]),
        vocab_size=lambda size: int(synthetic(size)[part]["vocab_size"]),
    )


def _run_clip_upstream(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    output = model(ids)
    return output.last_hidden_state, output.pooler_output


def _run_clip_ours(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    assert isinstance(model, CLIPTextEncoder)
    output = model.encode(ids)
    return output.last_hidden_state, output.pooled


def sd15_text_encoder_conversion(
    name: str,
    hub_repo: str,
    license: str,
    tiny: UpstreamConfigs,
    pinned: PinnedFile | None = None,
    single_file: SingleFileLayout | None = None,
) -> Conversion:
    """SD 1.5's CLIP-L tower: the last hidden state after the final norm conditions the UNet.

    It carries the pipeline's `tokenizer/` (padded with the end token).
    """

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        if size == "tiny":
            return {"text_encoder": dict(tiny["text_encoder"])}
        return {"text_encoder": upstream_clip_text_config(CLIPTextEncoderConfig.clip_l())}

    return Conversion(
        name=name,
        description="CLIP ViT-L/14 text encoder (transformers CLIPTextModel), with its tokenizer",
        hub_repo=hub_repo,
        license=license,
        parts=(clip_part("text_encoder", with_projection=False, pinned=pinned),),
        assets=(_tokenizer("tokenizer", END, synthetic, "text_encoder"),),
        derive_config=lambda configs: derive_clip_text_config(configs["text_encoder"], with_projection=False),
        build_target=SD15TextEncoder,
        example_inputs=lambda config, device, _dtype: example_input_ids(config, device),
        run_upstream=_run_clip_upstream,
        run_target=_run_clip_ours,
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=single_file,
        family_check=lambda config: _differs("activation", config.activation, "quick_gelu"),
        upstream_configs_of=lambda config: {"text_encoder": upstream_clip_text_config(config)},
    )


def _run_sdxl_text_upstream(model: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> Any:
    assert isinstance(model, nn.ModuleDict)
    return SDXLTextEncodersReference(model["text_encoder"], model["text_encoder_2"])(*inputs)


def sdxl_text_encoder_conversion(
    name: str,
    hub_repo: str,
    license: str,
    tiny: UpstreamConfigs,
    pinned: tuple[PinnedFile | None, PinnedFile | None] = (None, None),
    single_file: SingleFileLayout | None = None,
) -> Conversion:
    """SDXL's two towers in one file: CLIP-L and OpenCLIP bigG (with projection).

    It carries the pipeline's `tokenizer/` (padded with the end token) and `tokenizer_2/` (padded
    with `!`, id 0, as OpenCLIP pads).
    """

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        if size == "tiny":
            return {sub: dict(tiny[sub]) for sub in ("text_encoder", "text_encoder_2")}
        config = SDXLTextEncoderConfig.sdxl()
        return {
            "text_encoder": upstream_clip_text_config(config.text_encoder),
            "text_encoder_2": upstream_clip_text_config(config.text_encoder_2),
        }

    return Conversion(
        name=name,
        description="CLIP-L + OpenCLIP bigG text encoders: 2048-wide context and pooled embedding, with tokenizers",
        hub_repo=hub_repo,
        license=license,
        parts=(
            clip_part("text_encoder", with_projection=False, pinned=pinned[0]),
            clip_part("text_encoder_2", with_projection=True, pinned=pinned[1]),
        ),
        assets=(
            _tokenizer("tokenizer", END, synthetic, "text_encoder"),
            _tokenizer("tokenizer_2", OPEN_CLIP_PAD, synthetic, "text_encoder_2"),
        ),
        derive_config=lambda configs: derive_sdxl_text_encoder_config(
            configs["text_encoder"], configs["text_encoder_2"]
        ),
        build_target=SDXLTextEncoder,
        example_inputs=lambda config, device, _dtype: sdxl_example_inputs(config, device),
        run_upstream=_run_sdxl_text_upstream,
        run_target=lambda model, inputs: model(*inputs),
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=single_file,
        upstream_configs_of=_sdxl_text_upstream_configs,
    )


def _sdxl_text_upstream_configs(config: SDXLTextEncoderConfig) -> dict[str, dict[str, Any]]:
    return {
        "text_encoder": upstream_clip_text_config(config.text_encoder),
        "text_encoder_2": upstream_clip_text_config(config.text_encoder_2),
    }


# -- UNet -------------------------------------------------------------------------------------------


def unet_conversion(
    name: str,
    hub_repo: str,
    license: str,
    full: UNetConfig,
    tiny: UpstreamConfigs,
    pinned: PinnedFile | None = None,
    single_file: SingleFileLayout | None = None,
    scheduler: Mapping[str, Any] | None = None,
) -> Conversion:
    """The denoising UNet (diffusers `UNet2DConditionModel`); the variant comes from its config.json.

    It carries the pipeline's `scheduler/scheduler_config.json` (the noise schedule it was trained
    with); synthetic sources get `scheduler`, the family's own.
    """

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {"unet": diffusers_unet_config(full) if size == "full" else dict(tiny["unet"])}

    return Conversion(
        name=name,
        description="denoising UNet (diffusers UNet2DConditionModel), with its scheduler config",
        hub_repo=hub_repo,
        license=license,
        assets=(scheduler_asset(scheduler),) if scheduler is not None else (),
        parts=(
            UpstreamPart(
                "unet",
                "diffusers.UNet2DConditionModel",
                lambda config: _diffusers_model("UNet2DConditionModel", config),
                pinned=pinned,
            ),
        ),
        derive_config=lambda configs: derive_unet_config(configs["unet"]),
        build_target=UNet,
        example_inputs=lambda config, device, dtype: unet_example_inputs(config, device, dtype),
        run_upstream=lambda model, inputs: inputs.run_upstream(model),
        run_target=lambda model, inputs: inputs.run_target(model),
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=single_file,
        family_check=lambda config: _differs(
            "addition_embed_type", config.addition_embed_type, full.addition_embed_type
        ),
        upstream_configs_of=lambda config: {"unet": diffusers_unet_config(config)},
    )


__all__ = [
    "autoencoder_conversion",
    "clip_normalization",
    "clip_part",
    "sd15_text_encoder_conversion",
    "sdxl_text_encoder_conversion",
    "unet_conversion",
    "vae_normalization",
]
