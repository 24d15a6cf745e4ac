"""The VAE of an original single-file checkpoint (`first_stage_model.*`): config from shapes, layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from converters._single_file.shapes import ShapeReader
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.stable_diffusion.original_names import VAE_PREFIX


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


def autoencoder_config(shapes: Mapping[str, Shape], family: AutoencoderFamily) -> dict[str, Any]:
    """The diffusers `AutoencoderKL` config of an original VAE, from its shapes.

    Raises:
        ConfigError: Missing tensors, or levels of different depths; the error names the key.
    """
    s = ShapeReader(shapes, VAE_PREFIX, "autoencoder")
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


__all__ = ["AutoencoderFamily", "autoencoder_config", "autoencoder_layout"]
