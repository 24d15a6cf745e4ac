"""The pre-norm transformer layer both CLIP towers stack: self-attention block, then feed-forward block.

The text tower's attention is causal, the image tower's is not; everything else is the same (transformers'
`CLIPEncoderLayer` serves both). The class names are part of the state-dict keys of both encoders.
"""

from __future__ import annotations

from typing import Literal, Protocol, get_args

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType

Activation = Literal["quick_gelu", "gelu"]
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)


class LayerConfig(Protocol):
    """What a layer reads from a tower's config."""

    @property
    def hidden_size(self) -> int: ...
    @property
    def intermediate_size(self) -> int: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def layer_norm_eps(self) -> float: ...
    @property
    def activation(self) -> Activation: ...


class AttentionBlock(fl.Residual):
    """x + self-attention(layer norm(x)), causal in the text tower."""

    def __init__(self, config: LayerConfig, causal: bool, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.SelfAttention(
                config.hidden_size, num_heads=config.num_heads, is_causal=causal, device=device, dtype=dtype
            ),
        )


def activation_layer(name: Activation) -> fl.ContextModule:
    return fl.QuickGeLU() if name == "quick_gelu" else fl.GeLU()


class FeedForwardBlock(fl.Residual):
    """x + fc2(activation(fc1(layer norm(x))))."""

    def __init__(self, config: LayerConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.Linear(config.hidden_size, config.intermediate_size, device=device, dtype=dtype),
            activation_layer(config.activation),
            fl.Linear(config.intermediate_size, config.hidden_size, device=device, dtype=dtype),
        )


class TransformerLayer(fl.Chain):
    """A pre-norm transformer layer: self-attention block, then feed-forward block."""

    def __init__(self, config: LayerConfig, causal: bool, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            AttentionBlock(config, causal, device=device, dtype=dtype),
            FeedForwardBlock(config, device=device, dtype=dtype),
        )


__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AttentionBlock",
    "FeedForwardBlock",
    "LayerConfig",
    "TransformerLayer",
    "activation_layer",
]
