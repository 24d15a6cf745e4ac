"""DINOv2 from original release files, against models that read those files as they are.

timm's DINOv2 loads an original file through its own `checkpoint_filter_fn`. It resizes position
embeddings as the original code does for the models with registers (to the target size,
antialiased); for the models without registers the original code resizes by the scale factor
(grid + 0.1) / trained grid, which timm does not, so that reference is timm at a fixed size with its
position embeddings resized by an independent implementation of the original rule.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import zoo
from converters._convert.by_name import convert
from converters._verify.parity import relative_error
from tests.foundationals.dinov2_references import (
    original_state_dict,
    timm_dinov2,
    timm_dinov2_original_resize,
)
from zoo.foundationals.dinov2 import DINOv2, DINOv2Config

LIMIT = 1e-5
TRAINING = (56, 56)  # the tiny configs' size: no resizing
OTHER_SIZES = [(84, 42), (28, 70)]  # larger and smaller grids
# The trained grid from a non-square image: the original code resizes (timm, which needs whole
# patches, cannot take it).
TRAINED_GRID_NOT_SQUARE = (56, 60)
KINDS = {
    "dinov2.vits14": DINOv2Config.tiny(),
    "dinov2.vits14_reg4": DINOv2Config.tiny(registers=True),
    "dinov2.vitg14": DINOv2Config.tiny(feedforward="swiglu"),
    "dinov2.vitg14_reg4": DINOv2Config.tiny(registers=True, feedforward="swiglu"),
}


def _image(size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DINOv2, dict[str, torch.Tensor]]]:
    """Each kind: an original file converted with zoo (and loaded back), and the file's tensors."""
    root = tmp_path_factory.mktemp("dinov2-original")
    models: dict[str, tuple[DINOv2, dict[str, torch.Tensor]]] = {}
    for name, config in KINDS.items():
        state = original_state_dict(config)
        torch.save(state, root / f"{name}.pth")
        run = convert(name, out=root / "out", source=str(root / f"{name}.pth"))
        model = zoo.load(str(run.results[0].folder))
        assert isinstance(model, DINOv2)
        models[name] = (model.eval(), state)
    return models


def _error(ours: DINOv2, reference: VisionTransformer, size: tuple[int, int]) -> float:
    with torch.no_grad():
        return relative_error(ours(_image(size)), reference.forward_features(_image(size)))


# SwiGLU is independent of the resize: ViT-g's kinds are checked at fewer sizes.
TIMM_SIZES = {
    "dinov2.vits14": [TRAINING],
    "dinov2.vitg14": [TRAINING],
    "dinov2.vits14_reg4": [TRAINING, *OTHER_SIZES],
    "dinov2.vitg14_reg4": [TRAINING, OTHER_SIZES[0]],
}


@pytest.mark.parametrize("name", KINDS)
def test_timm_reading_the_same_file_gives_the_same_tokens(
    converted: dict[str, tuple[DINOv2, dict[str, torch.Tensor]]], name: str
) -> None:
    """At the training size for every kind; at others for the models with registers, which the
    original code (like timm) resizes to the target size, antialiased."""
    ours, state = converted[name]
    reference = timm_dinov2(KINDS[name], state)
    errors = {size: _error(ours, reference, size) for size in TIMM_SIZES[name]}
    print(f"{name}: {errors}")
    assert max(errors.values()) <= LIMIT


@pytest.mark.parametrize("size", [*OTHER_SIZES, TRAINED_GRID_NOT_SQUARE])
def test_models_without_registers_resize_positions_as_the_original(
    converted: dict[str, tuple[DINOv2, dict[str, torch.Tensor]]], size: tuple[int, int]
) -> None:
    ours, state = converted["dinov2.vits14"]
    assert (ours.config.interpolate_offset, ours.config.interpolate_antialias) == (0.1, False)
    error = _error(ours, timm_dinov2_original_resize(KINDS["dinov2.vits14"], state, size), size)
    print(f"dinov2.vits14 {size}: {error:.2e}")
    assert error <= LIMIT


def test_the_resize_rules_differ_so_each_test_can_fail(
    converted: dict[str, tuple[DINOv2, dict[str, torch.Tensor]]],
) -> None:
    """timm's rule is not the original's for models without registers; ours can follow either."""
    ours, state = converted["dinov2.vits14"]
    reference, size = timm_dinov2(KINDS["dinov2.vits14"], state), OTHER_SIZES[0]
    assert _error(ours, reference, size) > 1e-2
    like_timm = DINOv2(replace(ours.config, interpolate_offset=0.0, interpolate_antialias=True))
    like_timm.load_state_dict(ours.state_dict())
    assert _error(like_timm.eval(), reference, size) <= LIMIT
