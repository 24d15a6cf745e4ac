"""CLIP text towers of an original single-file checkpoint: configs from shapes, layouts.

SD 1.x files hold CLIP-L under transformers' names (`cond_stage_model.transformer.*`); SDXL files hold
CLIP-L the same way and OpenCLIP bigG in OpenCLIP's layout (fused `in_proj_weight`, transposed
`text_projection`). `to_upstream` is diffusers' own conversion of each, recorded on meta.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from converters._single_file.shapes import ShapeReader, owned
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.stable_diffusion.clip_text import POSITION_IDS_REASON
from converters.stable_diffusion.original_names import LOGIT_SCALE_REASON

# The Hub configs of CLIP text towers in SD pipelines carry the legacy token ids (transformers then
# pools at the highest token id, the end-of-text token).
_LEGACY_TOKEN_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}


@dataclass(frozen=True)
class TextTowerFamily:
    """What a CLIP text tower's shapes do not show.

    Attributes:
        name: For messages ("CLIP-L").
        hidden_act: The MLP activation.
        head_dim: Channels per attention head (64 in OpenAI CLIP and OpenCLIP: heads = width // 64).
        layer_norm_eps: Layer-norm epsilon.
    """

    name: str
    hidden_act: str
    head_dim: int = 64
    layer_norm_eps: float = 1e-5


CLIP_L = TextTowerFamily("CLIP-L", hidden_act="quick_gelu")
OPENCLIP_BIGG = TextTowerFamily("OpenCLIP bigG", hidden_act="gelu")


def _tower_config(
    s: ShapeReader, family: TextTowerFamily, names: Mapping[str, str], projection_dim: int | None
) -> dict[str, Any]:
    vocab, hidden = s(names["token_embedding"])
    if hidden % family.head_dim:
        raise s.fail(names["token_embedding"], f"width {hidden} is not a multiple of {family.head_dim}")
    return {
        "architectures": ["CLIPTextModel" if projection_dim is None else "CLIPTextModelWithProjection"],
        "model_type": "clip_text_model",
        "vocab_size": vocab,
        "max_position_embeddings": s(names["position_embedding"])[0],
        "hidden_size": hidden,
        "num_hidden_layers": s.count(names["layers"]),
        "num_attention_heads": hidden // family.head_dim,
        "intermediate_size": s(names["fc1"])[0],
        "hidden_act": family.hidden_act,
        "layer_norm_eps": family.layer_norm_eps,
        "projection_dim": hidden if projection_dim is None else projection_dim,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        **_LEGACY_TOKEN_IDS,
    }


def clip_text_config(shapes: Mapping[str, Shape], prefix: str, family: TextTowerFamily) -> dict[str, Any]:
    """The transformers `CLIPTextModel` config of a tower in transformers' layout, from its shapes."""
    s = ShapeReader(shapes, prefix, f"{family.name} text encoder")
    tower = "text_model." if s.has("text_model.embeddings.token_embedding.weight") else ""
    names = {
        "token_embedding": f"{tower}embeddings.token_embedding.weight",
        "position_embedding": f"{tower}embeddings.position_embedding.weight",
        "layers": rf"{re.escape(tower)}encoder\.layers\.(\d+)\.",
        "fc1": f"{tower}encoder.layers.0.mlp.fc1.weight",
    }
    return _tower_config(s, family, names, projection_dim=None)


def open_clip_text_config(
    shapes: Mapping[str, Shape], prefix: str, family: TextTowerFamily
) -> dict[str, Any]:
    """The transformers `CLIPTextModelWithProjection` config of an OpenCLIP text tower, from its shapes."""
    s = ShapeReader(shapes, prefix, f"{family.name} text encoder")
    names = {
        "token_embedding": "token_embedding.weight",
        "position_embedding": "positional_embedding",
        "layers": r"transformer\.resblocks\.(\d+)\.",
        "fc1": "transformer.resblocks.0.mlp.c_fc.weight",
    }
    _, projection_dim = s("text_projection")  # stored (width, projection_dim), applied as x @ P
    return _tower_config(s, family, names, projection_dim=projection_dim)


def _meta_text_model(config: Mapping[str, Any]) -> nn.Module:
    """The transformers model a config names, on meta (diffusers' OpenCLIP conversion asks for one)."""
    import transformers

    (architecture,) = config["architectures"]
    model_class = getattr(transformers, architecture)
    with torch.device("meta"):
        return model_class(transformers.CLIPTextConfig.from_dict(dict(config)))


def _model_names(model: nn.Module, converted: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """diffusers names towers `text_model.*`; transformers 5 flattened `CLIPTextModel` (as diffusers does)."""
    flat = not hasattr(model, "text_model")
    return {prefix + (key.removeprefix("text_model.") if flat else key): v for key, v in converted.items()}


def _clip_to_upstream(
    subfolder: str, model_prefix: str
) -> Callable[[Mapping[str, Any], UpstreamConfigs], dict[str, Any]]:
    def convert(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
        from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

        converted = convert_ldm_clip_checkpoint(dict(tensors))
        return _model_names(_meta_text_model(configs[subfolder]), converted, model_prefix)

    return convert


def _open_clip_to_upstream(
    subfolder: str, file_prefix: str, model_prefix: str
) -> Callable[[Mapping[str, Any], UpstreamConfigs], dict[str, Any]]:
    def convert(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
        from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

        model = _meta_text_model(configs[subfolder])
        converted = convert_open_clip_checkpoint(model, dict(tensors), prefix=file_prefix)
        return _model_names(model, converted, model_prefix)

    return convert


def clip_text_layout(
    prefix: str, family: TextTowerFamily = CLIP_L, subfolder: str = "text_encoder"
) -> SingleFileLayout:
    """One CLIP text tower stored under transformers' names below `prefix`."""
    return SingleFileLayout(
        prefixes=(prefix,),
        to_upstream=_clip_to_upstream(subfolder, model_prefix=""),
        upstream_configs=lambda shapes: {subfolder: clip_text_config(shapes, prefix, family)},
        ignored={f"{prefix}*position_ids": POSITION_IDS_REASON},
    )


def two_tower_text_layout(
    clip_prefix: str,
    open_clip_prefix: str,
    clip: TextTowerFamily = CLIP_L,
    open_clip: TextTowerFamily = OPENCLIP_BIGG,
    subfolders: tuple[str, str] = ("text_encoder", "text_encoder_2"),
) -> SingleFileLayout:
    """Two towers: CLIP-L (transformers names) and OpenCLIP bigG, as `text_encoder.*` / `text_encoder_2.*`."""
    first, second = subfolders
    convert_first = _clip_to_upstream(first, model_prefix=f"{first}.")
    convert_second = _open_clip_to_upstream(second, open_clip_prefix, model_prefix=f"{second}.")

    def to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
        return convert_first(owned(tensors, clip_prefix), configs) | convert_second(
            owned(tensors, open_clip_prefix), configs
        )

    def upstream_configs(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Any]]:
        return {
            first: clip_text_config(shapes, clip_prefix, clip),
            second: open_clip_text_config(shapes, open_clip_prefix, open_clip),
        }

    return SingleFileLayout(
        prefixes=(clip_prefix, open_clip_prefix),
        to_upstream=to_upstream,
        upstream_configs=upstream_configs,
        ignored={
            f"{clip_prefix}*position_ids": POSITION_IDS_REASON,
            f"{open_clip_prefix}logit_scale": LOGIT_SCALE_REASON,
        },
    )


__all__ = [
    "CLIP_L",
    "OPENCLIP_BIGG",
    "TextTowerFamily",
    "clip_text_config",
    "clip_text_layout",
    "open_clip_text_config",
    "two_tower_text_layout",
]
