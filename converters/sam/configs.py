"""Our `SegmentAnythingConfig` from transformers' `SamConfig` (a `config.json`), and back.

transformers' port hard-codes a few numbers our config names (the final layer norm's epsilon, the neck's
and the upscaling's, the hypernetworks' depth); a config that needs other values cannot be written as a
`SamConfig` and is refused. Its two-way blocks' layer norms take `mask_decoder_config.layer_norm_eps`
(1e-6 on the Hub), where the original code has torch's default, 1e-5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.errors import ConfigError
from zoo.foundationals.segment_anything.image_encoder import ImageEncoderConfig
from zoo.foundationals.segment_anything.mask_decoder import MaskDecoderConfig
from zoo.foundationals.segment_anything.model import SegmentAnythingConfig
from zoo.foundationals.segment_anything.prompt_encoder import PromptEncoderConfig

# transformers 5.24 defaults: what a config.json means by leaving a field out.
VISION_DEFAULTS: Mapping[str, Any] = {
    "hidden_size": 768,
    "output_channels": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 1024,
    "patch_size": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "mlp_ratio": 4.0,
    "use_abs_pos": True,
    "use_rel_pos": True,
    "window_size": 14,
    "global_attn_indexes": (2, 5, 8, 11),
    "num_pos_feats": 128,
    "mlp_dim": None,
}
PROMPT_DEFAULTS: Mapping[str, Any] = {
    "hidden_size": 256,
    "image_size": 1024,
    "patch_size": 16,
    "mask_input_channels": 16,
    "num_point_embeddings": 4,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
}
DECODER_DEFAULTS: Mapping[str, Any] = {
    "hidden_size": 256,
    "hidden_act": "relu",
    "mlp_dim": 2048,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "attention_downsample_rate": 2,
    "num_multimask_outputs": 3,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
    "layer_norm_eps": 1e-6,
}

# What transformers' SamModel hard-codes (its module constructors' defaults).
FIXED = {
    "final_layer_norm_eps": 1e-5,
    "upscale_norm_eps": 1e-6,
    "neck_norm_eps": 1e-6,
    "hypernetwork_depth": 3,
}
# Fields whose value is the only one this model builds.
REQUIRED = {
    "vision_config": {"hidden_act": "gelu", "use_abs_pos": True, "use_rel_pos": True},
    "prompt_encoder_config": {"hidden_act": "gelu", "num_point_embeddings": 4},
    "mask_decoder_config": {"hidden_act": "relu"},
}


def _fail(field: str, value: object, why: str) -> ConfigError:
    return ConfigError(
        f"SamConfig field {field}={value!r}: {why}",
        hint="this Segment Anything variant is not supported by the sam conversions",
    )


def _part(config: Mapping[str, Any], name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    part = config.get(name) or {}
    if not isinstance(part, Mapping):
        raise _fail(name, part, "not an object")
    merged = {**defaults, **part}
    for field, expected in REQUIRED[name].items():
        if merged[field] != expected:
            raise _fail(f"{name}.{field}", merged[field], f"only {expected!r} is supported")
    return merged


def _square(field: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple) and len(set(value)) == 1:  # pyright: ignore[reportUnknownArgumentType]
        return int(value[0])  # pyright: ignore[reportUnknownArgumentType]
    raise _fail(field, value, "only square images and patches are supported")


def _image_encoder(vision: Mapping[str, Any]) -> ImageEncoderConfig:
    width = int(vision["hidden_size"])
    mlp_dim = vision["mlp_dim"]
    return ImageEncoderConfig(
        image_size=_square("vision_config.image_size", vision["image_size"]),
        patch_size=_square("vision_config.patch_size", vision["patch_size"]),
        in_channels=int(vision["num_channels"]),
        embed_dim=width,
        depth=int(vision["num_hidden_layers"]),
        num_heads=int(vision["num_attention_heads"]),
        mlp_dim=int(mlp_dim) if mlp_dim is not None else int(width * float(vision["mlp_ratio"])),
        window_size=int(vision["window_size"]),
        global_attention_blocks=tuple(int(index) for index in vision["global_attn_indexes"]),
        out_channels=int(vision["output_channels"]),
        qkv_bias=bool(vision["qkv_bias"]),
        layer_norm_eps=float(vision["layer_norm_eps"]),
        neck_norm_eps=FIXED["neck_norm_eps"],
    )


def _prompt_encoder(prompt: Mapping[str, Any]) -> PromptEncoderConfig:
    size = _square("prompt_encoder_config.image_size", prompt["image_size"])
    patch = _square("prompt_encoder_config.patch_size", prompt["patch_size"])
    return PromptEncoderConfig(
        embed_dim=int(prompt["hidden_size"]),
        image_size=size,
        embedding_size=size // patch,
        mask_channels=int(prompt["mask_input_channels"]),
        layer_norm_eps=float(prompt["layer_norm_eps"]),
    )


def _mask_decoder(decoder: Mapping[str, Any]) -> MaskDecoderConfig:
    return MaskDecoderConfig(
        embed_dim=int(decoder["hidden_size"]),
        depth=int(decoder["num_hidden_layers"]),
        num_heads=int(decoder["num_attention_heads"]),
        mlp_dim=int(decoder["mlp_dim"]),
        attention_downsample_rate=int(decoder["attention_downsample_rate"]),
        num_multimask_outputs=int(decoder["num_multimask_outputs"]),
        iou_head_depth=int(decoder["iou_head_depth"]),
        iou_head_hidden_dim=int(decoder["iou_head_hidden_dim"]),
        hypernetwork_depth=FIXED["hypernetwork_depth"],
        layer_norm_eps=float(decoder["layer_norm_eps"]),
        final_layer_norm_eps=FIXED["final_layer_norm_eps"],
        upscale_norm_eps=FIXED["upscale_norm_eps"],
    )


def derive_config(upstream: Mapping[str, Any]) -> SegmentAnythingConfig:
    """Our config from a transformers `SamConfig` (the content of its `config.json`).

    Raises:
        ConfigError: A field asks for a variant this model does not build (another activation, no
            relative or absolute positions, positional features that do not fit the prompt width,
            inconsistent sizes); the message names the field.
    """
    vision = _part(upstream, "vision_config", VISION_DEFAULTS)
    prompt = _part(upstream, "prompt_encoder_config", PROMPT_DEFAULTS)
    decoder = _part(upstream, "mask_decoder_config", DECODER_DEFAULTS)
    if 2 * int(vision["num_pos_feats"]) != int(prompt["hidden_size"]):
        raise _fail("vision_config.num_pos_feats", vision["num_pos_feats"], "must be half the prompt width")
    try:
        return SegmentAnythingConfig(_image_encoder(vision), _prompt_encoder(prompt), _mask_decoder(decoder))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"SamConfig is inconsistent: {error}") from error


def _check_fixed(config: SegmentAnythingConfig) -> None:
    ours = {
        "final_layer_norm_eps": config.mask_decoder.final_layer_norm_eps,
        "upscale_norm_eps": config.mask_decoder.upscale_norm_eps,
        "neck_norm_eps": config.image_encoder.neck_norm_eps,
        "hypernetwork_depth": config.mask_decoder.hypernetwork_depth,
    }
    for field, value in ours.items():
        if value != FIXED[field]:
            raise ConfigError(f"{field}={value}: transformers' SamModel always uses {FIXED[field]}")


def upstream_config(config: SegmentAnythingConfig) -> dict[str, Any]:
    """The transformers `SamConfig` (as a dict) that builds the same model.

    Raises:
        ConfigError: The config needs a number transformers hard-codes otherwise.
    """
    _check_fixed(config)
    encoder, prompt, decoder = config.image_encoder, config.prompt_encoder, config.mask_decoder
    vision = {
        "hidden_size": encoder.embed_dim,
        "output_channels": encoder.out_channels,
        "num_hidden_layers": encoder.depth,
        "num_attention_heads": encoder.num_heads,
        "num_channels": encoder.in_channels,
        "image_size": encoder.image_size,
        "patch_size": encoder.patch_size,
        "layer_norm_eps": encoder.layer_norm_eps,
        "qkv_bias": encoder.qkv_bias,
        "window_size": encoder.window_size,
        "global_attn_indexes": list(encoder.global_attention_blocks),
        "num_pos_feats": prompt.embed_dim // 2,
        "mlp_dim": encoder.mlp_dim,
    }
    prompt_part = {
        "hidden_size": prompt.embed_dim,
        "image_size": prompt.image_size,
        "patch_size": prompt.image_size // prompt.embedding_size,
        "mask_input_channels": prompt.mask_channels,
        "layer_norm_eps": prompt.layer_norm_eps,
    }
    decoder_part = {
        "hidden_size": decoder.embed_dim,
        "mlp_dim": decoder.mlp_dim,
        "num_hidden_layers": decoder.depth,
        "num_attention_heads": decoder.num_heads,
        "attention_downsample_rate": decoder.attention_downsample_rate,
        "num_multimask_outputs": decoder.num_multimask_outputs,
        "iou_head_depth": decoder.iou_head_depth,
        "iou_head_hidden_dim": decoder.iou_head_hidden_dim,
        "layer_norm_eps": decoder.layer_norm_eps,
    }
    return {
        "vision_config": vision,
        "prompt_encoder_config": prompt_part,
        "mask_decoder_config": decoder_part,
    }


__all__ = [
    "DECODER_DEFAULTS",
    "FIXED",
    "PROMPT_DEFAULTS",
    "VISION_DEFAULTS",
    "derive_config",
    "upstream_config",
]
