"""ControlNets for SD 1.5 and SDXL: `controlnet.sd15` and `controlnet.sdxl` (`zoo convert controlnet
--source X` converts the one X is).

Sources: diffusers `ControlNetModel` folders (`lllyasviel/control_v11p_sd15_*`,
`diffusers/controlnet-*-sdxl-1.0`) and lllyasviel's original files (`control_v11p_sd15_*.pth` /
`.safetensors`, `control_model.*` keys), read through the same single-file replay as our UNets.
Upstream: https://github.com/lllyasviel/ControlNet (Apache-2.0 code; weights CreativeML OpenRAIL-M),
https://huggingface.co/diffusers/controlnet-canny-sdxl-1.0 (CreativeML Open RAIL++-M).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from converters._tracing import Overrides
from converters.controlnet.original import LAYOUT, SINGLE_FILE, SUBFOLDER
from converters.controlnet.upstream import (
    controlnet_example_inputs,
    derive_controlnet_config,
    diffusers_controlnet_config,
    tiny_controlnet_config,
)
from converters.declaration import Conversion, PinnedFile, Size, UpstreamPart
from converters.family import Family, Recognizer
from converters.registry import register
from converters.sd15.tiny import TINY as SD15_TINY
from converters.sdxl.tiny import TINY as SDXL_TINY
from zoo.foundationals.controlnet import ControlNet, ControlNetConfig

SD15_REPO = "lllyasviel/control_v11p_sd15_canny"
SDXL_REPO = "diffusers/controlnet-canny-sdxl-1.0"
NOT_PINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
WEIGHTS = "diffusion_pytorch_model.safetensors"
_ZERO_INITIALISED = ("controlnet_mid_block", "controlnet_cond_embedding.conv_out")
_OUTPUT_STD = 0.02


def _reference(config: dict[str, Any]) -> nn.Module:
    from diffusers.models.controlnets.controlnet import ControlNetModel

    model = ControlNetModel.from_config(config)
    assert isinstance(model, nn.Module)
    _unzero(model)
    return model


def _unzero(model: nn.Module) -> None:
    """Random output convolutions instead of diffusers' zeros (a trained ControlNet starts from no effect).

    Synthetic sources are saved from this model: with zero outputs every residual would be zero and
    parity would compare zeros. Seeded by the caller; a no-op in cost on meta.
    """
    modules = dict(model.named_modules())
    names = [
        name for name in modules if name in _ZERO_INITIALISED or name.startswith("controlnet_down_blocks.")
    ]
    for name in names:
        for parameter in modules[name].parameters():
            nn.init.normal_(parameter, std=_OUTPUT_STD)


def _differs(config: ControlNetConfig, full: ControlNetConfig) -> str | None:
    kind, expected = config.unet.addition_embed_type, full.unet.addition_embed_type
    return (
        None
        if kind == expected
        else f"addition_embed_type is {kind!r}, this conversion's UNet has {expected!r}"
    )


def _conversion(
    name: str, repo: str, license: str, full: ControlNetConfig, tiny_unet: dict[str, Any], what: str
) -> Conversion:
    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        config = diffusers_controlnet_config(full) if size == "full" else tiny_controlnet_config(tiny_unet)
        return {SUBFOLDER: config}

    return Conversion(
        name=name,
        description=f"ControlNet for {what} (diffusers ControlNetModel)",
        hub_repo=repo,
        license=license,
        parts=(
            UpstreamPart(
                SUBFOLDER,
                "diffusers.ControlNetModel",
                _reference,
                pinned=PinnedFile(repo, WEIGHTS, None, None, license=license, unknown=NOT_PINNED),
                repo_folder="",
            ),
        ),
        derive_config=lambda configs: derive_controlnet_config(configs[SUBFOLDER]),
        build_target=ControlNet,
        example_inputs=controlnet_example_inputs,
        run_upstream=lambda model, inputs: inputs.run_upstream(model),
        run_target=lambda model, inputs: inputs.run_target(model),
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        family_check=lambda config: _differs(config, full),
        upstream_configs_of=lambda config: {SUBFOLDER: diffusers_controlnet_config(config)},
    )


SD15 = replace(
    _conversion(
        "controlnet.sd15", SD15_REPO, "openrail", ControlNetConfig.sd15(), SD15_TINY["unet"], "SD 1.5"
    ),
    single_file=LAYOUT,
)
SDXL = _conversion(
    "controlnet.sdxl", SDXL_REPO, "openrail++", ControlNetConfig.sdxl(), SDXL_TINY["unet"], "SDXL"
)
CONVERSIONS = (SD15, SDXL)


def _diffusers_controlnet(shapes: Any) -> bool:
    return any(key.startswith("controlnet_cond_embedding.") for key in shapes)


def _with_added_conditioning(shapes: Any) -> bool:
    return any(key.startswith("add_embedding.") for key in shapes)


FAMILY = register(
    Family(
        name="controlnet",
        description="ControlNets for SD 1.5 and SDXL (diffusers folders, lllyasviel's original files)",
        conversions=CONVERSIONS,
        single_file=replace(SINGLE_FILE, recognizer=replace(SINGLE_FILE.recognizer, conversion=SD15.name)),
        recognizers=(
            Recognizer(
                "an SDXL ControlNet (diffusers layout)",
                lambda s: _diffusers_controlnet(s) and _with_added_conditioning(s),
                SDXL.name,
            ),
            Recognizer("an SD 1.x ControlNet (diffusers layout)", _diffusers_controlnet, SD15.name),
        ),
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY", "SD15", "SDXL"]
