"""Variants of the families convert too: the target config comes from the source's config.json.

Tiny stand-ins for the SDXL refiner (4 levels, uniform transformer depth, 5 time ids' worth of added
conditioning, no text encoder 1), a distilled SDXL UNet with fewer blocks, and an SD 1.5 inpainting
fine-tune (9 input channels, other channel counts). Each is saved with diffusers' `save_pretrained`,
converted, and run against diffusers on the same inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from converters import registry
from converters._convert.by_name import convert
from converters._convert.sources import resolve_source
from converters._verify.parity import measure_parity

REFINER_LIKE = {
    "block_out_channels": [32, 64, 64, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "transformer_layers_per_block": 4,
    "attention_head_dim": [1, 2, 2, 2],
    "cross_attention_dim": 48,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 48 + 5 * 8,
    "norm_num_groups": 8,
}
DISTILLED_SDXL = {
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1, 2],
    "attention_head_dim": [1, 2, 2],
    "cross_attention_dim": 64,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 16,
    "projection_class_embeddings_input_dim": 32 + 6 * 16,
    "norm_num_groups": 16,
}
SD15_INPAINTING = {
    "in_channels": 9,
    "block_out_channels": [48, 96],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "cross_attention_dim": 40,
    "use_linear_projection": False,
    "norm_num_groups": 16,
}


def _save_unet(folder: Path, config: dict[str, Any]) -> Path:
    import diffusers

    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(**config).save_pretrained(folder / "unet")
    return folder


@pytest.mark.parametrize(
    ("name", "config"),
    [("sdxl.unet", REFINER_LIKE), ("sdxl.unet", DISTILLED_SDXL), ("sd15.unet", SD15_INPAINTING)],
    ids=["sdxl-refiner-like", "sdxl-distilled", "sd15-inpainting"],
)
def test_variant_converts_with_parity(tmp_path: Path, name: str, config: dict[str, Any]) -> None:
    source = _save_unet(tmp_path / "source", config)
    run = convert(name, out=tmp_path / "out", source=str(source))
    conversion = registry.resolve(name)[0]
    parity = measure_parity(conversion, resolve_source(conversion, source), run.results[0].folder)
    assert parity.max_relative_error <= 1e-5
    model = zoo.load(str(run.results[0].folder))
    assert run.results[0].params == sum(p.numel() for p in model.parameters())  # pyright: ignore[reportAttributeAccessIssue]
