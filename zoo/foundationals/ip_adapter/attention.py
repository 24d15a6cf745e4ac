"""The decoupled image cross-attention IP-Adapter adds beside each of the UNet's text cross-attentions.

Upstream: diffusers' `IPAdapterAttnProcessor2_0` (`diffusers/models/attention_processor.py`), the
original `IPAttnProcessor2_0` (https://github.com/tencent-ailab/IP-Adapter).

A UNet `CrossAttention` projects its queries, keys and values, attends, and projects the result out. The
adapter wraps the attention step: it keeps the text attention and adds, for the same queries,

    scale × attention(queries, key_projection(image tokens), value_projection(image tokens))

before the out projection. The image tokens are read from the `image_prompt` context of the running
model under the adapter's name: each branch holds the tokens `IPAdapter.set_image_embedding` gave it
and puts them there at the start of every forward (a value set with `set_context` for one forward wins),
so they stay set across the steps of a generation, as a ControlNet's condition image does. Several IP-Adapters stack,
each wrapping the one injected before; at scale 0 the branch is skipped, so the result is the text
attention's, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

import zoo.fluxion as fl
from zoo.errors import UsageError

CONTEXT = "image_prompt"
"""Name of the context that carries each IP-Adapter's image tokens, by adapter name."""


class ImageTokens(fl.ContextModule):
    """The image tokens (B, N, cross_attention_dim) set for this forward under `name`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, *_args: Any) -> torch.Tensor:
        tokens = self.use_context(CONTEXT).get(self.name)
        if tokens is None:
            raise UsageError(
                f"the IP-Adapter {self.name!r} has no image tokens for this forward",
                hint="call set_image_embedding first, or set its scale to 0",
            )
        return tokens

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class ImageAttentionBranch(fl.Chain):
    """(queries, keys, values) → scale × attention of the queries to one IP-Adapter's image tokens."""

    def __init__(
        self, name: str, key_projection: fl.Linear, value_projection: fl.Linear, num_heads: int, scale: float
    ) -> None:
        super().__init__(
            fl.Parallel(
                fl.GetArg(0),
                fl.Chain(ImageTokens(name), key_projection),
                fl.Chain(ImageTokens(name), value_projection),
            ),
            fl.ScaledDotProductAttention(num_heads=num_heads),
            fl.Multiply(scale),
        )
        self.name = name
        self.tokens: torch.Tensor | None = None  # held across forwards, not a weight

    def init_context(self) -> fl.Contexts:
        return {} if self.tokens is None else {CONTEXT: {self.name: self.tokens}}

    @property
    def scale(self) -> float:
        """Weight of the image attention, settable at run time."""
        return self._multiply.scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._multiply.scale = value

    @property
    def _multiply(self) -> fl.Multiply:
        # A direct child: a LoRA on a projection holds a Multiply too.
        return next(self.layers(fl.Multiply, recurse=False))


class ImageCrossAttention(fl.Sum, fl.Adapter[fl.ContextModule]):
    """The attention step of a cross-attention (or an adapter already there), plus one image branch.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> attention = fl.Attention(8, num_heads=2)
        >>> branch = ImageAttentionBranch("style", fl.Linear(4, 8, bias=False), fl.Linear(4, 8, bias=False), 2, 0.5)
        >>> adapter = ImageCrossAttention(attention.ensure_find(fl.ScaledDotProductAttention), branch).inject(attention)
        >>> attention.set_context(CONTEXT, {"style": torch.randn(1, 3, 4)})
        >>> attention(torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.randn(1, 5, 8)).shape
        torch.Size([1, 5, 8])
        >>> adapter.eject()
    """

    def __init__(self, target: fl.ContextModule, branch: ImageAttentionBranch) -> None:
        with self.setup_adapter(target):
            super().__init__(target, branch)

    @property
    def branch(self) -> ImageAttentionBranch:
        """The image branch this adapter adds (a direct child: the target may hold another one)."""
        return next(self.layers(ImageAttentionBranch, recurse=False))

    def forward(self, *args: Any) -> Any:
        if self.branch.scale == 0:  # skipped, as upstream does: exactly the attention without it
            return self.call_child("target", self.target, *args)
        return super().forward(*args)


__all__ = ["CONTEXT", "ImageAttentionBranch", "ImageCrossAttention", "ImageTokens"]
