"""T2I-Adapters in our UNet against diffusers: the same UNet output with the features as
`down_intrablock_additional_residuals` (full and light on SD 1.5, the SDXL adapter on a three-level SDXL
UNet, its last feature added after the middle block), two stacked, and clear refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from foundationals.control_pairs import (  # pyright: ignore[reportMissingImports]
    Pair,
    converted,
    randomize,
    relative_error,
)

from converters.sd15.tiny import TINY as SD15_TINY
from converters.sdxl.tiny import TINY as SDXL_TINY
from converters.stable_diffusion.unet import UNetExampleInputs, unet_example_inputs
from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.unet import UNet
from zoo.foundationals.t2i_adapter import T2IAdapter, T2IAdapterConfig
from zoo.foundationals.t2i_adapter.injection import T2IAdapterInjection

LIMIT = 1e-5
LATENT_SIZE = 8
SCALE = 0.7
# SDXL's adapter feeds three levels and the middle block: a three-level tiny SDXL UNet shows all four.
SDXL_THREE_LEVELS = SDXL_TINY["unet"] | {
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 1, 1],
    "attention_head_dim": [1, 2, 2],
}
CASES = {
    "full": ("sd15", SD15_TINY["unet"], {"channels": [32, 64], "adapter_type": "full_adapter"}),
    "light": ("sd15", SD15_TINY["unet"], {"channels": [32, 64], "adapter_type": "light_adapter"}),
    "xl": (
        "sdxl",
        SDXL_THREE_LEVELS,
        {"channels": [32, 64, 64, 64], "downscale_factor": 16, "adapter_type": "full_adapter_xl"},
    ),
}
CONVERSIONS = {"full": "t2i_adapter.sd15_full", "light": "t2i_adapter.sd15_light", "xl": "t2i_adapter.sdxl"}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from diffusers.models.adapter import T2IAdapter as Reference
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    family, unet_config, adapter_config = CASES[request.param]
    root = tmp_path_factory.mktemp(f"t2i-{request.param}")
    torch.manual_seed(0)
    unet = randomize(UNet2DConditionModel(**unet_config), 0)
    adapters = [randomize(Reference(num_res_blocks=2, **adapter_config), seed) for seed in (1, 2)]
    return {
        "unet": Pair(unet, converted(unet, f"{family}.unet", "unet", root / "unet")),
        "adapters": [
            Pair(
                adapter, converted(adapter, CONVERSIONS[request.param], "adapter", root / f"adapter-{index}")
            )
            for index, adapter in enumerate(adapters)
        ],
    }


def _inputs(unet: UNet) -> UNetExampleInputs:
    return unet_example_inputs(unet.config, batch_size=2, latent_size=LATENT_SIZE, text_length=7, seed=5)


def _image(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 8 * LATENT_SIZE, 8 * LATENT_SIZE, generator=generator)


def _reference(case: dict[str, Any], inputs: UNetExampleInputs, scales: list[float]) -> torch.Tensor:
    """diffusers: each adapter's features times its scale, summed, repeated over the batch."""
    with torch.no_grad():
        per_adapter = [
            [feature * scale for feature in pair.reference(_image(10 + index))]
            for index, (pair, scale) in enumerate(zip(case["adapters"], scales, strict=False))
        ]
        summed: list[torch.Tensor] = list(per_adapter[0])
        for features in per_adapter[1:]:
            summed = [total + feature for total, feature in zip(summed, features, strict=True)]
        added = None
        if inputs.pooled_text_embedding is not None and inputs.time_ids is not None:
            added = {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}
        return case["unet"].reference(
            inputs.latents,
            inputs.timestep,
            encoder_hidden_states=inputs.text_embedding,
            added_cond_kwargs=added,
            down_intrablock_additional_residuals=[f.repeat(2, 1, 1, 1) for f in summed],
            return_dict=False,
        )[0]


def _ours(case: dict[str, Any], inputs: UNetExampleInputs, scales: list[float]) -> torch.Tensor:
    unet: UNet = case["unet"].ours
    injections = []
    for index, (pair, scale) in enumerate(zip(case["adapters"], scales, strict=False)):
        injection = T2IAdapterInjection(unet, pair.ours, f"t2i{index}", scale=scale).inject()
        with torch.no_grad():
            injection.set_condition(_image(10 + index))
        injections.append(injection)
    try:
        with torch.no_grad():
            return inputs.run_target(unet)
    finally:
        for injection in injections:
            injection.eject()


def test_one_adapter_gives_diffusers_unet_output(case: dict[str, Any]) -> None:
    inputs = _inputs(case["unet"].ours)
    reference, ours = _reference(case, inputs, [SCALE]), _ours(case, inputs, [SCALE])
    error = relative_error(ours, reference)
    print(f"UNet output with a T2I-Adapter: relative error {error:.2e}")
    assert error <= LIMIT
    with torch.no_grad():
        plain = inputs.run_target(case["unet"].ours)
    assert relative_error(plain, reference) > 1e-3, "the adapter changed nothing: the test cannot fail"


def test_two_adapters_add_up_like_diffusers_multi_adapter(case: dict[str, Any]) -> None:
    inputs = _inputs(case["unet"].ours)
    scales = [SCALE, 1.2]
    error = relative_error(_ours(case, inputs, scales), _reference(case, inputs, scales))
    print(f"UNet output with two T2I-Adapters: relative error {error:.2e}")
    assert error <= LIMIT


def test_an_adapter_for_another_base_is_refused(case: dict[str, Any], tmp_path: Path) -> None:
    unet: UNet = case["unet"].ours
    wrong = T2IAdapter(T2IAdapterConfig(channels=(48, 96, 96, 96), num_res_blocks=1))
    injection = T2IAdapterInjection(unet, wrong)
    with pytest.raises(ConfigError, match="feature 0 has 48 channels"):
        injection.set_condition(_image(0))


def test_an_adapter_with_too_few_features_is_refused() -> None:
    from zoo.foundationals.latent_diffusion.unet import UNetConfig

    unet = UNet(UNetConfig.tiny_sd15())
    with pytest.raises(ConfigError, match="makes 1 features"):
        T2IAdapterInjection(unet, T2IAdapter(T2IAdapterConfig(channels=(32,), num_res_blocks=1)))
