"""Our DINOv2 config from a transformers `config.json` (`Dinov2Model`, `Dinov2WithRegistersModel`),
and back.

A config may also carry `zoo_interpolate_offset` and `zoo_interpolate_antialias` (zoo's own keys, so
no transformers field is ever read as one): the configs derived from an original release file do,
because the code those files were made for resizes position embeddings unlike transformers'
`Dinov2Model` (see `zoo.foundationals.dinov2.position_embedding`). The upstream model is built
without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from zoo.errors import ConfigError
from zoo.foundationals.dinov2 import DINOv2Config

PLAIN, WITH_REGISTERS = "Dinov2Model", "Dinov2WithRegistersModel"
MODEL_TYPES = {"dinov2": PLAIN, "dinov2_with_registers": WITH_REGISTERS}
# zoo's keys in an upstream config -> the fields of our config they set
INTERPOLATION_KEYS = {
    "zoo_interpolate_offset": "interpolate_offset",
    "zoo_interpolate_antialias": "interpolate_antialias",
}
SUPPORTED_ACTIVATION = "gelu"  # the MLP's; the SwiGLU always uses SiLU
MAX_MLP_RATIO = 16  # transformers' configs hold an integer ratio; this bounds the search for one


def architecture(upstream: Mapping[str, Any]) -> str:
    """`Dinov2Model` or `Dinov2WithRegistersModel`, from `model_type` (or `architectures`)."""
    model_type = upstream.get("model_type")
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    named = [name for name in upstream.get("architectures") or () if name in (PLAIN, WITH_REGISTERS)]
    if named:
        return named[0]
    raise ConfigError(
        f"model_type {model_type!r}, architectures {upstream.get('architectures')!r}: not a DINOv2 backbone",
        hint=f"expected model_type {' or '.join(MODEL_TYPES)}",
    )


def _defaults(class_name: str) -> dict[str, Any]:
    """What transformers' config class assumes for a field a config.json leaves out."""
    import transformers

    config_class = getattr(transformers, class_name.replace("Model", "Config"))
    return config_class().to_dict()


def _fields(upstream: Mapping[str, Any], class_name: str) -> dict[str, Any]:
    return {**_defaults(class_name), **upstream}


def _side(value: Any, field: str) -> int:
    """An int, or a square [n, n]."""
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:  # pyright: ignore[reportUnknownArgumentType]
        return int(value[0])  # pyright: ignore[reportUnknownArgumentType]
    raise ConfigError(f"{field} is {value!r}: only square images and patches are supported")


def feedforward_size(hidden_size: int, mlp_ratio: float, swiglu: bool) -> int:
    """The feed-forward width transformers builds (for a SwiGLU, of each branch: 2/3, rounded up to 8)."""
    width = int(hidden_size * mlp_ratio)
    return (int(width * 2 / 3) + 7) // 8 * 8 if swiglu else width


def _check_supported(fields: Mapping[str, Any]) -> None:
    if not fields.get("qkv_bias", True):
        raise ConfigError("qkv_bias is false: every DINOv2 release has attention biases; not supported")
    if not fields.get("use_mask_token", True):
        raise ConfigError("use_mask_token is false: every DINOv2 release has a mask token; not supported")
    if not fields["use_swiglu_ffn"] and fields["hidden_act"] != SUPPORTED_ACTIVATION:
        raise ConfigError(
            f"hidden_act is {fields['hidden_act']!r}: only {SUPPORTED_ACTIVATION!r} is supported"
        )


def derive_config(upstream: Mapping[str, Any]) -> DINOv2Config:
    """Our config from a transformers DINOv2 `config.json` content.

    Raises:
        ConfigError: Not a DINOv2 backbone, or a field we do not support (named).
    """
    class_name = architecture(upstream)
    fields = _fields(upstream, class_name)
    _check_supported(fields)
    registers = fields["num_register_tokens"] if class_name == WITH_REGISTERS else 0
    swiglu = bool(fields["use_swiglu_ffn"])
    hidden = fields["hidden_size"]
    try:
        config = _config(fields, registers, swiglu, hidden)
    except ValueError as error:
        raise ConfigError(f"unsupported DINOv2 config: {error}") from None
    return _with_interpolation(config, upstream)


def _config(fields: Mapping[str, Any], registers: int, swiglu: bool, hidden: int) -> DINOv2Config:
    return DINOv2Config(
        image_size=_side(fields["image_size"], "image_size"),
        patch_size=_side(fields["patch_size"], "patch_size"),
        in_channels=fields["num_channels"],
        hidden_size=hidden,
        num_layers=fields["num_hidden_layers"],
        num_heads=fields["num_attention_heads"],
        feedforward="swiglu" if swiglu else "mlp",
        feedforward_size=feedforward_size(hidden, fields["mlp_ratio"], swiglu),
        num_registers=registers,
        layer_norm_eps=fields["layer_norm_eps"],
        interpolate_antialias=bool(registers),
    )


def _with_interpolation(config: DINOv2Config, upstream: Mapping[str, Any]) -> DINOv2Config:
    given = {field: upstream[key] for key, field in INTERPOLATION_KEYS.items() if key in upstream}
    return replace(config, **given) if given else config


def mlp_ratio(config: DINOv2Config) -> int:
    """The integer ratio transformers' config needs to build our feed-forward width."""
    swiglu = config.feedforward == "swiglu"
    for ratio in range(1, MAX_MLP_RATIO + 1):
        if feedforward_size(config.hidden_size, ratio, swiglu) == config.feedforward_size:
            return ratio
    raise ConfigError(
        f"feedforward_size {config.feedforward_size} for hidden_size {config.hidden_size}: no integer "
        "mlp_ratio gives it, so transformers cannot build this model"
    )


def upstream_config(config: DINOv2Config) -> dict[str, Any]:
    """The transformers `config.json` content of our config: the inverse of `derive_config`."""
    class_name = WITH_REGISTERS if config.num_registers else PLAIN
    upstream: dict[str, Any] = {
        "architectures": [class_name],
        "model_type": next(key for key, value in MODEL_TYPES.items() if value == class_name),
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "num_channels": config.in_channels,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "mlp_ratio": mlp_ratio(config),
        "use_swiglu_ffn": config.feedforward == "swiglu",
        "hidden_act": SUPPORTED_ACTIVATION,
        "layer_norm_eps": config.layer_norm_eps,
        "layerscale_value": 1.0,
        "qkv_bias": True,
    }
    if config.num_registers:
        upstream["num_register_tokens"] = config.num_registers
    own = (config.interpolate_offset, config.interpolate_antialias)
    if own != (0.0, bool(config.num_registers)):  # not the interpolation of the transformers class
        upstream.update(zip(INTERPOLATION_KEYS, own, strict=True))
    return upstream


def upstream_model(upstream: Mapping[str, Any]) -> nn.Module:
    """transformers' model for a config.json content (random weights; free on meta), in eval mode."""
    import transformers

    class_name = architecture(upstream)
    fields = {
        key: value for key, value in upstream.items() if key not in (*INTERPOLATION_KEYS, "architectures")
    }
    config_class = getattr(transformers, class_name.replace("Model", "Config"))
    model: nn.Module = getattr(transformers, class_name)(config_class.from_dict(fields))
    return model.eval()


__all__ = [
    "INTERPOLATION_KEYS",
    "PLAIN",
    "WITH_REGISTERS",
    "architecture",
    "derive_config",
    "feedforward_size",
    "mlp_ratio",
    "upstream_config",
    "upstream_model",
]
