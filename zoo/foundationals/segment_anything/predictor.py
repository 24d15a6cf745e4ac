"""Segment Anything on images and prompts in their own frame: the reference predictor's behaviour.

Upstream: https://github.com/facebookresearch/segment-anything (`predictor.py`, `utils/transforms.py`,
`Sam.preprocess` / `Sam.postprocess_masks`).

    set_image(image)   resize the longest side to the model's input size (Pillow's bilinear, exactly),
                       normalise, pad bottom and right, encode once
    predict(prompts)   scale the prompts into the resized frame, decode, upscale the low-resolution
                       logits to the padded input, crop, resize to the image; threshold unless asked not to

Example:
    >>> import numpy as np
    >>> from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
    >>> predictor = SegmentAnythingPredictor(SegmentAnything(SegmentAnythingConfig.tiny()))
    >>> predictor.set_image(np.zeros((40, 60, 3), dtype=np.uint8))
    >>> result = predictor.predict(point_coords=np.array([[30.0, 20.0]]), point_labels=np.array([1]))
    >>> result.masks.shape, result.iou_predictions.shape, result.low_res_logits.shape
    (torch.Size([3, 40, 60]), torch.Size([3]), torch.Size([3, 24, 24]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from zoo.foundationals.segment_anything.model import ImageEmbedding, SegmentAnything
from zoo.foundationals.segment_anything.resize import resize_like_pillow

ArrayLike = np.ndarray | torch.Tensor


class Segmentation(NamedTuple):
    """What `predict` returns.

    Attributes:
        masks: (C, H, W) masks at the image's size: booleans, or logits with `return_logits`.
        iou_predictions: (C,) the model's estimate of each mask's quality.
        low_res_logits: (C, 4h, 4w) logits, to pass back as `mask_input` of a next prediction.
    """

    masks: torch.Tensor
    iou_predictions: torch.Tensor
    low_res_logits: torch.Tensor


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) scaled so the longer side is `long_side`, rounded half up."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _as_tensor(value: ArrayLike) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))


@dataclass(frozen=True)
class _ImageState:
    embedding: ImageEmbedding
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class SegmentAnythingPredictor:
    """Computes an image's embedding once, then masks for any number of prompts in image coordinates.

    Args:
        model: The Segment Anything model (and any adapter injected into it, e.g. HQ-SAM).
    """

    def __init__(self, model: SegmentAnything) -> None:
        self.model = model
        self._state: _ImageState | None = None

    @property
    def image_size(self) -> int:
        """Side of the model's square input."""
        return self.model.config.image_encoder.image_size

    def set_image(self, image: ArrayLike, image_format: Literal["RGB", "BGR"] = "RGB") -> None:
        """Encode an (H, W, 3) uint8 image; `predict` then reuses its embedding."""
        pixels = _as_tensor(image)
        if pixels.dim() != 3 or pixels.shape[2] != 3 or pixels.dtype != torch.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {tuple(pixels.shape)} {pixels.dtype}")
        if image_format == "BGR":
            pixels = pixels.flip(-1)
        original = (int(pixels.shape[0]), int(pixels.shape[1]))
        resized = resize_like_pillow(pixels, *preprocess_shape(*original, self.image_size))
        with torch.no_grad():
            embedding = self.model.encode_image(self.normalize(resized))
        self._state = _ImageState(embedding, original, (int(resized.shape[0]), int(resized.shape[1])))

    def normalize(self, resized: torch.Tensor) -> torch.Tensor:
        """A resized (h, w, 3) uint8 image → the model's (1, 3, S, S) input: normalised, then padded."""
        config = self.model.config
        mean = torch.tensor(config.pixel_mean).view(-1, 1, 1)
        std = torch.tensor(config.pixel_std).view(-1, 1, 1)
        normalized = (resized.permute(2, 0, 1) - mean) / std
        height, width = normalized.shape[-2:]
        padded = F.pad(normalized, (0, self.image_size - width, 0, self.image_size - height))
        return padded[None].to(device=self.model.device, dtype=self.model.dtype)

    @property
    def image_embedding(self) -> torch.Tensor:
        """The (1, C, h, w) embedding of the current image."""
        return self._current().embedding.embedding

    def _current(self) -> _ImageState:
        if self._state is None:
            raise RuntimeError("set an image with set_image(...) before predicting")
        return self._state

    def to_input_frame(self, coordinates: ArrayLike) -> torch.Tensor:
        """(…, 2) (x, y) pixel coordinates of the image → the resized image's, as float32."""
        state = self._current()
        scaled = _as_tensor(coordinates).to(torch.float64).clone()
        scaled[..., 0] *= state.input_size[1] / state.original_size[1]
        scaled[..., 1] *= state.input_size[0] / state.original_size[0]
        return scaled.to(device=self.model.device, dtype=torch.float32)

    def predict(
        self,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Segmentation:
        """Masks for one prompt: (N, 2) points with (N,) labels, an (x0, y0, x1, y1) box, a (1, 4h, 4w)
        low-resolution mask from an earlier prediction, or any of them together."""
        batch = self.predict_batch(
            None if point_coords is None else _as_tensor(point_coords)[None],
            None if point_labels is None else _as_tensor(point_labels)[None],
            None if box is None else _as_tensor(box).reshape(1, 4),
            None if mask_input is None else _as_tensor(mask_input)[None],
            multimask_output,
            return_logits,
        )
        return Segmentation(*(tensor[0] for tensor in batch))

    def predict_batch(
        self,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        boxes: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Segmentation:
        """Masks for B prompts at once: (B, N, 2) points, (B, N) labels, (B, 4) boxes, (B, 1, 4h, 4w)
        masks; every result has a leading B."""
        state = self._current()
        if point_coords is not None and point_labels is None:
            raise ValueError("point prompts need their labels")
        points = None if point_coords is None else self.to_input_frame(point_coords)
        labels = None if point_labels is None else _as_tensor(point_labels).to(self.model.device, torch.int)
        box_corners = None if boxes is None else self.to_input_frame(_as_tensor(boxes).reshape(-1, 2, 2))
        masks = None if mask_input is None else _as_tensor(mask_input).to(self.model.device, self.model.dtype)
        with torch.no_grad():
            low_res, iou = self.model.decode(
                state.embedding,
                points,
                labels,
                None if box_corners is None else box_corners.reshape(-1, 4).to(self.model.dtype),
                masks,
                multimask_output,
            )
            upscaled = self.upscale(low_res, state.input_size, state.original_size)
        if not return_logits:
            upscaled = upscaled > self.model.config.mask_threshold
        return Segmentation(upscaled, iou, low_res)

    def upscale(
        self, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Low-resolution logits → the padded input's size, the padding cropped, → the image's size."""
        full = F.interpolate(
            low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        cropped = full[..., : input_size[0], : input_size[1]]
        return F.interpolate(cropped, original_size, mode="bilinear", align_corners=False)


__all__ = ["SegmentAnythingPredictor", "Segmentation", "preprocess_shape"]
