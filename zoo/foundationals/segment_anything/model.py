"""Segment Anything (SAM): an image encoder run once per image, and a light prompt encoder and mask
decoder run for each prompt.

Paper: Kirillov et al., "Segment Anything" (ICCV 2023, https://arxiv.org/abs/2304.02643).
Upstream: https://github.com/facebookresearch/segment-anything (`modeling/sam.py`, `build_sam.py`), and
transformers' `SamModel` (`facebook/sam-vit-base`, `-large`, `-huge`).
Weights: the SAM ViT-B/L/H checkpoints are released under the Apache 2.0 licence.

    image ─► ImageEncoder ─► ImageEmbedding (kept, reused for every prompt)
    points, boxes, mask ─► PromptEncoder ─► sparse, dense ─► MaskDecoder ─► low-res mask logits, IoUs

`SegmentAnythingPredictor` (`predictor.py`) adds the image preprocessing and the mask upscaling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.segment_anything.image_encoder import ImageEncoder, ImageEncoderConfig
from zoo.foundationals.segment_anything.mask_decoder import (
    DECODER_CONTEXT,
    MaskDecoder,
    MaskDecoderConfig,
    decoder_context,
)
from zoo.foundationals.segment_anything.prompt_encoder import PromptEncoder, PromptEncoderConfig

# Tensors computed once per image besides the embedding: adapters store them here while the image
# encoder runs (HQ-SAM's early ViT features) and read them back while the decoder runs.
IMAGE_CONTEXT = "segment_anything_image"

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentAnythingConfig:
    """The three parts' architectures, and how images and masks are read (defaults: SAM ViT-B).

    Attributes:
        image_encoder: The ViT and its neck.
        prompt_encoder: Points, boxes and masks.
        mask_decoder: The two-way transformer and heads.
        pixel_mean: Per-channel mean of 0-255 RGB pixels, subtracted before the encoder.
        pixel_std: Per-channel standard deviation, divided by.
        mask_threshold: Logits above it are inside a mask.
    """

    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)
    mask_threshold: float = 0.0

    def __post_init__(self) -> None:
        encoder, prompt, decoder = self.image_encoder, self.prompt_encoder, self.mask_decoder
        widths = {encoder.out_channels, prompt.embed_dim, decoder.embed_dim}
        if len(widths) != 1:
            raise ValueError(
                f"the encoder's out_channels ({encoder.out_channels}), the prompt encoder's and the mask "
                f"decoder's embed_dim ({prompt.embed_dim}, {decoder.embed_dim}) must be equal"
            )
        if (prompt.image_size, prompt.embedding_size) != (encoder.image_size, encoder.grid_size):
            raise ValueError(
                f"the prompt encoder's frame {prompt.image_size} / {prompt.embedding_size} differs from the "
                f"image encoder's {encoder.image_size} / {encoder.grid_size}"
            )
        if len(self.pixel_mean) != encoder.in_channels or len(self.pixel_std) != encoder.in_channels:
            raise ValueError(f"pixel_mean and pixel_std need {encoder.in_channels} values each")

    @classmethod
    def vit_b(cls) -> SegmentAnythingConfig:
        """SAM ViT-B (`sam_vit_b_01ec64.pth`, `facebook/sam-vit-base`): 93.7 M parameters."""
        return cls()

    @classmethod
    def vit_l(cls) -> SegmentAnythingConfig:
        """SAM ViT-L (`sam_vit_l_0b3195.pth`, `facebook/sam-vit-large`): 312.3 M parameters."""
        return cls(image_encoder=ImageEncoderConfig.vit_l())

    @classmethod
    def vit_h(cls) -> SegmentAnythingConfig:
        """SAM ViT-H (`sam_vit_h_4b8939.pth`, `facebook/sam-vit-huge`): 641.1 M parameters."""
        return cls(image_encoder=ImageEncoderConfig.vit_h())

    @classmethod
    def tiny(cls) -> SegmentAnythingConfig:
        """A 112 K-parameter test twin: 96-pixel images, 32 channels."""
        return cls(
            image_encoder=ImageEncoderConfig.tiny(),
            prompt_encoder=PromptEncoderConfig.tiny(),
            mask_decoder=MaskDecoderConfig.tiny(),
        )


@dataclass(frozen=True)
class ImageEmbedding:
    """What the image encoder computed for one image, kept to decode any number of prompts.

    Attributes:
        embedding: (1, C, h, w) image embedding.
        extras: Other per-image tensors injected adapters stored while encoding, by name.
    """

    embedding: torch.Tensor
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)


# -- model ------------------------------------------------------------------------------------------


class SegmentAnything(fl.Chain):
    """SAM: `encode_image` once per image, then `decode` prompts against its embedding.

    Calling the model does both: (images, points, labels, boxes, masks, multimask_output) → (mask logits
    (B, M, 4h, 4w), predicted IoUs (B, M)). Prompts are in the model's input frame (pixels of the
    resized image); see `SegmentAnythingPredictor` for images and prompts in their own frame.

    Example:
        >>> import torch
        >>> sam = SegmentAnything(SegmentAnythingConfig.tiny())
        >>> embedding = sam.encode_image(torch.randn(1, 3, 96, 96))
        >>> masks, iou = sam.decode(embedding, points=torch.tensor([[[40.0, 50.0]]]), labels=torch.ones(1, 1))
        >>> masks.shape, iou.shape
        (torch.Size([1, 3, 24, 24]), torch.Size([1, 3]))
    """

    def __init__(
        self, config: SegmentAnythingConfig | None = None, device: Device = None, dtype: DType = None
    ) -> None:
        self.config = config = config or SegmentAnythingConfig()
        super().__init__(
            ImageEncoder(config.image_encoder, device=device, dtype=dtype),
            PromptEncoder(config.prompt_encoder, device=device, dtype=dtype),
            MaskDecoder(config.mask_decoder, device=device, dtype=dtype),
        )

    @property
    def image_encoder(self) -> ImageEncoder:
        return self.layer("ImageEncoder", ImageEncoder)

    @property
    def prompt_encoder(self) -> PromptEncoder:
        return self.layer("PromptEncoder", PromptEncoder)

    @property
    def mask_decoder(self) -> MaskDecoder:
        return self.layer("MaskDecoder", MaskDecoder)

    def encode_image(self, images: torch.Tensor) -> ImageEmbedding:
        """Normalised, padded (1, 3, S, S) images → their embedding (and what adapters keep with it)."""
        with self.keeping_context() as provider:
            provider.set_context(IMAGE_CONTEXT, {})
            embedding = self.image_encoder(images)
            return ImageEmbedding(embedding, dict(provider.get_context(IMAGE_CONTEXT)))

    def decode(
        self,
        image: ImageEmbedding | torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, M, 4h, 4w) and predicted IoUs (B, M) for B prompts on one image.

        Args:
            image: `encode_image`'s result (or a bare (1, C, h, w) embedding).
            points: (B, N, 2) point coordinates (x, y) in the model's input frame.
            labels: (B, N) point labels: 1 foreground, 0 background, -1 ignored.
            boxes: (B, 4) boxes (x0, y0, x1, y1) in the model's input frame.
            masks: (B, 1, 4h, 4w) mask logits from an earlier prediction.
            multimask_output: Three masks for an ambiguous prompt, or one.
        """
        found = image if isinstance(image, ImageEmbedding) else ImageEmbedding(image)
        with self.keeping_context() as provider:
            sparse, dense = self.prompt_encoder(points, labels, boxes, masks)
            positions = self.prompt_encoder.dense_positional_encoding()
            provider.set_context(IMAGE_CONTEXT, dict(found.extras))
            provider.set_context(
                DECODER_CONTEXT, decoder_context(found.embedding, dense, positions, multimask_output)
            )
            return self.mask_decoder(sparse)

    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        images: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.encode_image(images), points, labels, boxes, masks, multimask_output)


__all__ = ["IMAGE_CONTEXT", "ImageEmbedding", "SegmentAnything", "SegmentAnythingConfig"]
