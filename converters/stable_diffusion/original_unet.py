"""The UNet of an original single-file checkpoint (`model.diffusion_model.*`): config from shapes, layout.

The shapes fix almost everything; what they do not show (head size or head count, projection kind,
added conditioning, group-norm groups) is the family's, given as a `UNetFamily`. `to_upstream` is
diffusers' own `convert_ldm_unet_checkpoint`, recorded on meta and replayed per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from converters._single_file.shapes import ShapeReader
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.stable_diffusion.original_names import EMA_PREFIX, EMA_REASON, UNET_PREFIX

_TIME_IDS = 6  # SDXL's added conditioning embeds six time ids (sizes and crop)


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


@dataclass(frozen=True)
class _Level:
    blocks: list[int]  # input_blocks indices of the level's residual blocks
    channels: int
    attention: bool
    depth: int  # transformer blocks per attention (0 without attention)


def _unet_levels(s: ShapeReader) -> list[_Level]:
    """The down path: input block 0 is conv_in, then each level's blocks, a downsampler between levels."""
    groups: list[list[int]] = [[]]
    for index in range(1, s.count(r"input_blocks\.(\d+)\.")):
        if s.has(f"input_blocks.{index}.0.op.weight"):
            groups.append([])
        else:
            groups[-1].append(index)
    return [_unet_level(s, blocks) for blocks in groups]


def _unet_level(s: ShapeReader, blocks: list[int]) -> _Level:
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


def _per_level_heads(s: ShapeReader, levels: list[_Level], family: UNetFamily) -> int | list[int]:
    divisor = family.head_dim or family.num_heads
    assert divisor is not None, "a UNetFamily sets head_dim or num_heads"
    for level in levels:
        if level.channels % divisor:
            key = f"input_blocks.{level.blocks[0]}.0.out_layers.3.weight"
            raise s.fail(key, f"{level.channels} channels do not split into {family.name} heads ({divisor})")
    if family.head_dim is not None:
        return [level.channels // family.head_dim for level in levels]
    return divisor


def _transformer_depths(s: ShapeReader, levels: list[_Level]) -> int | list[int]:
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


def _added_conditioning(s: ShapeReader, family: UNetFamily, time_dim: int) -> dict[str, Any]:
    if family.addition_time_embed_dim is None:
        if s.has("label_emb.0.0.weight"):
            raise s.fail(
                "label_emb.0.0.weight", f"class or added conditioning, which {family.name} UNets lack"
            )
        return {"addition_embed_type": None}
    input_dim = s("label_emb.0.0.weight")
    if input_dim != (time_dim, input_dim[1]) or input_dim[1] <= _TIME_IDS * family.addition_time_embed_dim:
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
    s = ShapeReader(shapes, UNET_PREFIX, f"{family.name} UNet")
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


__all__ = ["UNetFamily", "unet_config", "unet_layout"]
