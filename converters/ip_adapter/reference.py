"""The upstream reference of an IP-Adapter: diffusers' modules, named as in a UNet with the adapter loaded.

diffusers has no IP-Adapter model of its own: `UNet2DConditionModel._load_ip_adapter_weights` builds an
image projection (`encoder_hid_proj.image_projection_layers.0`) and an `IPAdapterAttnProcessor2_0` per
cross-attention (`down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor`, holding
`to_k_ip.0` and `to_v_ip.0`). `IPAdapterReference` holds exactly those modules under exactly those
names, built from a config.json of our own schema (the part's upstream config):

    {"unet": <the UNet2DConditionModel config>,
     "image_projection": {"_class_name": "ImageProjection" | "IPAdapterPlusImageProjection"
                          | "IPAdapterFullImageProjection", <its constructor's arguments>},
     "num_tokens": <image tokens per image, as diffusers' loader gives its processors (257 for full-face)>}

Its forward runs them as the UNet does, in execution order (down blocks, middle block, up blocks): the
projection, then each processor's key and value projections of the image tokens. `save_pretrained`
writes that config and the tensors under the UNet's names: diffusers' own serialisation of the adapter.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from converters.stable_diffusion.unet import derive_unet_config
from zoo.errors import ConfigError
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapter, IPAdapterConfig, ProjectionKind

SUBFOLDER = "ip_adapter"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PROJECTION_PREFIX = "encoder_hid_proj.image_projection_layers.0."
KEY_PROJECTION = "to_k_ip.0.weight"
VALUE_PROJECTION = "to_v_ip.0.weight"
CROSS_ATTENTION = "attn2.processor"
EXECUTION_ORDER = ("down_blocks", "mid_block", "up_blocks")
EXAMPLE_BATCH = 2
EXAMPLE_POSITIONS = 5  # hidden states of a 28×28 image in 14×14 patches: class token + 4
SYNTHETIC_NOISE = 0.1  # added to every weight of a synthetic reference, so norms are not identities

# Our projection kinds and diffusers' classes (`diffusers/models/embeddings.py`).
PROJECTION_CLASSES: dict[str, ProjectionKind] = {
    "ImageProjection": "base",
    "IPAdapterPlusImageProjection": "plus",
    "IPAdapterFullImageProjection": "full_face",
}


# -- configs ---------------------------------------------------------------------------------------


def projection_config(config: IPAdapterConfig) -> dict[str, Any]:
    """The `image_projection` entry of the upstream config: diffusers' class and its arguments."""
    if config.kind == "base":
        return {
            "_class_name": "ImageProjection",
            "image_embed_dim": config.image_embedding_dim,
            "cross_attention_dim": config.cross_attention_dim,
            "num_image_text_embeds": config.num_tokens,
        }
    if config.kind == "full_face":
        return {
            "_class_name": "IPAdapterFullImageProjection",
            "image_embed_dim": config.image_embedding_dim,
            "cross_attention_dim": config.cross_attention_dim,
        }
    return {
        "_class_name": "IPAdapterPlusImageProjection",
        "embed_dims": config.image_embedding_dim,
        "output_dims": config.cross_attention_dim,
        "hidden_dims": config.resampler_dim,
        "depth": config.resampler_depth,
        "dim_head": config.resampler_head_dim,
        "heads": config.resampler_dim // config.resampler_head_dim,
        "num_queries": config.num_tokens,
        "ffn_ratio": config.resampler_ff_multiplier,
    }


def upstream_config(unet: Mapping[str, Any], config: IPAdapterConfig) -> dict[str, Any]:
    """The part's config.json for an IP-Adapter of `config` on a UNet of (diffusers) config `unet`."""
    return {
        "unet": dict(unet),
        "image_projection": projection_config(config),
        "num_tokens": config.num_tokens,
    }


def derive_ip_adapter_config(upstream: Mapping[str, Any]) -> IPAdapterConfig:
    """Our config from the upstream config (UNet config, image projection, token count).

    Raises:
        ConfigError: An unknown projection class, or widths and counts that do not agree.
    """
    unet = derive_unet_config(upstream["unet"])
    projection = dict(upstream["image_projection"])
    kind = PROJECTION_CLASSES.get(projection.pop("_class_name", None))  # pyright: ignore[reportArgumentType]
    if kind is None:
        raise ConfigError(f"unknown image projection {upstream['image_projection'].get('_class_name')!r}")
    fields = _our_fields(kind, projection, upstream["num_tokens"])
    width = fields.pop("cross_attention_dim")
    if width != unet.cross_attention_dim:
        raise ConfigError(
            f"the image projection makes {width}-wide tokens, the UNet's cross-attentions read "
            f"{unet.cross_attention_dim}-wide embeddings"
        )
    if fields["num_tokens"] != upstream["num_tokens"]:
        raise ConfigError(
            f"the image projection makes {fields['num_tokens']} tokens, not {upstream['num_tokens']}"
        )
    return IPAdapterConfig.for_unet(unet, kind=kind, **fields)


def _our_fields(kind: ProjectionKind, projection: Mapping[str, Any], tokens: int) -> dict[str, Any]:
    if kind == "base":
        return {
            "image_embedding_dim": projection["image_embed_dim"],
            "cross_attention_dim": projection["cross_attention_dim"],
            "num_tokens": projection["num_image_text_embeds"],
        }
    if kind == "full_face":
        return {
            "image_embedding_dim": projection["image_embed_dim"],
            "cross_attention_dim": projection["cross_attention_dim"],
            "num_tokens": tokens,
        }
    if projection["hidden_dims"] != projection["heads"] * projection["dim_head"]:
        raise ConfigError("IPAdapterPlusImageProjection: hidden_dims is not heads × dim_head")
    return {
        "image_embedding_dim": projection["embed_dims"],
        "cross_attention_dim": projection["output_dims"],
        "num_tokens": projection["num_queries"],
        "resampler_dim": projection["hidden_dims"],
        "resampler_depth": projection["depth"],
        "resampler_head_dim": projection["dim_head"],
        "resampler_ff_multiplier": projection["ffn_ratio"],
    }


# -- the UNet's cross-attention processors ---------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _processors(unet_json: str) -> tuple[tuple[str, int], ...]:
    """(processor name, key/value channels) of each cross-attention, in diffusers' registration order."""
    with torch.device("meta"):
        unet = diffusers_unet(json.loads(unet_json))
    names = [name for name in unet.attn_processors if name.endswith(CROSS_ATTENTION)]
    return tuple((name, _key_channels(unet, name)) for name in names)


def _key_channels(unet: nn.Module, processor: str) -> int:
    attention: Any = unet.get_submodule(processor.removesuffix(".processor"))
    return attention.to_k.out_features


def diffusers_unet(config: Mapping[str, Any]) -> Any:
    """diffusers' `UNet2DConditionModel` for a config (on the current default device)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    return UNet2DConditionModel.from_config(dict(config))


def cross_attention_processors(unet: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """(processor name, channels) of each cross-attention of a UNet config, in diffusers' registration
    order (down, up, middle blocks): the order the original files number them in, `ip_adapter.<2i+1>`."""
    return _processors(json.dumps(dict(unet), sort_keys=True))


def in_execution_order(names: list[str]) -> list[str]:
    """Processor names in the order a forward runs them: down blocks, middle block, up blocks."""
    return sorted(names, key=lambda name: EXECUTION_ORDER.index(name.split(".", 1)[0]))


# -- the reference ---------------------------------------------------------------------------------


class IPAdapterReference(nn.Module):
    """diffusers' IP-Adapter modules under the names a UNet gives them (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
        from diffusers.models.embeddings import MultiIPAdapterImageProjection

        super().__init__()
        self.upstream_config = dict(config)
        projection = _diffusers_projection(config["image_projection"])
        self.encoder_hid_proj = MultiIPAdapterImageProjection([projection])
        tokens = config["num_tokens"]
        width = projection_width(config["image_projection"])
        processors = cross_attention_processors(config["unet"])
        for name, channels in processors:
            _place(self, name, IPAdapterAttnProcessor2_0(channels, width, num_tokens=[tokens], scale=1.0))
        self.run_order = in_execution_order([name for name, _ in processors])

    def forward(
        self, image_feature: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
        """The image tokens of one image per sample, then each cross-attention's (keys, values)."""
        tokens = self.encoder_hid_proj([image_feature[:, None]])[0][:, 0]
        pairs = []
        for name in self.run_order:
            processor: Any = self.get_submodule(name)
            pairs.append((processor.to_k_ip[0](tokens), processor.to_v_ip[0](tokens)))
        return tokens, tuple(pairs)

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json and the weights under the UNet's names (diffusers' serialisation of the adapter)."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.upstream_config, indent=2, sort_keys=True) + "\n")
        state = {key: tensor.detach().contiguous() for key, tensor in self.state_dict().items()}
        save_file(state, path / WEIGHTS_NAME, metadata={"format": "pt"})


def _diffusers_projection(projection: Mapping[str, Any]) -> nn.Module:
    from diffusers.models import embeddings

    arguments = {key: value for key, value in projection.items() if key != "_class_name"}
    return getattr(embeddings, projection["_class_name"])(**arguments)


def projection_width(projection: Mapping[str, Any]) -> int:
    """Width of the tokens an image projection makes."""
    return projection.get("output_dims") or projection["cross_attention_dim"]


def _place(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` at the dotted `name` below `root`, making empty modules for the path."""
    *path, last = name.split(".")
    node = root
    for part in path:
        if not hasattr(node, part):
            node.add_module(part, nn.Module())
        node = getattr(node, part)
    node.add_module(last, module)


def build_reference(config: dict[str, Any]) -> nn.Module:
    """The reference for an upstream config, with seeded noise on every weight (free on meta)."""
    reference = IPAdapterReference(config)
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.device.type != "meta":  # nothing to perturb, and slow to pretend
                parameter.add_(torch.randn_like(parameter), alpha=SYNTHETIC_NOISE)
    return reference.eval()


# -- inputs and runs -------------------------------------------------------------------------------


def example_feature(
    config: IPAdapterConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Seeded image features: (B, D) embeddings for `base`, (B, positions, D) hidden states otherwise."""
    positions = config.num_tokens if config.kind == "full_face" else EXAMPLE_POSITIONS
    shape = (EXAMPLE_BATCH, config.image_embedding_dim)
    if config.reads_hidden_states:
        shape = (EXAMPLE_BATCH, positions, config.image_embedding_dim)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def run_ip_adapter(model: nn.Module, feature: torch.Tensor) -> Any:
    """Our IP-Adapter's tokens and keys and values (the reference's forward gives the same structure)."""
    if not isinstance(model, IPAdapter):
        raise TypeError(f"expected an IPAdapter, got {type(model).__name__}")
    return model(feature)


def parameter_count(config: Mapping[str, Any]) -> int:
    """Values in the reference for an upstream config (built on meta)."""
    with torch.device("meta"):
        return sum(math.prod(p.shape) for p in IPAdapterReference(config).parameters())


__all__ = [
    "PROJECTION_PREFIX",
    "SUBFOLDER",
    "IPAdapterReference",
    "build_reference",
    "cross_attention_processors",
    "derive_ip_adapter_config",
    "diffusers_unet",
    "example_feature",
    "in_execution_order",
    "parameter_count",
    "projection_config",
    "projection_width",
    "run_ip_adapter",
    "upstream_config",
]
