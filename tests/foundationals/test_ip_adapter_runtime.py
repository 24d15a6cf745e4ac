"""IP-Adapter at run time: inject and eject bit for bit, scales, several adapters, LoRAs, misuse."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from zoo.errors import ConfigError, UsageError
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder, CLIPImageEncoderConfig
from zoo.foundationals.ip_adapter.attention import ImageCrossAttention
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapter, IPAdapterConfig, cross_attention_channels
from zoo.foundationals.latent_diffusion.unet import CrossAttention, UNet, UNetConfig
from zoo.lora import eject_loras, inject_lora

# Parameters of the h94/IP-Adapter releases (image projection + key/value projections), as diffusers loads them.
RELEASES = {
    "sd15": (IPAdapterConfig.sd15, 22_319_616),
    "sd15_vit_g": (IPAdapterConfig.sd15_vit_g, 23_106_048),
    "sd15_plus": (IPAdapterConfig.sd15_plus, 49_087_488),
    "sd15_full_face": (IPAdapterConfig.sd15_full_face, 21_794_304),
    "sdxl": (IPAdapterConfig.sdxl, 351_285_248),
    "sdxl_vit_h": (IPAdapterConfig.sdxl_vit_h, 349_188_096),
    "sdxl_plus_vit_h": (IPAdapterConfig.sdxl_plus_vit_h, 423_748_864),
}
TINY_PLUS = dataclasses.replace(
    IPAdapterConfig.tiny(), kind="plus", image_embedding_dim=40, num_tokens=6, resampler_dim=64
)


def _seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return module.eval()


@pytest.fixture
def unet() -> UNet:
    return _seeded(UNet(UNetConfig.tiny_sd15()), 0)  # pyright: ignore[reportReturnType]


def _run(unet: UNet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    latents, text = torch.randn(2, 4, 16, 16, generator=generator), torch.randn(2, 7, 32, generator=generator)
    with torch.no_grad():
        return unet.denoise(latents, 999, text)


def _feature(config: IPAdapterConfig, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (
        (2, 5, config.image_embedding_dim) if config.reads_hidden_states else (2, config.image_embedding_dim)
    )
    return torch.randn(shape, generator=generator)


def _snapshot(unet: UNet) -> tuple[str, dict[str, torch.Tensor]]:
    return repr(unet), {key: value.clone() for key, value in unet.state_dict().items()}


def _same(unet: UNet, snapshot: tuple[str, dict[str, torch.Tensor]]) -> bool:
    state = unet.state_dict()
    return (
        repr(unet) == snapshot[0]
        and state.keys() == snapshot[1].keys()
        and all(torch.equal(state[key], value) for key, value in snapshot[1].items())
    )


def _lora(unet: UNet) -> dict[str, torch.Tensor]:
    """Random LoRA weights on every cross-attention's query and out projections."""
    generator, weights = torch.Generator().manual_seed(3), {}
    for name, module in unet.named_modules():
        if isinstance(module, CrossAttention):
            for layer in ("Distribute.Linear_1", "Linear"):
                target = module.layer(layer, torch.nn.Linear)
                weights[f"{name}.{layer}.lora_down.weight"] = torch.randn(
                    2, target.in_features, generator=generator
                )
                weights[f"{name}.{layer}.lora_up.weight"] = torch.randn(
                    target.out_features, 2, generator=generator
                )
    return weights


@pytest.mark.parametrize("name", RELEASES)
def test_presets_have_the_releases_parameter_counts(name: str) -> None:
    make, expected = RELEASES[name]
    with torch.device("meta"):
        adapter = IPAdapter(make())
    assert sum(p.numel() for p in adapter.parameters()) == expected


@pytest.mark.parametrize(
    "config",
    [UNetConfig.sd15(), UNetConfig.sdxl(), UNetConfig.tiny_sdxl()],
    ids=["sd15", "sdxl", "tiny_sdxl"],
)
def test_attention_channels_follow_the_unets_execution_order(config: UNetConfig) -> None:
    with torch.device("meta"):
        model = UNet(config)
    assert cross_attention_channels(config) == tuple(a.inner_dim for a in model.layers(CrossAttention))


@pytest.mark.parametrize("config", [IPAdapterConfig.tiny(), TINY_PLUS], ids=["base", "plus"])
def test_inject_changes_the_output_and_eject_restores_the_unet_bit_for_bit(
    unet: UNet, config: IPAdapterConfig
) -> None:
    before, snapshot = _run(unet), _snapshot(unet)
    adapter = _seeded(IPAdapter(config), 4).inject(unet)  # pyright: ignore[reportAttributeAccessIssue]
    assert len(list(unet.layers(ImageCrossAttention))) == len(config.attention_channels)
    adapter.set_image_embedding(_feature(config))
    adapted = _run(unet)
    assert not torch.allclose(adapted, before)
    assert torch.equal(_run(unet), adapted)  # the image tokens stay set across forwards (steps)
    adapter.scale = 0.0
    assert torch.equal(_run(unet), before)  # the branch is skipped: no image embedding needed either
    adapter.eject()
    assert _same(unet, snapshot) and torch.equal(_run(unet), before)


def test_several_adapters_and_a_lora_eject_in_any_order(unet: UNet) -> None:
    before, snapshot = _run(unet), _snapshot(unet)
    first = _seeded(IPAdapter(IPAdapterConfig.tiny()), 5).inject(unet)  # pyright: ignore[reportAttributeAccessIssue]
    inject_lora(unet, "style", _lora(unet))
    second = _seeded(IPAdapter(TINY_PLUS), 6).inject(unet, name="face")  # pyright: ignore[reportAttributeAccessIssue]
    assert (first.name, second.name) == ("image_prompt_0", "face")

    def run(scales: tuple[float, float]) -> torch.Tensor:
        first.scale, second.scale = scales
        for adapter, feature in (
            (first, _feature(IPAdapterConfig.tiny())),
            (second, _feature(TINY_PLUS, seed=7)),
        ):
            if adapter.name is not None:  # injected
                adapter.set_image_embedding(feature)
        return _run(unet)

    both = run((1.0, 0.5))
    assert not torch.equal(both, run((1.0, 0.0))) and not torch.equal(both, run((0.0, 0.5)))
    first.eject()  # the first, under the second
    only_second = run((0.0, 0.5))
    first.inject(unet)
    assert torch.equal(run((0.0, 0.5)), only_second)
    eject_loras(unet)
    second.eject()
    first.eject()
    assert _same(unet, snapshot) and torch.equal(_run(unet), before)


def test_an_adapter_for_another_unet_is_refused_naming_both() -> None:
    unet = UNet(UNetConfig.tiny_sdxl())
    with pytest.raises(
        ConfigError,
        match=r"made for a UNet with 4 cross-attentions.*this UNet has 8 cross-attentions of 64 channels",
    ):
        IPAdapter(IPAdapterConfig.tiny()).inject(unet)
    assert not list(unet.layers(ImageCrossAttention))


def test_misuse_is_a_clear_error(unet: UNet) -> None:
    adapter = IPAdapter(IPAdapterConfig.tiny())
    with pytest.raises(UsageError, match="not injected"):
        adapter.set_image_embedding(_feature(IPAdapterConfig.tiny()))
    adapter.inject(unet)
    with pytest.raises(UsageError, match="already injected"):
        adapter.inject(unet)
    with pytest.raises(ConfigError, match="already has an IP-Adapter named"):
        IPAdapter(IPAdapterConfig.tiny()).inject(unet, name=adapter.name)
    with pytest.raises(UsageError, match="no image tokens for this forward"):
        _run(unet)  # nothing set yet
    with pytest.raises(ConfigError, match=r"reads projected image embeddings shaped \(B, D\) with D = 24"):
        adapter.set_image_embedding(torch.zeros(2, 25))


def test_several_images_per_prompt_concatenate_their_tokens() -> None:
    adapter = IPAdapter(IPAdapterConfig.tiny())
    two = _feature(IPAdapterConfig.tiny())
    tokens = adapter.image_tokens(torch.stack([two, two.flip(0)], dim=1))
    assert tokens.shape == (2, 2 * IPAdapterConfig.tiny().num_tokens, 32)
    # The same tokens as one image at a time (up to the batch size's effect on matrix products).
    torch.testing.assert_close(tokens[:, :4], adapter.image_tokens(two), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("config", "encoder", "message"),
    [
        (
            IPAdapterConfig.sdxl(),
            CLIPImageEncoderConfig.vit_h14(),
            "reads projected image embeddings 1280 wide; the image encoder \\(ViT-H/14\\) gives them 1024",
        ),
        (
            IPAdapterConfig.sd15_plus(),
            CLIPImageEncoderConfig.vit_big_g14(),
            "hidden states 1280 wide; the image encoder \\(ViT-bigG/14\\) gives them 1664",
        ),
    ],
    ids=["bigG adapter, ViT-H encoder", "ViT-H plus adapter, bigG encoder"],
)
def test_an_image_encoder_of_another_width_is_refused_naming_both(
    config: IPAdapterConfig, encoder: CLIPImageEncoderConfig, message: str
) -> None:
    with torch.device("meta"):
        adapter = IPAdapter(config)
    with pytest.raises(ConfigError, match=message):
        adapter.check_image_encoder(encoder)


@pytest.mark.parametrize(
    ("config", "field"),
    [(IPAdapterConfig.tiny(), "image_embedding"), (TINY_PLUS, "penultimate_hidden_state")],
    ids=["base", "plus"],
)
def test_the_adapter_picks_the_feature_it_reads(config: IPAdapterConfig, field: str) -> None:
    encoder_config = dataclasses.replace(CLIPImageEncoderConfig.tiny(), hidden_size=40, projection_dim=24)
    encoder, adapter = CLIPImageEncoder(encoder_config).eval(), IPAdapter(config)
    pixels = torch.randn(2, 3, 28, 28)
    assert torch.equal(adapter.image_embedding(encoder, pixels), getattr(encoder.encode(pixels), field))


@pytest.mark.parametrize("config", [IPAdapterConfig.tiny(), TINY_PLUS], ids=["base", "plus"])
def test_the_guided_embedding_pairs_the_image_with_diffusers_negative(config: IPAdapterConfig) -> None:
    encoder_config = dataclasses.replace(CLIPImageEncoderConfig.tiny(), hidden_size=40, projection_dim=24)
    encoder, adapter = _seeded(CLIPImageEncoder(encoder_config), 6), IPAdapter(config)
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        negative, positive = adapter.guided_image_embedding(encoder, pixels)  # pyright: ignore[reportArgumentType]
        assert torch.equal(positive, adapter.image_embedding(encoder, pixels)[0])  # pyright: ignore[reportArgumentType]
        if config.reads_hidden_states:  # the hidden states of all-zero pixels
            expected = encoder.encode(torch.zeros_like(pixels)).penultimate_hidden_state[0]  # pyright: ignore[reportCallIssue]
            assert torch.equal(negative, expected) and negative.abs().sum() > 0
        else:  # zeros
            assert torch.equal(negative, torch.zeros_like(positive))
