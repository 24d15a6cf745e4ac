"""SDXL's tiny twin: the upstream configs of `--synthetic tiny` sources and the tests.

It keeps what the single-file layout assumes (64-channel heads, 32 group-norm groups, the 256-wide
time-id embedding), so the same tiny pipeline also round-trips through the SGM single file.
"""

from __future__ import annotations

from typing import Any

from converters.stable_diffusion.tiny import CLIP_COMMON, CLIP_L, VAE

TINY: dict[str, dict[str, Any]] = {
    "unet": {
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [64, 128],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "transformer_layers_per_block": [1, 2],
        "attention_head_dim": [1, 2],
        "cross_attention_dim": 192,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 32 + 6 * 256,
        "norm_num_groups": 32,
        "sample_size": 32,  # 64 pixels with the tiny autoencoder: `zoo generate` draws small by default
    },
    "text_encoder": CLIP_L,
    "text_encoder_2": CLIP_COMMON
    | {
        "architectures": ["CLIPTextModelWithProjection"],
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "hidden_act": "gelu",
        "projection_dim": 32,
    },
    "vae": VAE | {"scaling_factor": 0.13025},
}

__all__ = ["TINY"]
