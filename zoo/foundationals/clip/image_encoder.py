"""CLIP image encoder: the vision tower of CLIP (ViT-L/14, ViT-H/14, ViT-bigG/14), as IP-Adapters use it.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(2021, https://arxiv.org/abs/2103.00020); Dosovitskiy et al., "An Image is Worth 16x16 Words"
(2020, https://arxiv.org/abs/2010.11929) for the vision transformer; OpenCLIP: Cherti et al.,
"Reproducible scaling laws for contrastive language-image learning" (2022, https://arxiv.org/abs/2212.07143).
Upstream: https://github.com/openai/CLIP (ViT-L/14), https://github.com/mlfoundations/open_clip (ViT-H/14
and ViT-bigG/14 trained on LAION-2B); the layout followed here is transformers'
`CLIPVisionModelWithProjection`, whose execution order this model follows.
Weights: OpenAI CLIP ViT-L/14 is MIT-licensed; the LAION OpenCLIP ViT-H/14 and ViT-bigG/14 weights are
MIT-licensed; the copies in h94/IP-Adapter are distributed under that repository's Apache-2.0 licence.

The tower cuts the image into patches, prepends a class token and runs a pre-norm transformer:

    pixels ─► Embeddings ─► LayerNorm ─► TransformerLayer × N ─► class token ─► LayerNorm ─► Projection
              (class token,                     │ (before layer N)   │                          │
               patches, positions)              └─► "penultimate"    └─► "last"                 └─► image embedding

Its forward returns the projected image embedding (transformers' `image_embeds`). While it runs, it
stores in its context (named by `context_name`) the penultimate hidden state (the input of the last
layer, transformers' `hidden_states[-2]`, which IP-Adapter "plus" reads) and the last hidden state
(the output of the last layer, without the final norm); `encode` returns all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.clip.transformer_layer import (
    Activation,
    AttentionBlock,
    FeedForwardBlock,
    TransformerLayer,
)


@dataclass(frozen=True)
class CLIPImageEncoderConfig:
    """Architecture of a CLIP vision tower with its projection (defaults: OpenCLIP ViT-H/14).

    Attributes:
        image_size: Side of the square images read (224 for every released CLIP image encoder here).
        patch_size: Side of the square patches the image is cut into.
        num_channels: Channels of the images (3: RGB).
        hidden_size: Width of the residual stream.
        num_layers: Transformer layers.
        num_heads: Attention heads per layer.
        intermediate_size: Width of the feed-forward hidden layer.
        activation: Feed-forward activation: `quick_gelu` (OpenAI CLIP) or `gelu` (OpenCLIP).
        layer_norm_eps: Epsilon of every layer norm.
        projection_dim: Width of the image embedding (the projection of the pooled class token).
    """

    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    hidden_size: int = 1280
    num_layers: int = 32
    num_heads: int = 16
    intermediate_size: int = 5120
    activation: Activation = "gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 1024

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {self.num_layers}")

    @property
    def num_patches(self) -> int:
        """Patches per image."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_positions(self) -> int:
        """Tokens per image: the class token, then one per patch (257 at 224 / 14)."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.hidden_size // self.num_heads

    @classmethod
    def vit_l14(cls) -> CLIPImageEncoderConfig:
        """OpenAI CLIP ViT-L/14 (304 M parameters with its projection)."""
        return cls(
            hidden_size=1024,
            num_layers=24,
            num_heads=16,
            intermediate_size=4096,
            activation="quick_gelu",
            projection_dim=768,
        )

    @classmethod
    def vit_h14(cls) -> CLIPImageEncoderConfig:
        """OpenCLIP ViT-H/14, LAION-2B (632 M parameters): the encoder of most IP-Adapters."""
        return cls()

    @classmethod
    def vit_big_g14(cls) -> CLIPImageEncoderConfig:
        """OpenCLIP ViT-bigG/14, LAION-2B (1.84 B parameters): the encoder of `ip-adapter_sdxl`."""
        return cls(hidden_size=1664, num_layers=48, num_heads=16, intermediate_size=8192, projection_dim=1280)

    @classmethod
    def tiny(cls) -> CLIPImageEncoderConfig:
        """A test twin: 28×28 images in four 14×14 patches, narrow and shallow."""
        return cls(
            image_size=28, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, projection_dim=24
        )


class CLIPImageOutput(NamedTuple):
    """Everything a CLIP vision tower computes for one batch of images.

    Attributes:
        image_embedding: (B, projection_dim) the projected, normed class token (`image_embeds`).
        penultimate_hidden_state: (B, num_positions, hidden) input of the last layer, without any norm
            (transformers' `hidden_states[-2]`, IP-Adapter plus's feature).
        last_hidden_state: (B, num_positions, hidden) output of the last layer, without the final norm.
    """

    image_embedding: torch.Tensor
    penultimate_hidden_state: torch.Tensor
    last_hidden_state: torch.Tensor


class ClassToken(fl.Parameter):
    """The learned class token, one per image of the batch: (B, 1, hidden)."""

    def forward(self, *args: object) -> torch.Tensor:
        images = args[0]
        assert isinstance(images, torch.Tensor)
        return self.weight.reshape(1, 1, -1).expand(images.shape[0], 1, -1)


class PatchEmbedding(fl.Chain):
    """(B, C, H, W) pixels → (B, patches, hidden): a strided convolution, one token per patch."""

    def __init__(self, config: CLIPImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        size = config.patch_size
        super().__init__(
            fl.Conv2d(
                config.num_channels,
                config.hidden_size,
                size,
                stride=size,
                bias=False,
                device=device,
                dtype=dtype,
            ),
            fl.Flatten(2),
            fl.Transpose(1, 2),
        )


class PositionEmbedding(fl.Embedding):
    """One learned vector per token position: (B, positions, hidden) → (1, positions, hidden)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.shape[1] != self.num_embeddings:
            raise ValueError(
                f"{input.shape[1]} tokens, but the encoder learned {self.num_embeddings} positions: "
                "resize and crop the images to its image_size"
            )
        return super().forward(torch.arange(self.num_embeddings, device=input.device)).unsqueeze(0)


class Embeddings(fl.Chain):
    """Pixels → tokens: the class token and the patches, plus their position embeddings."""

    def __init__(self, config: CLIPImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Concatenate(
                ClassToken(config.hidden_size, device=device, dtype=dtype),
                PatchEmbedding(config, device=device, dtype=dtype),
                dim=1,
            ),
            fl.Residual(
                PositionEmbedding(config.num_positions, config.hidden_size, device=device, dtype=dtype)
            ),
        )


class Transformer(fl.Chain):
    """The layers, storing the penultimate (last layer's input) and last hidden states on the way."""

    def __init__(
        self, config: CLIPImageEncoderConfig, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        layers = [
            TransformerLayer(config, causal=False, device=device, dtype=dtype)
            for _ in range(config.num_layers)
        ]
        super().__init__(
            *layers[:-1],
            fl.SetContext(context, "penultimate"),
            layers[-1],
            fl.SetContext(context, "last"),
        )


class ImageProjection(fl.Linear):
    """The projection of the pooled class token into the joint text-image space (no bias)."""


class Pooling(fl.Chain):
    """(B, positions, hidden) → (B, projection_dim): the class token, normed, then projected."""

    def __init__(self, config: CLIPImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Slicing(dim=1, start=0, end=1),
            fl.Flatten(1),
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            ImageProjection(
                config.hidden_size, config.projection_dim, bias=False, device=device, dtype=dtype
            ),
        )


class CLIPImageEncoder(fl.Chain):
    """CLIP vision tower: images (B, C, S, S), normalised as CLIP expects, → image embedding (B, projection_dim).

    The penultimate and last hidden states are stored in the context `context_name` (keys
    `penultimate` and `last`) during the forward; `encode` returns all three. Preprocess images with
    `zoo.foundationals.clip.image_preprocessing.CLIPImagePreprocessor`.

    Example:
        >>> import torch
        >>> encoder = CLIPImageEncoder(CLIPImageEncoderConfig.tiny())
        >>> encoder(torch.randn(2, 3, 28, 28)).shape
        torch.Size([2, 24])
        >>> encoder.encode(torch.randn(2, 3, 28, 28)).penultimate_hidden_state.shape
        torch.Size([2, 5, 32])
    """

    context_name: ClassVar[str] = "clip_image"

    def __init__(self, config: CLIPImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(
            Embeddings(config, device=device, dtype=dtype),
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            Transformer(config, self.context_name, device=device, dtype=dtype),
            Pooling(config, device=device, dtype=dtype),
        )

    def encode(self, pixels: torch.Tensor) -> CLIPImageOutput:
        """Run once and return the image embedding and the penultimate and last hidden states."""
        with self.keeping_context() as provider:
            embedding = self(pixels)
            values = provider.get_context(self.context_name)
            return CLIPImageOutput(embedding, values["penultimate"], values["last"])


__all__ = [
    "AttentionBlock",
    "CLIPImageEncoder",
    "CLIPImageEncoderConfig",
    "CLIPImageOutput",
    "ClassToken",
    "Embeddings",
    "FeedForwardBlock",
    "ImageProjection",
    "PatchEmbedding",
    "Pooling",
    "PositionEmbedding",
    "Transformer",
    "TransformerLayer",
]
