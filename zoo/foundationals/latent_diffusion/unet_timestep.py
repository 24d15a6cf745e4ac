"""The UNet's timestep embedding, with SDXL's added pooled-text and size/crop conditioning.

Built from a `UNetConfig` (see `unet.py`); the embedding goes into the `"unet"` context, where every
resnet block reads it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.latent_diffusion.unet_context import CONTEXT

if TYPE_CHECKING:
    from zoo.foundationals.latent_diffusion.unet import UNetConfig


def sinusoidal_embedding(
    values: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10_000
) -> torch.Tensor:
    """Float32 sinusoidal embeddings (N, dim) of N scalar values (DDPM's timestep embedding).

    Frequencies are `max_period ** (-i / (dim // 2 - freq_shift))`; the layout is (sin, cos), or (cos,
    sin) with `flip_sin_to_cos`; an odd `dim` is padded with one zero.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device)
    frequencies = torch.exp(exponent / (half - freq_shift))
    angles = values[:, None].float() * frequencies[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    embedding = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    return F.pad(embedding, (0, 1)) if dim % 2 else embedding


class SinusoidalTimestep(fl.ContextModule):
    """The sinusoidal embedding of the context's timestep, one row per sample of its input.

    Computed in float32 and cast to the input's dtype, as upstream.
    """

    def __init__(self, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> None:
        super().__init__()
        self.dim, self.flip_sin_to_cos, self.freq_shift = dim, flip_sin_to_cos, freq_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.use_context(CONTEXT)
        if "timestep" not in values:
            raise KeyError("the UNet has no timestep: call set_timestep before the forward")
        timestep = torch.as_tensor(values["timestep"], device=x.device)
        timesteps = timestep.reshape(-1).expand(x.shape[0])
        embedding = sinusoidal_embedding(timesteps, self.dim, self.flip_sin_to_cos, self.freq_shift)
        return embedding.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, flip_sin_to_cos={self.flip_sin_to_cos}, freq_shift={self.freq_shift}"


class TimestepCondition(fl.ContextModule):
    """The context's `timestep_condition` (LCM's guidance embedding), or zeros when none is set."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        condition = self.use_context(CONTEXT).get("timestep_condition")
        if condition is None:
            return torch.zeros(x.shape[0], self.dim, device=x.device, dtype=x.dtype)
        return condition.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class TimestepEmbedding(fl.Chain):
    """Sinusoidal timestep embedding (plus an optional projected condition), then a SiLU MLP."""

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        sinusoid, width = config.timestep_channels, config.time_embedding_dim
        layers: list[torch.nn.Module] = [
            SinusoidalTimestep(sinusoid, config.flip_sin_to_cos, config.freq_shift)
        ]
        if config.time_cond_proj_dim is not None:
            # A bias-free projection: without a condition it adds exact zeros, like upstream's skip.
            layers.append(
                fl.Residual(
                    TimestepCondition(config.time_cond_proj_dim),
                    fl.Linear(config.time_cond_proj_dim, sinusoid, bias=False, device=device, dtype=dtype),
                )
            )
        layers += [
            fl.Linear(sinusoid, width, device=device, dtype=dtype),
            fl.SiLU(),
            fl.Linear(width, width, device=device, dtype=dtype),
        ]
        super().__init__(*layers)


class TextTimeConditioning(fl.ContextModule):
    """SDXL's added condition: the pooled text embedding, then the sinusoidal embedding of each time id.

    The time ids (original size, crop top-left, target size: six per sample) come from the context,
    like the pooled embedding; the result has the dtype of the input (the timestep embedding).
    """

    def __init__(self, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> None:
        super().__init__()
        self.dim, self.flip_sin_to_cos, self.freq_shift = dim, flip_sin_to_cos, freq_shift

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        values = self.use_context(CONTEXT)
        for key, setter in (
            ("pooled_text_embedding", "set_pooled_text_embedding"),
            ("time_ids", "set_time_ids"),
        ):
            if key not in values:
                raise KeyError(
                    f"this UNet needs {key} (SDXL's added conditioning): call {setter} before the forward"
                )
        pooled, time_ids = values["pooled_text_embedding"], values["time_ids"]
        embedded_ids = sinusoidal_embedding(
            time_ids.flatten(), self.dim, self.flip_sin_to_cos, self.freq_shift
        )
        embedded_ids = embedded_ids.reshape(pooled.shape[0], -1)
        return torch.cat([pooled, embedded_ids], dim=-1).to(embedding.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, flip_sin_to_cos={self.flip_sin_to_cos}, freq_shift={self.freq_shift}"


class TextTimeEmbedding(fl.Residual):
    """Adds SDXL's embedded pooled text and time ids (a SiLU MLP) to the timestep embedding."""

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        assert config.addition_time_embed_dim is not None and config.addition_embed_input_dim is not None
        width = config.time_embedding_dim
        super().__init__(
            TextTimeConditioning(config.addition_time_embed_dim, config.flip_sin_to_cos, config.freq_shift),
            fl.Linear(config.addition_embed_input_dim, width, device=device, dtype=dtype),
            fl.SiLU(),
            fl.Linear(width, width, device=device, dtype=dtype),
        )


class TimestepEncoder(fl.Passthrough):
    """Computes the timestep embedding (with SDXL's added conditioning) into the context."""

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        layers: list[torch.nn.Module] = [TimestepEmbedding(config, device, dtype)]
        if config.addition_embed_type == "text_time":
            layers.append(TextTimeEmbedding(config, device, dtype))
        super().__init__(*layers, fl.SetContext(CONTEXT, "timestep_embedding"))


__all__ = [
    "SinusoidalTimestep",
    "TextTimeConditioning",
    "TextTimeEmbedding",
    "TimestepCondition",
    "TimestepEmbedding",
    "TimestepEncoder",
    "sinusoidal_embedding",
]
