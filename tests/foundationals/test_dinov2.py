"""DINOv2: the presets' sizes, the outputs `encode` gives, parity with transformers at image sizes
other than the training one (position embeddings resized as each transformers class does), and the
preprocessing against transformers' image processor."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BitImageProcessor

from converters import registry
from converters._convert.component import trace_conversion
from converters._verify.parity import relative_error
from converters.declaration import upstream_model
from converters.dinov2.conversion import ExampleInputs, run_target, run_upstream
from zoo.foundationals.dinov2 import DINOv2, DINOv2Config
from zoo.foundationals.dinov2.preprocessing import preprocess

LIMIT = 1e-5
# Published parameter counts of the original models (with the mask token); registers add 4 × width.
PARAMETERS = {
    DINOv2Config.vits14: 22_056_576,
    DINOv2Config.vitb14: 86_580_480,
    DINOv2Config.vitl14: 304_368_640,
    DINOv2Config.vitg14: 1_136_480_768,
}
# Larger and smaller grids than the trained 4 × 4, a square one, and the trained grid from a
# non-square image (the references resize it then, even though the grid is the same).
OTHER_SIZES = [(84, 42), (28, 70), (70, 70), (56, 60)]


@pytest.mark.parametrize("preset", PARAMETERS)
@pytest.mark.parametrize("registers", [False, True])
def test_the_presets_have_the_published_sizes(preset: type, registers: bool) -> None:
    config = preset(registers=registers)
    model = DINOv2(config, device="meta")
    expected = PARAMETERS[preset] + (4 * config.hidden_size if registers else 0)
    assert sum(p.numel() for p in model.parameters()) == expected


def _pair(name: str) -> tuple[torch.nn.Module, DINOv2]:
    """transformers' tiny model with seeded weights (position embeddings of std 1, so that resizing
    them shows) and ours, converted in memory through the traced key map."""
    conversion = registry.all_conversions()[name]
    configs = conversion.synthetic_configs("tiny")
    traced = trace_conversion(conversion, configs, use_cache=False)
    torch.manual_seed(0)
    reference = upstream_model(conversion, configs).eval()
    embeddings: Any = reference.get_submodule("embeddings")
    with torch.no_grad():
        embeddings.position_embeddings.normal_()
    state = reference.state_dict()
    ours = DINOv2(traced.config)
    ours.load_state_dict(
        {key: traced.keymap.apply(state.__getitem__, key) for key in traced.keymap.target_keys()}
    )
    return reference, ours.eval()


def _inputs(config: DINOv2Config, size: tuple[int, int]) -> ExampleInputs:
    image = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    patches = (size[0] // config.patch_size) * (size[1] // config.patch_size)
    return ExampleInputs(image, torch.zeros(2, patches, dtype=torch.bool))


def _error(reference: torch.nn.Module, ours: DINOv2, size: tuple[int, int]) -> float:
    inputs = _inputs(ours.config, size)
    with torch.no_grad():
        pairs = zip(run_upstream(reference, inputs), run_target(ours, inputs), strict=True)
        return max(relative_error(mine, theirs) for theirs, mine in pairs)


@pytest.mark.parametrize("name", ["dinov2.vitb14", "dinov2.vitb14_reg4"])
def test_other_image_sizes_match_transformers(name: str) -> None:
    reference, ours = _pair(name)
    errors = {size: _error(reference, ours, size) for size in OTHER_SIZES}
    print(f"{name}: {errors}")
    assert max(errors.values()) <= LIMIT


def test_the_resize_rule_matters_so_the_test_can_fail() -> None:
    reference, ours = _pair("dinov2.vitb14")
    antialiased = DINOv2(replace(ours.config, interpolate_antialias=True))
    antialiased.load_state_dict(ours.state_dict())
    offset = DINOv2(ours.config.with_original_interpolation())
    offset.load_state_dict(ours.state_dict())
    assert _error(reference, antialiased.eval(), OTHER_SIZES[0]) > 1e-3
    assert _error(reference, offset.eval(), OTHER_SIZES[0]) > 1e-3


def test_encode_gives_tokens_layers_and_a_feature_map() -> None:
    torch.manual_seed(0)
    model = DINOv2(DINOv2Config.tiny(registers=True)).eval()
    image = torch.randn(1, 3, 70, 42)
    with torch.no_grad():
        output = model.encode(image, layers=(-1, 0))
        tokens = model(image)
    assert output.grid_size == (5, 3) and output.patch_grid().shape == (1, 128, 5, 3)
    assert output.register_tokens.shape == (1, 4, 128) and output.patch_tokens.shape == (1, 15, 128)
    assert torch.equal(
        tokens, torch.cat((output.class_token[:, None], output.register_tokens, output.patch_tokens), 1)
    )
    assert torch.equal(model.LayerNorm(output.layers[0]), tokens)  # -1: the last layer's output
    with pytest.raises(IndexError, match="2 layers"):
        model.encode(image, layers=(2,))


def test_configs_refuse_impossible_architectures() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        DINOv2Config(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        DINOv2Config(image_size=100)


def test_original_interpolation_follows_the_registers() -> None:
    assert DINOv2Config.vits14().with_original_interpolation().interpolate_offset == 0.1
    with_registers = DINOv2Config.vits14(registers=True).with_original_interpolation()
    assert (with_registers.interpolate_offset, with_registers.interpolate_antialias) == (0.0, True)


@pytest.mark.parametrize("size", [(300, 200), (97, 131), (256, 256)])
def test_preprocessing_matches_the_released_image_processor(size: tuple[int, int]) -> None:
    """`facebook/dinov2-*` configure BitImageProcessor so (preprocessor_config.json)."""
    processor = BitImageProcessor(
        size={"shortest_edge": 256},
        resample=3,  # bicubic
        crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        rescale_factor=0.00392156862745098,
    )
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    reference = processor(images=Image.fromarray(pixels), return_tensors="pt").pixel_values
    assert relative_error(preprocess(torch.from_numpy(pixels)), reference) <= LIMIT


def test_preprocessing_wants_uint8_rgb() -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros(32, 32, 3))
