"""ControlNets in our UNet against diffusers: the same residuals and UNet output, two at once at
different scales, ejected in any order with the UNet restored bit for bit, and clear refusals."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from foundationals.control_pairs import (  # pyright: ignore[reportMissingImports]
    controlnet_pair,
    relative_error,
    unet_pair,
)

from converters.controlnet.upstream import ControlNetInputs
from converters.stable_diffusion.unet import UNetExampleInputs, unet_example_inputs
from zoo.errors import ConfigError
from zoo.foundationals.controlnet import ControlNet, ControlNetConfig
from zoo.foundationals.controlnet.adapter import ControlNetAdapter
from zoo.foundationals.latent_diffusion.steps import announce_step
from zoo.foundationals.latent_diffusion.unet import UNet

LIMIT = 1e-5  # relative, float32
SCALES = (0.6, 1.3)
LATENT_SIZE = 8  # 64-pixel condition images


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp(f"controlnet-{request.param}")
    return {
        "unet": unet_pair(request.param, root),
        "controlnets": [controlnet_pair(request.param, root, seed) for seed in (1, 2)],
    }


def _inputs(unet: UNet) -> UNetExampleInputs:
    return unet_example_inputs(unet.config, batch_size=2, latent_size=LATENT_SIZE, text_length=7, seed=3)


def _conditions(count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(4)
    return [torch.rand(1, 3, 8 * LATENT_SIZE, 8 * LATENT_SIZE, generator=generator) for _ in range(count)]


def _added(inputs: UNetExampleInputs) -> dict[str, torch.Tensor] | None:
    if inputs.pooled_text_embedding is None or inputs.time_ids is None:
        return None
    return {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}


def _reference_output(
    models: dict[str, Any], inputs: UNetExampleInputs, conditions: list[torch.Tensor]
) -> torch.Tensor:
    """diffusers: MultiControlNetModel's summed residuals into UNet2DConditionModel."""
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    multi = MultiControlNetModel([pair.reference for pair in models["controlnets"]])
    with torch.no_grad():
        down, middle = multi(
            inputs.latents,
            inputs.timestep,
            encoder_hidden_states=inputs.text_embedding,
            controlnet_cond=[c.expand(2, -1, -1, -1) for c in conditions],
            conditioning_scale=list(SCALES),
            added_cond_kwargs=_added(inputs),
            return_dict=False,
        )
        return models["unet"].reference(
            inputs.latents,
            inputs.timestep,
            encoder_hidden_states=inputs.text_embedding,
            added_cond_kwargs=_added(inputs),
            down_block_additional_residuals=down,
            mid_block_additional_residual=middle,
            return_dict=False,
        )[0]


def _inject_both(models: dict[str, Any], conditions: list[torch.Tensor]) -> list[ControlNetAdapter]:
    unet: UNet = models["unet"].ours
    adapters = []
    for index, (pair, scale, condition) in enumerate(
        zip(models["controlnets"], SCALES, conditions, strict=True)
    ):
        adapter = ControlNetAdapter(unet, pair.ours, f"net{index}", scale=scale).inject()
        adapter.set_condition(condition)
        adapters.append(adapter)
    return adapters


def _ours(unet: UNet, inputs: UNetExampleInputs) -> torch.Tensor:
    with torch.no_grad():
        return inputs.run_target(unet)


def test_the_residuals_equal_diffusers(models: dict[str, Any]) -> None:
    pair = models["controlnets"][0]
    inputs = ControlNetInputs(_inputs(models["unet"].ours), _conditions(1)[0].expand(2, -1, -1, -1))
    with torch.no_grad():
        expected, ours = inputs.run_upstream(pair.reference), inputs.run_target(pair.ours)
    errors = [relative_error(o, r) for o, r in zip(ours, expected, strict=True)]
    print(f"ControlNet residuals: max relative error {max(errors):.2e}")
    assert max(errors) <= LIMIT and min(float(r.abs().max()) for r in expected) > 0


def test_two_controlnets_give_diffusers_unet_output(models: dict[str, Any]) -> None:
    inputs, conditions = _inputs(models["unet"].ours), _conditions(2)
    reference = _reference_output(models, inputs, conditions)
    adapters = _inject_both(models, conditions)
    try:
        ours = _ours(models["unet"].ours, inputs)
    finally:
        for adapter in adapters:
            adapter.eject()
    error = relative_error(ours, reference)
    print(f"UNet output with two ControlNets: relative error {error:.2e}")
    assert error <= LIMIT
    plain = _ours(models["unet"].ours, inputs)
    assert relative_error(plain, reference) > 1e-3, "the ControlNets changed nothing: the test cannot fail"


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_ejecting_in_any_order_restores_the_unet_bit_for_bit(
    models: dict[str, Any], order: tuple[int, ...]
) -> None:
    unet: UNet = models["unet"].ours
    inputs = _inputs(unet)
    before_state = {key: value.clone() for key, value in unet.state_dict().items()}
    before_repr, before_output = repr(unet), _ours(unet, inputs)
    adapters = _inject_both(models, _conditions(2))
    assert repr(unet) != before_repr
    for index in order:
        adapters[index].eject()
    assert repr(unet) == before_repr
    after = unet.state_dict()
    assert after.keys() == before_state.keys()
    assert all(torch.equal(after[key], before_state[key]) for key in after)
    assert torch.equal(_ours(unet, inputs), before_output)


def test_the_step_range_switches_the_controlnet_like_diffusers(models: dict[str, Any]) -> None:
    unet: UNet = models["unet"].ours
    inputs, steps = _inputs(unet), 5
    plain = _ours(unet, inputs)
    adapter = ControlNetAdapter(unet, models["controlnets"][0].ours, scale=1.0, start=0.2, end=0.7).inject()
    adapter.set_condition(_conditions(1)[0])
    try:
        acting = []
        for index in range(steps):
            announce_step(unet, index, steps)
            acting.append(not torch.equal(_ours(unet, inputs), plain))
        announce_step(unet, None, steps)
        after_generation = not torch.equal(_ours(unet, inputs), plain)
    finally:
        adapter.eject()
    # diffusers' controlnet_keep: 1 - (i / n < start or (i + 1) / n > end)
    expected = [not (i / steps < 0.2 or (i + 1) / steps > 0.7) for i in range(steps)]
    assert acting == expected and after_generation


def test_a_controlnet_for_another_base_is_refused(models: dict[str, Any]) -> None:
    unet: UNet = models["unet"].ours
    other = (
        ControlNetConfig.tiny_sdxl()
        if unet.config.addition_embed_type is None
        else ControlNetConfig.tiny_sd15()
    )
    with pytest.raises(ConfigError, match="does not fit this UNet"):
        ControlNetAdapter(unet, ControlNet(other))


def test_running_without_a_condition_image_says_so(models: dict[str, Any]) -> None:
    unet: UNet = models["unet"].ours
    adapter = ControlNetAdapter(unet, models["controlnets"][0].ours).inject()
    try:
        with pytest.raises(ConfigError, match="no condition image"):
            _ours(unet, _inputs(unet))
    finally:
        adapter.eject()


def test_two_controlnets_cannot_share_a_name(models: dict[str, Any]) -> None:
    unet: UNet = models["unet"].ours
    first = ControlNetAdapter(unet, models["controlnets"][0].ours, "same").inject()
    try:
        with pytest.raises(ConfigError, match="already in this UNet"):
            ControlNetAdapter(unet, models["controlnets"][1].ours, "same").inject()
    finally:
        first.eject()
