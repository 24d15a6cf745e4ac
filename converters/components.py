"""Conversions shared by the SD 1.5 and SDXL families, parameterised by family facts.

Each builder returns a `Conversion` for one component; `converters/sdxl.py` and `converters/sd15.py`
fill in the family's repo, licence, pinned files and full-size configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from converters.declaration import Conversion, KeyNormalization, PinnedFile, Shape, Size, UpstreamPart
from converters.derive.autoencoder import (
    autoencoder_example_inputs,
    derive_autoencoder_config,
    normalize_vae_keys,
    run_autoencoder,
    run_upstream_autoencoder,
    upstream_autoencoder_config,
)
from converters.tracing import Overrides
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig, LatentDiffusionAutoencoder


def _diffusers_model(class_name: str, config: dict[str, Any]) -> nn.Module:
    import diffusers

    return getattr(diffusers, class_name).from_config(config)


# -- autoencoder ------------------------------------------------------------------------------------


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
    pinned: PinnedFile | None = None,
    fp16_warning: str | None = None,
    subfolder: str = "vae",
) -> Conversion:
    """The latent diffusion autoencoder (diffusers `AutoencoderKL`)."""

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {subfolder: upstream_autoencoder_config(full if size == "full" else AutoencoderConfig.tiny())}

    return Conversion(
        name=name,
        description="latent diffusion autoencoder (diffusers AutoencoderKL)",
        hub_repo=hub_repo,
        license=license,
        parts=(
            UpstreamPart(
                subfolder,
                "diffusers.AutoencoderKL",
                lambda config: _diffusers_model("AutoencoderKL", config),
                normalize_keys=vae_normalization,
                pinned=pinned,
            ),
        ),
        derive_config=lambda configs: derive_autoencoder_config(configs[subfolder]),
        build_target=LatentDiffusionAutoencoder,
        example_inputs=lambda config, device: autoencoder_example_inputs(config, device=device),
        run_upstream=lambda model, images: run_upstream_autoencoder(images)(model),
        run_target=lambda model, images: run_autoencoder(images)(model),
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        fp16_warning=fp16_warning,
    )


__all__ = ["autoencoder_conversion", "vae_normalization"]
