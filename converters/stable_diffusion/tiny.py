"""Tiny upstream configs shared by the Stable Diffusion families' synthetic sources.

Each family's folder holds the rest of its tiny twin. Tiny configs are small enough to convert in a
second, yet keep every constant a single-file checkpoint's shapes cannot show and the single-file
layouts therefore assume (head size 64 for CLIP towers, 32 group-norm groups), so the same tiny
pipeline also round-trips through the original single-file layouts.
"""

from __future__ import annotations

CLIP_COMMON = {
    "model_type": "clip_text_model",
    "vocab_size": 1000,  # room for the synthetic tokenizer's vocabulary (converters.stable_diffusion.assets)
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


__all__ = ["CLIP_COMMON", "CLIP_L", "VAE"]
