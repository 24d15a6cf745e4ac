"""Segment Anything against Meta's `segment_anything` package, built with the same tiny config and
seeded random weights, converted from its original checkpoint: image embeddings, low-resolution mask
logits and IoU predictions for point, box and mask prompts (multimask on and off), and the predictor
(preprocessing, prompts in image coordinates, upscaled masks) against `SamPredictor`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything_reference import (  # pyright: ignore[reportMissingImports]
    TINY,
    convert_original,
    original_sam,
    relative_error,
    save_original,
)

from zoo.foundationals.segment_anything.image_encoder import ImageEncoderConfig
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
from zoo.foundationals.segment_anything.predictor import SegmentAnythingPredictor
from zoo.foundationals.segment_anything.prompt_encoder import PromptEncoderConfig
from zoo.foundationals.segment_anything.resize import resize_like_pillow

LIMIT = 1e-5  # float32, relative to the reference's largest value
SIZE, MASK = TINY.image_encoder.image_size, TINY.prompt_encoder.mask_size


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is faster than two fighting for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, SegmentAnything]:
    """The reference and ours, converted from the reference's original checkpoint."""
    folder = tmp_path_factory.mktemp("sam")
    reference = original_sam(TINY, seed=1)
    return reference, convert_original(save_original(reference, folder / "sam_tiny.pth"), folder / "out")


def _prompts() -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(2, 3, 2, generator=generator) * SIZE
    labels = torch.tensor([[1, 0, 1], [1, -1, 0]])
    boxes = (torch.rand(2, 4, generator=generator) * SIZE).reshape(2, 2, 2).sort(dim=1).values.reshape(2, 4)
    masks = torch.randn(2, 1, MASK, MASK, generator=generator) * 3
    return {
        "points": {"points": points, "labels": labels},
        "box": {"boxes": boxes},
        "points_and_box": {"points": points, "labels": labels, "boxes": boxes},
        "mask_and_point": {"points": points[:, :1], "labels": labels[:, :1], "masks": masks},
        "mask_alone": {"masks": masks},
        "one_prompt": {"points": points[:1], "labels": labels[:1], "boxes": boxes[:1]},
    }


def _reference_decode(
    reference: Any, embedding: torch.Tensor, prompt: dict[str, torch.Tensor], multimask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    points = (prompt["points"], prompt["labels"]) if "points" in prompt else None
    sparse, dense = reference.prompt_encoder(
        points=points, boxes=prompt.get("boxes"), masks=prompt.get("masks")
    )
    return reference.mask_decoder(
        image_embeddings=embedding,
        image_pe=reference.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def test_image_embeddings_equal_the_original(models: tuple[Any, SegmentAnything]) -> None:
    reference, ours = models
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        error = relative_error(ours.encode_image(image).embedding, reference.image_encoder(image))
    print(f"image embedding: relative error {error:.2e}")
    assert error <= LIMIT


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind", list(_prompts()))
def test_masks_and_iou_equal_the_original(
    models: tuple[Any, SegmentAnything], kind: str, multimask: bool
) -> None:
    reference, ours = models
    prompt = _prompts()[kind]
    embedding = torch.randn(1, TINY.mask_decoder.embed_dim, 6, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = _reference_decode(reference, embedding, prompt, multimask)
        found = ours.decode(embedding, multimask_output=multimask, **prompt)
    errors = [relative_error(a, b) for a, b in zip(found, expected, strict=True)]
    print(f"{kind}, multimask {multimask}: relative errors (masks, IoU) {errors[0]:.2e}, {errors[1]:.2e}")
    assert [t.shape for t in found] == [t.shape for t in expected]
    assert max(errors) <= LIMIT


def test_the_model_call_encodes_then_decodes(models: tuple[Any, SegmentAnything]) -> None:
    _, ours = models
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    prompt = _prompts()["points_and_box"]
    with torch.no_grad():
        direct = ours(image, multimask_output=False, **prompt)
        stepwise = ours.decode(ours.encode_image(image), multimask_output=False, **prompt)
    assert all(torch.equal(a, b) for a, b in zip(direct, stepwise, strict=True))


# -- predictor ------------------------------------------------------------------------------------------


def _reference_predictor(reference: Any) -> Any:
    from segment_anything import SamPredictor

    return SamPredictor(reference)


def _image_prompts(height: int, width: int) -> dict[str, dict[str, Any]]:
    points = np.array([[width * 0.3, height * 0.6], [width * 0.7, height * 0.2]])
    return {
        "points": {"point_coords": points, "point_labels": np.array([1, 0])},
        "box": {"box": np.array([width * 0.1, height * 0.2, width * 0.8, height * 0.9])},
    }


def _predictors(
    models: tuple[Any, SegmentAnything], shape: tuple[int, int]
) -> tuple[Any, SegmentAnythingPredictor]:
    """`SamPredictor` and ours, each with the same random image of `shape` set."""
    reference, ours = models
    image = np.random.default_rng(6).integers(0, 256, (*shape, 3), dtype=np.uint8)
    theirs, predictor = _reference_predictor(reference), SegmentAnythingPredictor(ours)
    theirs.set_image(image)
    predictor.set_image(image)
    return theirs, predictor


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind", ["points", "box"])
@pytest.mark.parametrize("shape", [(50, 70), (96, 40)])
def test_the_predictor_equals_sam_predictor(
    models: tuple[Any, SegmentAnything], shape: tuple[int, int], kind: str, multimask: bool
) -> None:
    theirs, predictor = _predictors(models, shape)
    assert relative_error(predictor.image_embedding, theirs.features) <= LIMIT
    prompt = _image_prompts(*shape)[kind]
    expected = theirs.predict(**prompt, multimask_output=multimask, return_logits=True)
    found = predictor.predict(**prompt, multimask_output=multimask, return_logits=True)
    errors = [relative_error(a, torch.from_numpy(b)) for a, b in zip(found, expected, strict=True)]
    print(f"{shape} {kind} multimask {multimask}: relative errors (masks, IoU, low-res) {errors}")
    assert max(errors) <= LIMIT
    binary = theirs.predict(**prompt, multimask_output=multimask)[0]
    assert np.array_equal(predictor.predict(**prompt, multimask_output=multimask).masks.numpy(), binary)


def test_the_predictor_refines_with_its_own_low_res_logits(models: tuple[Any, SegmentAnything]) -> None:
    theirs, predictor = _predictors(models, (50, 70))
    prompt: dict[str, Any] = _image_prompts(50, 70)["points"]
    low_res = predictor.predict(**prompt).low_res_logits[:1]
    follow_up: dict[str, Any] = {**prompt, "mask_input": low_res.numpy()}
    follow_up.update(multimask_output=False, return_logits=True)
    expected = theirs.predict(**follow_up)
    errors = [
        relative_error(a, torch.from_numpy(b))
        for a, b in zip(predictor.predict(**follow_up), expected, strict=True)
    ]
    assert max(errors) <= LIMIT


def test_the_predictor_needs_an_image_first(models: tuple[Any, SegmentAnything]) -> None:
    with pytest.raises(RuntimeError, match="set_image"):
        SegmentAnythingPredictor(models[1]).predict(box=np.array([1.0, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize("shape", [(37, 53, 70, 100), (300, 200, 96, 64), (5, 3000, 2, 1024)])
def test_resizing_equals_pillow(shape: tuple[int, int, int, int]) -> None:
    height, width, out_height, out_width = shape
    image = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = np.array(Image.fromarray(image).resize((out_width, out_height), Image.Resampling.BILINEAR))
    assert np.array_equal(
        resize_like_pillow(torch.from_numpy(image), out_height, out_width).numpy(), expected
    )


# -- configs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["vit_b", "vit_l", "vit_h"])
def test_full_size_parameter_counts_equal_the_original(size: str) -> None:
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = SegmentAnything(getattr(SegmentAnythingConfig, size)())
        reference = sam_model_registry[size]()
    count = sum(p.numel() for p in ours.parameters())
    print(f"{size}: {count:,} parameters")
    assert count == sum(t.numel() for t in reference.state_dict().values())


def test_inconsistent_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        SegmentAnythingConfig(prompt_encoder=PromptEncoderConfig(embed_dim=128))
    with pytest.raises(ValueError, match="global_attention_blocks"):
        ImageEncoderConfig(depth=4, global_attention_blocks=(2, 5))


def test_output_of_the_conversion_loads_and_predicts(tmp_path: Path) -> None:
    path = save_original(original_sam(TINY, seed=8), tmp_path / "sam.pth")
    model = convert_original(path, tmp_path / "out")
    predictor = SegmentAnythingPredictor(model)
    predictor.set_image(np.zeros((20, 30, 3), dtype=np.uint8))
    assert predictor.predict(box=np.array([2.0, 3.0, 20.0, 15.0])).masks.dtype == torch.bool
