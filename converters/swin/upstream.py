"""transformers' `SwinModel` as the reference: configs both ways, the reference model, inputs and outputs.

Our `SwinConfig` comes from a `config.json` (`derive_swin_config`); fields that only train
(dropouts, stochastic depth, initialisation) or only serve other heads (`encoder_stride` of the masked
image modelling decoder, a backbone's `out_features`) do not change the backbone and are not read.
Both models are compared on every stage's features before the patch merging, the last hidden state and
the pooled output (`run_upstream`, `run_ours`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.foundationals.swin.transformer import SwinConfig, SwinTransformer

SUBFOLDER = "backbone"  # the part's folder in a synthetic source (the Hub's repositories: their top level)
MODEL_TYPE = "swin"
ARCHITECTURE = "SwinModel"
ACTIVATION = "gelu"  # transformers' ACT2FN["gelu"]: the exact GELU, the only one Swin was trained with

# transformers 5.24 `SwinConfig` defaults: what a config.json means by leaving a field out.
UPSTREAM_DEFAULTS: Mapping[str, Any] = {
    "model_type": MODEL_TYPE,
    "image_size": 224,
    "patch_size": 4,
    "num_channels": 3,
    "embed_dim": 96,
    "depths": (2, 2, 6, 2),
    "num_heads": (3, 6, 12, 24),
    "window_size": 7,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "hidden_act": ACTIVATION,
    "use_absolute_embeddings": False,
    "layer_norm_eps": 1e-5,
}
BATCH_SIZE = 2


def _fail(field: str, value: object, why: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"Swin config field {field}={value!r}: {why}", hint=hint)


def _square(field: str, value: Any) -> int:
    """An int, or the side of a square given as [height, width]."""
    if isinstance(value, list | tuple):
        sides = {int(side) for side in value}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        if len(sides) != 1:
            raise _fail(field, value, "only square images and patches are supported")
        return sides.pop()
    return int(value)


def _check_supported(config: Mapping[str, Any]) -> None:
    if config["model_type"] != MODEL_TYPE:
        hint = "Swin V2 is not supported yet" if config["model_type"] == "swinv2" else None
        raise _fail("model_type", config["model_type"], f"expected {MODEL_TYPE!r}", hint)
    if config["hidden_act"] != ACTIVATION:
        raise _fail("hidden_act", config["hidden_act"], f"only {ACTIVATION!r} is supported")
    if config["use_absolute_embeddings"]:
        raise _fail("use_absolute_embeddings", True, "absolute position embeddings are not supported")


def derive_swin_config(upstream: Mapping[str, Any]) -> SwinConfig:
    """Our config from a transformers Swin `config.json` (`SwinModel`, `SwinForImageClassification`).

    Raises:
        ConfigError: A field asks for a variant our model does not build (Swin V2, absolute position
            embeddings, another activation, rectangular patches) or the sizes are inconsistent.
    """
    config = {**UPSTREAM_DEFAULTS, **upstream}
    _check_supported(config)
    try:
        return SwinConfig(
            image_size=_square("image_size", config["image_size"]),
            patch_size=_square("patch_size", config["patch_size"]),
            num_channels=int(config["num_channels"]),
            embed_dim=int(config["embed_dim"]),
            depths=tuple(int(depth) for depth in config["depths"]),
            num_heads=tuple(int(heads) for heads in config["num_heads"]),
            window_size=int(config["window_size"]),
            mlp_ratio=float(config["mlp_ratio"]),
            qkv_bias=bool(config["qkv_bias"]),
            layer_norm_eps=float(config["layer_norm_eps"]),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Swin config is inconsistent: {error}") from error


def upstream_swin_config(config: SwinConfig) -> dict[str, Any]:
    """The transformers `config.json` content of a `SwinModel`: the inverse of `derive_swin_config`."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "num_channels": config.num_channels,
        "embed_dim": config.embed_dim,
        "depths": list(config.depths),
        "num_heads": list(config.num_heads),
        "window_size": config.window_size,
        "mlp_ratio": config.mlp_ratio,
        "qkv_bias": config.qkv_bias,
        "hidden_act": ACTIVATION,
        "use_absolute_embeddings": False,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
    }


def random_weights(model: nn.Module) -> nn.Module:
    """Every parameter drawn from the global RNG, at a scale that keeps activations near unit size.

    transformers starts the position tables, biases and norms at constants, so a model saved as it is
    built would leave those tensors (and any mix-up between them) untested.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.normal_(0.0, fan_in**-0.5)
    return model


def swin_model(config: Mapping[str, Any]) -> nn.Module:
    """transformers' `SwinModel` for a `config.json` content, with random weights (free on `meta`)."""
    from transformers import SwinConfig as UpstreamConfig
    from transformers import SwinModel

    return random_weights(SwinModel(UpstreamConfig.from_dict(dict(config)))).eval()


def example_images(
    config: SwinConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    size: tuple[int, int] | None = None,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
) -> torch.Tensor:
    """Seeded images (B, C, H, W), at the training size unless `size` is given; zeros on `meta`.

    Args:
        config: Our config (channels and training size).
        device: Where the images live.
        dtype: Their dtype (float32 by default).
        size: (height, width), if not the training size.
        batch_size: Images.
        seed: Seed of the values (the global RNG is not touched).
    """
    height, width = size or (config.image_size, config.image_size)
    shape = (batch_size, config.num_channels, height, width)
    if torch.device(device or "cpu").type == "meta":
        return torch.zeros(shape, device="meta", dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device=device or "cpu", dtype=dtype or torch.float32)


def run_upstream(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """transformers' stage features (before the merging), last hidden state and pooled output."""
    output = model(images, output_hidden_states=True, output_hidden_states_before_downsampling=True)
    return (*output.reshaped_hidden_states[1:], output.last_hidden_state, output.pooler_output)


def run_ours(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Our stage features, last hidden state and pooled output, in `run_upstream`'s order."""
    assert isinstance(model, SwinTransformer)
    output = model.encode(images)
    return (*output.stages, output.last_hidden_state, output.pooled)


__all__ = [
    "SUBFOLDER",
    "UPSTREAM_DEFAULTS",
    "derive_swin_config",
    "example_images",
    "random_weights",
    "run_ours",
    "run_upstream",
    "swin_model",
    "upstream_swin_config",
]
