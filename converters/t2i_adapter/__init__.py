"""T2I-Adapters: `t2i_adapter.sd15_full`, `t2i_adapter.sd15_light` and `t2i_adapter.sdxl` (`zoo convert
t2i-adapter --source X` converts the one X is).

Sources: diffusers `T2IAdapter` folders (`TencentARC/t2iadapter_*_sd14v1`,
`TencentARC/t2i-adapter-*-sdxl-1.0`) and TencentARC's original SD 1.4 files
(`t2iadapter_*_sd14v1.pth`, full and light). Upstream: https://github.com/TencentARC/T2I-Adapter
(Apache-2.0).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from converters._tracing import Overrides
from converters.declaration import Conversion, PinnedFile, Size, UpstreamPart
from converters.family import Family, Recognizer
from converters.registry import register
from converters.t2i_adapter.original import layout, single_file_format
from converters.t2i_adapter.upstream import (
    SUBFOLDER,
    derive_t2i_config,
    diffusers_t2i_config,
    run_target,
    run_upstream,
    t2i_example_inputs,
)
from zoo.foundationals.t2i_adapter import T2IAdapter, T2IAdapterConfig

NOT_PINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
LICENSE = "apache-2.0"


def _reference(config: dict[str, Any]) -> nn.Module:
    from diffusers.models.adapter import T2IAdapter as Reference

    model = Reference.from_config(config)
    assert isinstance(model, nn.Module)
    return model


def _differs(config: T2IAdapterConfig, full: T2IAdapterConfig) -> str | None:
    return (
        None
        if config.kind == full.kind
        else f"a {config.kind} adapter, this conversion reads {full.kind} ones"
    )


def _conversion(
    name: str, repo: str, what: str, full: T2IAdapterConfig, tiny: T2IAdapterConfig
) -> Conversion:
    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {SUBFOLDER: diffusers_t2i_config(full if size == "full" else tiny)}

    return Conversion(
        name=name,
        description=f"T2I-Adapter, {what} (diffusers T2IAdapter)",
        hub_repo=repo,
        license=LICENSE,
        parts=(
            UpstreamPart(
                SUBFOLDER,
                "diffusers.T2IAdapter",
                _reference,
                pinned=PinnedFile(
                    repo,
                    "diffusion_pytorch_model.safetensors",
                    None,
                    None,
                    license=LICENSE,
                    unknown=NOT_PINNED,
                ),
                repo_folder="",
            ),
        ),
        derive_config=lambda configs: derive_t2i_config(configs[SUBFOLDER]),
        build_target=T2IAdapter,
        example_inputs=t2i_example_inputs,
        run_upstream=run_upstream,
        run_target=run_target,
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        family_check=lambda config: _differs(config, full),
        upstream_configs_of=lambda config: {SUBFOLDER: diffusers_t2i_config(config)},
    )


SD15_FULL = replace(
    _conversion(
        "t2i_adapter.sd15_full",
        "TencentARC/t2iadapter_depth_sd14v1",
        "SD 1.4/1.5 full",
        T2IAdapterConfig.sd15_full(),
        T2IAdapterConfig(channels=(32, 64), num_res_blocks=2),
    ),
    single_file=layout(),
)
SD15_LIGHT = replace(
    _conversion(
        "t2i_adapter.sd15_light",
        "TencentARC/t2iadapter_color_sd14v1",
        "SD 1.4/1.5 light",
        T2IAdapterConfig.sd15_light(),
        T2IAdapterConfig(channels=(32, 64), num_res_blocks=2, kind="light"),
    ),
    single_file=layout(),
)
SDXL = _conversion(
    "t2i_adapter.sdxl",
    "TencentARC/t2i-adapter-depth-midas-sdxl-1.0",
    "SDXL",
    T2IAdapterConfig.sdxl(),
    T2IAdapterConfig(channels=(64, 128, 128, 128), num_res_blocks=2, downscale_factor=16, kind="full_xl"),
)
CONVERSIONS = (SD15_FULL, SD15_LIGHT, SDXL)


def _adapter_type_is(kind_key: str) -> Any:
    return lambda shapes: (
        any(kind_key in key for key in shapes)
        and any(k.startswith("adapter.body.0.resnets.") for k in shapes)
    )


FAMILY = register(
    Family(
        name="t2i_adapter",
        description="T2I-Adapters for SD 1.x (full, light) and SDXL (diffusers folders, TencentARC's original files)",
        conversions=CONVERSIONS,
        single_file=single_file_format("t2i_adapter"),  # the family: full or light, told by the keys
        recognizers=(
            Recognizer(
                "a light T2I-Adapter (diffusers layout)", _adapter_type_is(".out_conv."), SD15_LIGHT.name
            ),
            Recognizer(
                "a full T2I-Adapter (diffusers layout; SD 1.x or SDXL)",
                _adapter_type_is("adapter.conv_in."),
                SD15_FULL.name,
            ),
        ),
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY", "SD15_FULL", "SD15_LIGHT", "SDXL"]
