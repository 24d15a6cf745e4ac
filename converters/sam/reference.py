"""transformers' `SamModel` as the reference: how it is built, the example prompts both models run, and
what tracing cannot find alone.

`SamModel` ties its random-Fourier matrix (`shared_image_embedding.positional_embedding`) to the prompt
encoder's (`prompt_encoder.shared_embedding.positional_embedding`), and its `save_pretrained` writes it
once. The reference built here shares the one module in both places and lists the tensor once, as the
files hold it: key tracing sees one tensor, parameters are counted once, files load whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from converters._tracing import Overrides
from converters._tracing.keymap import IDENTITY, Concat, MapEntry
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig

TIED_KEY = "prompt_encoder.shared_embedding.positional_embedding"

# The tensors transformers' forward reads without calling their module, so tracing never sees them run.
LABEL_EMBEDDINGS = (
    "prompt_encoder.not_a_point_embed.weight",
    *(f"prompt_encoder.point_embed.{index}.weight" for index in range(4)),
)
OUTPUT_TOKENS = ("mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight")
NO_MASK = "prompt_encoder.no_mask_embed.weight"
OUR_LABEL_EMBEDDING = "PromptEncoder.PointEncoder.LabelEmbedding.weight"
OUR_OUTPUT_TOKENS = "MaskDecoder.Tokens.OutputTokens.weight"
OUR_NO_MASK = "PromptEncoder.NoMaskEmbedding.weight"


def _drop_tied_duplicate(_module: nn.Module, state: dict[str, Any], prefix: str, _metadata: Any) -> None:
    state.pop(prefix + TIED_KEY, None)


def transformers_sam(config: Mapping[str, Any]) -> nn.Module:
    """transformers' `SamModel` for a `config.json` content, its tied matrix held and listed once."""
    import transformers

    model = transformers.SamModel(transformers.SamConfig(**dict(config)))
    model.prompt_encoder.shared_embedding = model.shared_image_embedding
    model.register_state_dict_post_hook(_drop_tied_duplicate)
    return model


def overrides(_config: SegmentAnythingConfig) -> Overrides:
    """Our label table is transformers' "not a point" then its four point embeddings; our output tokens
    its IoU token then its mask tokens."""
    return Overrides(
        pairs=(
            MapEntry(LABEL_EMBEDDINGS, (OUR_LABEL_EMBEDDING,), Concat(0)),
            MapEntry(OUTPUT_TOKENS, (OUR_OUTPUT_TOKENS,), Concat(0)),
            MapEntry((NO_MASK,), (OUR_NO_MASK,), IDENTITY),
        )
    )


# -- example inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One decoder call: prompts in the model's input frame, for one image."""

    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None
    masks: torch.Tensor | None
    multimask: bool


@dataclass(frozen=True)
class ExampleInputs:
    """A normalised image and the prompts decoded against it."""

    image: torch.Tensor
    prompts: tuple[Prompt, ...]


def _random(shape: tuple[int, ...], generator: torch.Generator, device: Any, dtype: Any) -> torch.Tensor:
    if torch.device(device or "cpu").type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator).to(device=device, dtype=dtype)


def example_inputs(config: SegmentAnythingConfig, device: Any = None, dtype: Any = None) -> ExampleInputs:
    """A seeded image and three decodes: points + box + mask (multimask), points alone (one mask, so a
    padding point is added), a box alone (multimask). Shapes only on meta."""
    generator = torch.Generator().manual_seed(0)
    size, mask = config.image_encoder.image_size, config.prompt_encoder.mask_size
    image = _random((1, 3, size, size), generator, device, dtype) * 4 - 2
    points = _random((1, 2, 2), generator, device, dtype) * size
    box = _random((1, 4), generator, device, dtype).sort(dim=-1).values * size
    labels = torch.tensor([[1, 0]], device=device)
    logits = _random((1, 1, mask, mask), generator, device, dtype) * 8 - 4
    prompts = (
        Prompt(points, labels, box, logits, True),
        Prompt(points, torch.tensor([[1, 1]], device=device), None, None, False),
        Prompt(None, None, box, None, True),
    )
    return ExampleInputs(image, prompts)


def run_transformers(model: nn.Module, inputs: ExampleInputs) -> list[torch.Tensor]:
    """The image embedding, then each prompt's masks (1, M, 4h, 4w) and IoUs (1, M), from `SamModel`."""
    embedding = model.get_image_embeddings(inputs.image)  # pyright: ignore[reportCallIssue]
    outputs = [embedding]
    for prompt in inputs.prompts:
        result = model(
            image_embeddings=embedding,
            input_points=None if prompt.points is None else prompt.points[:, None],
            input_labels=None if prompt.labels is None else prompt.labels[:, None],
            input_boxes=None if prompt.boxes is None else prompt.boxes[:, None],
            input_masks=prompt.masks,
            multimask_output=prompt.multimask,
        )
        outputs += [result.pred_masks[:, 0], result.iou_scores[:, 0]]
    return outputs


def run_ours(model: nn.Module, inputs: ExampleInputs) -> list[torch.Tensor]:
    """The same outputs from our `SegmentAnything`."""
    if not isinstance(model, SegmentAnything):
        raise TypeError(f"expected a SegmentAnything, got {type(model).__name__}")
    embedding = model.encode_image(inputs.image)
    outputs = [embedding.embedding]
    for prompt in inputs.prompts:
        outputs += model.decode(
            embedding, prompt.points, prompt.labels, prompt.boxes, prompt.masks, prompt.multimask
        )
    return outputs


__all__ = [
    "TIED_KEY",
    "ExampleInputs",
    "Prompt",
    "example_inputs",
    "overrides",
    "run_ours",
    "run_transformers",
    "transformers_sam",
]
