"""References for the DINOv2 tests: original release files made from shapes alone, and the models
that read them as they are (timm's DINOv2, with its own `checkpoint_filter_fn`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.layers.mlp import SwiGLUPacked
from timm.models import create_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn
from transformers.models.hy_v4_vl.configuration_hy_v4_vl import HYV4VLVisionConfig
from transformers.models.hy_v4_vl.modeling_hy_v4_vl import HYV4VLVisionPatchEmbed

from zoo.foundationals.dinov2 import DINOv2Config

Shape = tuple[int, ...]
SCALE = 0.1  # spread of biases and norm weights around their usual values


def original_shapes(config: DINOv2Config) -> dict[str, Shape]:
    """The tensors of an original release file for `config`, as the original code names them."""
    d, f = config.hidden_size, config.feedforward_size
    shapes: dict[str, Shape] = {
        "cls_token": (1, 1, d),
        "mask_token": (1, d),
        "pos_embed": (1, 1 + config.grid_side**2, d),
        "patch_embed.proj.weight": (d, config.in_channels, config.patch_size, config.patch_size),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    if config.num_registers:
        shapes["register_tokens"] = (1, config.num_registers, d)
    mlp: dict[str, Any] = (
        {"w12": (2 * f, d), "w3": (d, f)}
        if config.feedforward == "swiglu"
        else {"fc1": (f, d), "fc2": (d, f)}
    )
    for index in range(config.num_layers):
        block = f"blocks.{index}."
        linears = {"attn.qkv": (3 * d, d), "attn.proj": (d, d), **{f"mlp.{k}": v for k, v in mlp.items()}}
        for name, (rows, columns) in linears.items():
            shapes |= {f"{block}{name}.weight": (rows, columns), f"{block}{name}.bias": (rows,)}
        for norm in ("norm1", "norm2"):
            shapes |= {f"{block}{norm}.weight": (d,), f"{block}{norm}.bias": (d,)}
        shapes |= {f"{block}ls1.gamma": (d,), f"{block}ls2.gamma": (d,)}
    return shapes


def _random(key: str, shape: Shape, generator: torch.Generator) -> torch.Tensor:
    """Weights scaled so activations stay O(1); position embeddings of std 1, so resizing them shows."""
    values = torch.randn(shape, generator=generator)
    if key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
        return 1 + SCALE * values
    if key.endswith((".bias", "gamma")):
        return SCALE * values
    if len(shape) >= 2 and key.endswith(".weight"):
        return values / math.prod(shape[1:]) ** 0.5  # by fan-in
    return values


def original_state_dict(config: DINOv2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random original release state dict."""
    generator = torch.Generator().manual_seed(seed)
    return {key: _random(key, shape, generator) for key, shape in original_shapes(config).items()}


def timm_dinov2(
    config: DINOv2Config, state: dict[str, torch.Tensor], image_size: tuple[int, int] | None = None
) -> VisionTransformer:
    """timm's DINOv2 for `config`, loaded from an original state dict by timm's own filter.

    Without `image_size` it takes any image size (resizing position embeddings as timm does: to the
    target size, antialiased); with it, only that size.
    """
    name = "vit_small_patch14_reg4_dinov2" if config.num_registers else "vit_small_patch14_dinov2"
    ratio = config.feedforward_size / config.hidden_size
    mlp: dict[str, Any] = (
        {"mlp_ratio": 2 * ratio, "mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}
        if config.feedforward == "swiglu"
        else {"mlp_ratio": ratio}
    )
    model = create_model(
        name,
        pretrained=False,
        img_size=image_size or config.image_size,
        dynamic_img_size=image_size is None,
        embed_dim=config.hidden_size,
        depth=config.num_layers,
        num_heads=config.num_heads,
        num_classes=0,
        **mlp,
    )
    assert isinstance(model, VisionTransformer)
    model.load_state_dict(checkpoint_filter_fn(dict(state), model))
    return model.eval()


def position_grid_with_offset(
    pos_embed: torch.Tensor, patch_size: int, grid: tuple[int, int]
) -> torch.Tensor:
    """(1, h·w, D) patch position embeddings resized by the scale factor (grid + 0.1) / trained grid.

    This is the original DINOv2 code's resize for its models without registers; it is computed here by
    an independent implementation of the same rule (transformers' HY-V4-VL vision embeddings).
    """
    side = round((pos_embed.shape[1] - 1) ** 0.5)
    vision = HYV4VLVisionConfig(
        hidden_size=pos_embed.shape[-1],
        patch_size=patch_size,
        max_image_size=side * patch_size,
        interpolate_mode="bicubic",
    )
    embed = HYV4VLVisionPatchEmbed(vision)
    with torch.no_grad():
        embed.position_embedding.weight.copy_(pos_embed[0])
        return embed.interpolate_pos_encoding(torch.zeros(0), grid[0], grid[1])


def timm_dinov2_original_resize(
    config: DINOv2Config, state: dict[str, torch.Tensor], image_size: tuple[int, int]
) -> VisionTransformer:
    """The original code's model without registers at one image size: timm's at that size, with the
    position embeddings resized by the original rule (`position_grid_with_offset`)."""
    model = timm_dinov2(config, state, image_size)
    grid = (image_size[0] // config.patch_size, image_size[1] // config.patch_size)
    patches = position_grid_with_offset(state["pos_embed"], config.patch_size, grid)
    assert model.pos_embed is not None
    with torch.no_grad():
        model.pos_embed.copy_(torch.cat((state["pos_embed"][:, :1], patches), dim=1))
    return model


__all__ = [
    "original_shapes",
    "original_state_dict",
    "position_grid_with_offset",
    "timm_dinov2",
    "timm_dinov2_original_resize",
]
