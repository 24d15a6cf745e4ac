"""SD 1.5's tiny twin: the upstream configs of `--synthetic tiny` sources and the tests.

It keeps what the single-file layout assumes (8 heads per level, 32 group-norm groups), so the same
tiny pipeline also round-trips through the LDM single file.
"""

from __future__ import annotations

from typing import Any

from converters.stable_diffusion.tiny import CLIP_L, VAE

TINY: dict[str, dict[str, Any]] = {
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
        "sample_size": 32,  # 64 pixels with the tiny autoencoder: `zoo generate` draws small by default
    },
    "text_encoder": CLIP_L,
    "vae": VAE | {"scaling_factor": 0.18215},
}

__all__ = ["TINY"]
