"""What tells CLIP image encoders apart whatever their size, and what their OpenCLIP files do not show.

An OpenCLIP checkpoint's shapes give every width and depth but neither the number of heads nor the
activation; each declared encoder fixes them (its head size and activation), as SD's single-file layouts
fix a UNet's head size. The same facts tell a source of one encoder from another's, so a tiny test twin
keeps them: ViT-H/14's has 80-channel heads and GELU, ViT-L/14's 64-channel heads and QuickGELU.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.foundationals.clip.image_encoder import Activation, CLIPImageEncoderConfig


@dataclass(frozen=True)
class EncoderKind:
    """One declared image encoder, by the facts its size does not change.

    Attributes:
        name: For people ("ViT-H/14").
        head_dim: Channels per attention head.
        activation: Feed-forward activation.
        patch_size: Side of the square patches.
        hidden_size: Width of the full-size encoder (to recognise its files).
    """

    name: str
    head_dim: int
    activation: Activation
    patch_size: int
    hidden_size: int

    @classmethod
    def of(cls, name: str, config: CLIPImageEncoderConfig) -> EncoderKind:
        """The kind of a full-size config."""
        return cls(name, config.head_dim, config.activation, config.patch_size, config.hidden_size)

    def misfit(self, config: CLIPImageEncoderConfig) -> str | None:
        """None when `config` is this kind's (any size), else what differs."""
        found = (config.head_dim, config.activation, config.patch_size)
        if found == (self.head_dim, self.activation, self.patch_size):
            return None
        return (
            f"{found[0]}-channel heads, {found[1]}, {found[2]}-pixel patches; "
            f"{self.name} has {self.head_dim}-channel heads, {self.activation}, {self.patch_size}-pixel patches"
        )


__all__ = ["EncoderKind"]
