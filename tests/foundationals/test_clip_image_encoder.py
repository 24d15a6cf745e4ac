"""CLIP image encoder and preprocessing: parity with transformers, presets, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from converters._tracing import trace_key_map
from converters._verify.parity import relative_error
from converters.clip_vision.transformers_layout import build_reference, upstream_image_encoder_config
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder, CLIPImageEncoderConfig
from zoo.foundationals.clip.image_preprocessing import CLIPImagePreprocessor

LIMIT = 1e-5
FULL_SIZE = {  # parameters of transformers' CLIPVisionModelWithProjection (vision tower + projection)
    "vit_l14": (CLIPImageEncoderConfig.vit_l14(), 303_966_208),
    "vit_h14": (CLIPImageEncoderConfig.vit_h14(), 632_076_800),
    "vit_big_g14": (CLIPImageEncoderConfig.vit_big_g14(), 1_844_907_264),
}


def _twins(config: CLIPImageEncoderConfig) -> tuple[torch.nn.Module, CLIPImageEncoder]:
    """transformers' encoder (seeded random weights) and ours with the same weights, by tracing."""
    torch.manual_seed(0)
    reference = build_reference(upstream_image_encoder_config(config))
    with torch.device("meta"):
        meta_reference = build_reference(upstream_image_encoder_config(config))
        meta_ours = CLIPImageEncoder(config)
    pixels = torch.zeros(1, 3, config.image_size, config.image_size, device="meta")
    keymap = trace_key_map(meta_reference, meta_ours, lambda m: m(pixels), lambda m: m(pixels))
    state = reference.state_dict()
    ours = CLIPImageEncoder(config)
    ours.load_state_dict({key: keymap.apply(state.__getitem__, key) for key in keymap.target_keys()})
    return reference, ours.eval()


@pytest.mark.parametrize("activation", ["gelu", "quick_gelu"])
def test_outputs_equal_transformers(activation: str) -> None:
    config = dataclasses.replace(CLIPImageEncoderConfig.tiny(), activation=activation)  # pyright: ignore[reportArgumentType]
    reference, ours = _twins(config)
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(pixels, output_hidden_states=True)
        found = ours.encode(pixels)
    errors = [
        relative_error(found.image_embedding, expected.image_embeds),
        relative_error(found.penultimate_hidden_state, expected.hidden_states[-2]),
        relative_error(found.last_hidden_state, expected.last_hidden_state),
    ]
    print(f"{activation}: relative errors {errors}")
    assert max(errors) <= LIMIT
    assert torch.equal(ours(pixels), found.image_embedding)


@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_presets_have_transformers_parameter_counts(name: str) -> None:
    config, expected = FULL_SIZE[name]
    with torch.device("meta"):
        encoder = CLIPImageEncoder(config)
    assert sum(p.numel() for p in encoder.parameters()) == expected
    assert config.num_positions == 257


def test_an_image_of_another_size_is_refused() -> None:
    encoder = CLIPImageEncoder(CLIPImageEncoderConfig.tiny())
    with pytest.raises(ValueError, match="learned 5 positions"):
        encoder(torch.zeros(1, 3, 42, 42))


@pytest.mark.parametrize(
    ("change", "message"),
    [({"num_heads": 3}, "multiple of num_heads"), ({"image_size": 30}, "multiple of patch_size")],
)
def test_inconsistent_configs_are_refused(change: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CLIPImageEncoderConfig.tiny(), **change)


# -- preprocessing --------------------------------------------------------------------------------------

SIZES = [(240, 320), (500, 333), (224, 224), (100, 150), (231, 229)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_preprocessing_equals_clip_image_processor(size: tuple[int, int]) -> None:
    from PIL import Image
    from transformers import CLIPImageProcessor

    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    processor, ours = CLIPImageProcessor(), CLIPImagePreprocessor()
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    expected = processor(images=pil, return_tensors="pt")["pixel_values"]
    assert torch.equal(ours(image), expected)  # bit for bit
    float_expected = processor(images=image.float(), return_tensors="pt")["pixel_values"]
    assert torch.equal(ours(image.float()), float_expected)


def test_preprocessing_takes_a_batch_and_refuses_other_layouts() -> None:
    images = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8)
    assert CLIPImagePreprocessor()(images).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match=r"permute\(2, 0, 1\)"):
        CLIPImagePreprocessor()(images[0].permute(1, 2, 0))
