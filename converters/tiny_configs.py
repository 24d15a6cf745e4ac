"""Tiny upstream configs for synthetic sources (tests, the quick start, `--synthetic tiny`).

Small enough to convert in a second, yet they keep every constant that a single-file checkpoint's shapes
cannot show and the single-file layouts therefore assume (head size 64 for SDXL's UNet and CLIP towers,
8 heads for SD 1.5's UNet, 32 group-norm groups, SDXL's 256-wide time-id embedding), so the same tiny
pipeline also round-trips through the original single-file layouts.
"""

from __future__ import annotations

from typing import Any

CLIP_COMMON = {
    "model_type": "clip_text_model",
    "vocab_size": 99,
    "max_position_embeddings": 16,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
}
VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
}

# Both families' first text encoder is the same CLIP-L tower, so their tiny twins are the same too.
CLIP_L = CLIP_COMMON | {
    "architectures": ["CLIPTextModel"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "intermediate_size": 128,
    "hidden_act": "quick_gelu",
    "projection_dim": 64,
}

TINY: dict[str, dict[str, dict[str, Any]]] = {
    "sdxl": {
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
    },
    "sd15": {
        "unet": {
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 2,
            "attention_head_dim": 8,
            "cross_attention_dim": 64,
            "use_linear_projection": False,
            "norm_num_groups": 32,
        },
        "text_encoder": CLIP_L,
        "vae": VAE | {"scaling_factor": 0.18215},
    },
}


__all__ = ["CLIP_COMMON", "TINY", "VAE"]
