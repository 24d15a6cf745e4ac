"""Where each component sits in an original single-file checkpoint, and how it becomes upstream tensors.

Stability's original checkpoints hold a whole pipeline in one file, under the names of their training
code. SDXL's use the SGM layout (`model.diffusion_model.*`, `conditioner.embedders.0.transformer.*`:
CLIP-L under transformers names, `conditioner.embedders.1.model.*`: OpenCLIP bigG with fused
`in_proj_weight` and a transposed `text_projection`, `first_stage_model.*`); SD 1.5's the LDM layout
(`model.diffusion_model.*`, `cond_stage_model.transformer.*`, `first_stage_model.*`).

Each component gets a `SingleFileLayout`:
- `to_upstream` is diffusers' own single-file conversion (`convert_ldm_unet_checkpoint`,
  `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`), which
  `converters.single_file` runs once on recorded meta tensors and replays tensor by tensor, so the
  mapping is exactly diffusers';
- `upstream_configs` derives the diffusers / transformers configs from the file's shapes, plus the
  family constants no shape shows (head size or head count, group-norm groups, scaling factor), taken
  from the original training configs and the Hub's `config.json` files: see `UNetFamily`,
  `AutoencoderFamily` and `TextTowerFamily`. A shape pattern these cannot describe is a `ConfigError`
  naming the key.

Ready-made layouts: `SDXL_UNET_LAYOUT`, `SDXL_TEXT_ENCODER_LAYOUT`, `SDXL_AUTOENCODER_LAYOUT`,
`SD15_UNET_LAYOUT`, `SD15_TEXT_ENCODER_LAYOUT`, `SD15_AUTOENCODER_LAYOUT`; the factories build variants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.derive.clip import POSITION_IDS_REASON
from zoo.errors import ConfigError

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

EMA_REASON = (
    "EMA copy of the UNet weights: like diffusers (extract_ema=False), zoo converts the non-EMA "
    "`model.diffusion_model.*` weights"
)
LOGIT_SCALE_REASON = (
    "OpenCLIP's temperature of the image-text contrastive loss: the text tower does not use it "
    "(diffusers drops it too)"
)

# The Hub configs of CLIP text towers in SD pipelines carry the legacy token ids (transformers then
# pools at the highest token id, the end-of-text token).
_LEGACY_TOKEN_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
_SDXL_TIME_IDS = 6
_V = TypeVar("_V")


# -- which original file is this? ------------------------------------------------------------------


@dataclass(frozen=True)
class SingleFileKind:
    """A kind of original single file, recognised by a key prefix only its files have.

    Attributes:
        family: Our family name when we declare conversions for it, else None.
        description: For messages ("an SD 1.x checkpoint (LDM layout)").
        marker: The key prefix that identifies it.
    """

    family: str | None
    description: str
    marker: str


SINGLE_FILE_KINDS = (
    SingleFileKind("sdxl", "an SDXL base checkpoint (SGM layout)", SDXL_OPENCLIP_PREFIX),
    SingleFileKind(None, "an SDXL refiner checkpoint (SGM layout)", "conditioner.embedders.0.model."),
    SingleFileKind("sd15", "an SD 1.x checkpoint (LDM layout)", SD15_CLIP_PREFIX),
    SingleFileKind(
        None, "an SD 2.x checkpoint (LDM layout, OpenCLIP text encoder)", "cond_stage_model.model."
    ),
)


def identify_single_file(keys: Iterable[str]) -> SingleFileKind | None:
    """The kind of original single file these keys come from, or None if they match none."""
    keys = list(keys)
    for kind in SINGLE_FILE_KINDS:
        if any(key.startswith(kind.marker) for key in keys):
            return kind
    return None


def expected_kind(family: str) -> SingleFileKind | None:
    """The kind of single file a family's conversions read."""
    return next((kind for kind in SINGLE_FILE_KINDS if kind.family == family), None)


# -- reading shapes ---------------------------------------------------------------------------------


class _Shapes:
    """A component's shapes under one key prefix; errors name the full key."""

    def __init__(self, shapes: Mapping[str, Shape], prefix: str, what: str) -> None:
        self.shapes = shapes
        self.prefix = prefix
        self.what = what

    def __call__(self, name: str) -> Shape:
        key = self.prefix + name
        if key not in self.shapes:
            raise self.fail(name, "missing, and every such checkpoint has it")
        return tuple(self.shapes[key])

    def has(self, name: str) -> bool:
        return self.prefix + name in self.shapes

    def count(self, pattern: str) -> int:
        """How many consecutive indices from 0 the `(\\d+)` in `pattern` takes over the keys."""
        regex = re.compile(re.escape(self.prefix) + pattern)
        indices = sorted({int(m[1]) for key in self.shapes if (m := regex.match(key))})
        if indices != list(range(len(indices))):
            missing = next(i for i in range(len(indices) + 1) if i not in indices)
            where = pattern.replace(r"(\d+)", str(missing)).replace("\\", "")
            raise self.fail(where, f"missing, but indices {indices} are present")
        return len(indices)

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(
            f"unsupported {self.what} in the single file: {why}",
            tensor=self.prefix + name,
            hint="this checkpoint is not one this conversion supports",
        )


def _owned(values: Mapping[str, _V], prefix: str) -> dict[str, _V]:
    return {key: value for key, value in values.items() if key.startswith(prefix)}


# -- UNet -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetFamily:
    """What an original UNet's shapes do not show, fixed by its family's original config.

    Attributes:
        name: For messages ("SDXL").
        head_dim: Channels per attention head (SGM's `num_head_channels`): the heads of a level are its
            channels // head_dim. Exactly one of `head_dim` and `num_heads` is set.
        num_heads: Heads at every level (LDM's `num_heads`).
        linear_projection: Whether the transformers project in and out with linear layers (else with
            1×1 convolutions); a file with the other kind is refused.
        addition_time_embed_dim: Width of each embedded SDXL time id, when the family has added
            text/time conditioning (then `label_emb` is required), else None (then it is refused).
        sample_size: The latent size the Hub config names (it changes no weight).
        norm_groups: Group-norm groups (hard-coded 32 in the original code).
        norm_eps: Group-norm epsilon.
    """

    name: str
    head_dim: int | None
    num_heads: int | None
    linear_projection: bool
    addition_time_embed_dim: int | None
    sample_size: int
    norm_groups: int = 32
    norm_eps: float = 1e-5


SDXL_UNET = UNetFamily(
    "SDXL", head_dim=64, num_heads=None, linear_projection=True, addition_time_embed_dim=256, sample_size=128
)
SD15_UNET = UNetFamily(
    "SD 1.5",
    head_dim=None,
    num_heads=8,
    linear_projection=False,
    addition_time_embed_dim=None,
    sample_size=64,
)


@dataclass(frozen=True)
class _Level:
    blocks: list[int]  # input_blocks indices of the level's residual blocks
    channels: int
    attention: bool
    depth: int  # transformer blocks per attention (0 without attention)


def _unet_levels(s: _Shapes) -> list[_Level]:
    """The down path: input block 0 is conv_in, then each level's blocks, a downsampler between levels."""
    groups: list[list[int]] = [[]]
    for index in range(1, s.count(r"input_blocks\.(\d+)\.")):
        if s.has(f"input_blocks.{index}.0.op.weight"):
            groups.append([])
        else:
            groups[-1].append(index)
    return [_unet_level(s, blocks) for blocks in groups]


def _unet_level(s: _Shapes, blocks: list[int]) -> _Level:
    if not blocks:
        raise s.fail("input_blocks", "a level without residual blocks (two downsamplers in a row)")
    first = blocks[0]
    attentions = {s.has(f"input_blocks.{i}.1.proj_in.weight") for i in blocks}
    if len(attentions) > 1:
        raise s.fail(f"input_blocks.{first}.1", "some residual blocks of a level have attention, some not")
    attention = attentions.pop()
    depth = s.count(rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\.") if attention else 0
    channels = s(f"input_blocks.{first}.0.out_layers.3.weight")[0]
    return _Level(blocks, channels, attention, depth)


def _per_level_heads(s: _Shapes, levels: list[_Level], family: UNetFamily) -> int | list[int]:
    divisor = family.head_dim or family.num_heads
    assert divisor is not None, "a UNetFamily sets head_dim or num_heads"
    for level in levels:
        if level.channels % divisor:
            key = f"input_blocks.{level.blocks[0]}.0.out_layers.3.weight"
            raise s.fail(key, f"{level.channels} channels do not split into {family.name} heads ({divisor})")
    if family.head_dim is not None:
        return [level.channels // family.head_dim for level in levels]
    return divisor


def _transformer_depths(s: _Shapes, levels: list[_Level]) -> int | list[int]:
    """Per level; diffusers' mid block takes the last level's, so a last level without attention holds it."""
    mid = s.count(r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    if mid == 0:
        raise s.fail("middle_block.1.transformer_blocks.0", "missing: the middle block has no transformer")
    depths = [level.depth if level.attention else 1 for level in levels]
    if levels[-1].attention and levels[-1].depth != mid:
        raise s.fail(
            "middle_block.1.transformer_blocks",
            f"middle-block depth {mid} differs from the last level's {levels[-1].depth} (diffusers ties them)",
        )
    depths[-1] = mid
    return depths[0] if len(set(depths)) == 1 else depths


def _added_conditioning(s: _Shapes, family: UNetFamily, time_dim: int) -> dict[str, Any]:
    if family.addition_time_embed_dim is None:
        if s.has("label_emb.0.0.weight"):
            raise s.fail(
                "label_emb.0.0.weight", f"class or added conditioning, which {family.name} UNets lack"
            )
        return {"addition_embed_type": None}
    input_dim = s("label_emb.0.0.weight")
    if (
        input_dim != (time_dim, input_dim[1])
        or input_dim[1] <= _SDXL_TIME_IDS * family.addition_time_embed_dim
    ):
        raise s.fail("label_emb.0.0.weight", f"shape {input_dim} is not {family.name}'s added conditioning")
    return {
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": family.addition_time_embed_dim,
        "projection_class_embeddings_input_dim": input_dim[1],
    }


def unet_config(shapes: Mapping[str, Shape], family: UNetFamily) -> dict[str, Any]:
    """The diffusers `UNet2DConditionModel` config of an original UNet, from its shapes.

    Raises:
        ConfigError: The shapes describe something this family's UNet cannot be (levels of different
            depths, another projection kind, conditioning the family lacks, missing tensors); the error
            names the key.
    """
    s = _Shapes(shapes, UNET_PREFIX, f"{family.name} UNet")
    in_channels = s("input_blocks.0.0.weight")[1]
    levels = _unet_levels(s)
    blocks_per_level = {len(level.blocks) for level in levels}
    if len(blocks_per_level) > 1:
        raise s.fail("input_blocks", f"levels hold different numbers of residual blocks: {blocks_per_level}")
    projection = s("middle_block.1.proj_in.weight")
    if (len(projection) == 2) != family.linear_projection:
        kind = "linear" if family.linear_projection else "1×1 convolution"
        raise s.fail(
            "middle_block.1.proj_in.weight", f"shape {projection}, but {family.name} uses {kind} projections"
        )
    channels = [level.channels for level in levels]
    time_dim, time_in = s("time_embed.0.weight")
    if time_in != channels[0]:
        raise s.fail(
            "time_embed.0.weight", f"input width {time_in} is not the first level's {channels[0]} channels"
        )
    config: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": family.sample_size,
        "in_channels": in_channels,
        "out_channels": s("out.2.weight")[0],
        "block_out_channels": channels,
        "down_block_types": [_down_block(level.attention) for level in levels],
        "up_block_types": [_down_block(level.attention).replace("Down", "Up") for level in reversed(levels)],
        "layers_per_block": blocks_per_level.pop(),
        "transformer_layers_per_block": _transformer_depths(s, levels),
        "attention_head_dim": _per_level_heads(s, levels, family),
        "cross_attention_dim": s("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1],
        "use_linear_projection": family.linear_projection,
        "norm_num_groups": family.norm_groups,
        "norm_eps": family.norm_eps,
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "upcast_attention": False,
        "time_embedding_dim": None if time_dim == 4 * channels[0] else time_dim,
    }
    return config | _added_conditioning(s, family, time_dim)


def _down_block(attention: bool) -> str:
    return "CrossAttnDownBlock2D" if attention else "DownBlock2D"


def unet_layout(family: UNetFamily, subfolder: str = "unet") -> SingleFileLayout:
    """The UNet under `model.diffusion_model.` (EMA weights under `model_ema.` are ignored)."""

    def to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> Mapping[str, Any]:
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

        return convert_ldm_unet_checkpoint(dict(tensors), dict(configs[subfolder]))

    return SingleFileLayout(
        prefixes=(UNET_PREFIX, EMA_PREFIX),
        to_upstream=to_upstream,
        upstream_configs=lambda shapes: {subfolder: unet_config(shapes, family)},
        ignored={f"{EMA_PREFIX}*": EMA_REASON},
    )


# -- autoencoder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderFamily:
    """What an original VAE's shapes do not show.

    Attributes:
        scaling_factor: Latent scaling of the family (its training config's `scale_factor`).
        sample_size: The image size the Hub config names (it changes no weight).
        norm_groups: Group-norm groups (hard-coded 32 in the original code).
        force_upcast: Whether diffusers runs it in float32 (True in both families' Hub configs).
    """

    scaling_factor: float
    sample_size: int
    norm_groups: int = 32
    force_upcast: bool = True


SDXL_AUTOENCODER = AutoencoderFamily(scaling_factor=0.13025, sample_size=1024)
SD15_AUTOENCODER = AutoencoderFamily(scaling_factor=0.18215, sample_size=512)


def autoencoder_config(shapes: Mapping[str, Shape], family: AutoencoderFamily) -> dict[str, Any]:
    """The diffusers `AutoencoderKL` config of an original VAE, from its shapes.

    Raises:
        ConfigError: Missing tensors, or levels of different depths; the error names the key.
    """
    s = _Shapes(shapes, VAE_PREFIX, "autoencoder")
    levels = s.count(r"encoder\.down\.(\d+)\.")
    if levels == 0:
        raise s.fail("encoder.down.0", "missing: the encoder has no level")
    depths = {s.count(rf"encoder\.down\.{level}\.block\.(\d+)\.") for level in range(levels)}
    if len(depths) > 1:
        raise s.fail("encoder.down", f"levels hold different numbers of residual blocks: {sorted(depths)}")
    channels = [s(f"encoder.down.{level}.block.0.conv1.weight")[0] for level in range(levels)]
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": s("encoder.conv_in.weight")[1],
        "out_channels": s("decoder.conv_out.weight")[0],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": channels,
        "layers_per_block": depths.pop(),
        "act_fn": "silu",
        "latent_channels": s("decoder.conv_in.weight")[1],
        "norm_num_groups": family.norm_groups,
        "sample_size": family.sample_size,
        "scaling_factor": family.scaling_factor,
        "force_upcast": family.force_upcast,
        "use_quant_conv": s.has("quant_conv.weight"),
        "use_post_quant_conv": s.has("post_quant_conv.weight"),
        "mid_block_add_attention": s.has("encoder.mid.attn_1.q.weight"),
    }


def autoencoder_layout(family: AutoencoderFamily, subfolder: str = "vae") -> SingleFileLayout:
    """The VAE under `first_stage_model.`."""

    def to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> Mapping[str, Any]:
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        return convert_ldm_vae_checkpoint(dict(tensors), dict(configs[subfolder]))

    return SingleFileLayout(
        prefixes=(VAE_PREFIX,),
        to_upstream=to_upstream,
        upstream_configs=lambda shapes: {subfolder: autoencoder_config(shapes, family)},
    )


# -- text encoders ----------------------------------------------------------------------------------


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
    s: _Shapes, family: TextTowerFamily, names: Mapping[str, str], projection_dim: int | None
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
    s = _Shapes(shapes, prefix, f"{family.name} text encoder")
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
    s = _Shapes(shapes, prefix, f"{family.name} text encoder")
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
    prefix: str = SD15_CLIP_PREFIX, family: TextTowerFamily = CLIP_L, subfolder: str = "text_encoder"
) -> SingleFileLayout:
    """One CLIP text tower stored under transformers' names (SD 1.5's `cond_stage_model.transformer.`)."""
    return SingleFileLayout(
        prefixes=(prefix,),
        to_upstream=_clip_to_upstream(subfolder, model_prefix=""),
        upstream_configs=lambda shapes: {subfolder: clip_text_config(shapes, prefix, family)},
        ignored={f"{prefix}*position_ids": POSITION_IDS_REASON},
    )


def sdxl_text_encoders_layout(
    clip: TextTowerFamily = CLIP_L,
    open_clip: TextTowerFamily = OPENCLIP_BIGG,
    subfolders: tuple[str, str] = ("text_encoder", "text_encoder_2"),
) -> SingleFileLayout:
    """SDXL's two towers: CLIP-L (transformers names) and OpenCLIP bigG, as `text_encoder.*` / `text_encoder_2.*`."""
    first, second = subfolders
    convert_first = _clip_to_upstream(first, model_prefix=f"{first}.")
    convert_second = _open_clip_to_upstream(second, SDXL_OPENCLIP_PREFIX, model_prefix=f"{second}.")

    def to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
        return convert_first(_owned(tensors, SDXL_CLIP_PREFIX), configs) | convert_second(
            _owned(tensors, SDXL_OPENCLIP_PREFIX), configs
        )

    def upstream_configs(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Any]]:
        return {
            first: clip_text_config(shapes, SDXL_CLIP_PREFIX, clip),
            second: open_clip_text_config(shapes, SDXL_OPENCLIP_PREFIX, open_clip),
        }

    return SingleFileLayout(
        prefixes=(SDXL_CLIP_PREFIX, SDXL_OPENCLIP_PREFIX),
        to_upstream=to_upstream,
        upstream_configs=upstream_configs,
        ignored={
            f"{SDXL_CLIP_PREFIX}*position_ids": POSITION_IDS_REASON,
            f"{SDXL_OPENCLIP_PREFIX}logit_scale": LOGIT_SCALE_REASON,
        },
    )


SDXL_UNET_LAYOUT = unet_layout(SDXL_UNET)
SDXL_TEXT_ENCODER_LAYOUT = sdxl_text_encoders_layout()
SDXL_AUTOENCODER_LAYOUT = autoencoder_layout(SDXL_AUTOENCODER)
SD15_UNET_LAYOUT = unet_layout(SD15_UNET)
SD15_TEXT_ENCODER_LAYOUT = clip_text_layout(SD15_CLIP_PREFIX, CLIP_L)
SD15_AUTOENCODER_LAYOUT = autoencoder_layout(SD15_AUTOENCODER)

__all__ = [
    "CLIP_L",
    "EMA_PREFIX",
    "OPENCLIP_BIGG",
    "SD15_AUTOENCODER",
    "SD15_AUTOENCODER_LAYOUT",
    "SD15_CLIP_PREFIX",
    "SD15_TEXT_ENCODER_LAYOUT",
    "SD15_UNET",
    "SD15_UNET_LAYOUT",
    "SDXL_AUTOENCODER",
    "SDXL_AUTOENCODER_LAYOUT",
    "SDXL_CLIP_PREFIX",
    "SDXL_OPENCLIP_PREFIX",
    "SDXL_TEXT_ENCODER_LAYOUT",
    "SDXL_UNET",
    "SDXL_UNET_LAYOUT",
    "SINGLE_FILE_KINDS",
    "UNET_PREFIX",
    "VAE_PREFIX",
    "AutoencoderFamily",
    "SingleFileKind",
    "TextTowerFamily",
    "UNetFamily",
    "autoencoder_config",
    "autoencoder_layout",
    "clip_text_config",
    "clip_text_layout",
    "expected_kind",
    "identify_single_file",
    "open_clip_text_config",
    "sdxl_text_encoders_layout",
    "unet_config",
    "unet_layout",
]
