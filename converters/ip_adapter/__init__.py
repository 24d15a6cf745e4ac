"""IP-Adapter (image prompts) for SD 1.5 and SDXL: `ip_adapter.sd15`, `.sd15_plus`, `.sdxl`, `.sdxl_vit_h`,
`.sdxl_plus_vit_h`, and the `.sd15_full_face` variant, as released in h94/IP-Adapter (`ip-adapter_sd15_light`
and the `-plus-face` files share their variant's architecture and convert as it does).

Sources: the original files (`.bin` pickles of `{"image_proj": ..., "ip_adapter": ...}`, or their flat
`.safetensors`), read through diffusers' own loader recorded on meta, and diffusers' serialisation of the
adapter (its tensors under a UNet's names, with our config.json: see `reference.py`). The conversions
are alternatives: `zoo convert ip_adapter --source FILE` converts the one the file is, and
`zoo convert ip-adapter FILE --base BASE` checks it fits BASE's UNet first (`convert.py`). The image
encoders they read are the `clip_vision` family's.

Upstream: https://huggingface.co/h94/IP-Adapter (Apache-2.0), https://github.com/tencent-ailab/IP-Adapter.
"""

from __future__ import annotations

from converters import sd15, sdxl
from converters._tracing import Overrides
from converters.declaration import Conversion, PinnedFile, Size, UpstreamPart
from converters.family import Family, Recognizer, SingleFileFormat
from converters.ip_adapter.original import original_layout
from converters.ip_adapter.original_writer import write_original_file
from converters.ip_adapter.recognizers import (
    DIFFUSERS,
    FACEID,
    is_original,
    unknown_original,
    variant_recognizer,
)
from converters.ip_adapter.reference import (
    SUBFOLDER,
    WEIGHTS_NAME,
    build_reference,
    derive_ip_adapter_config,
    example_feature,
    run_ip_adapter,
)
from converters.ip_adapter.variants import VIT_BIG_G14, VIT_H14, IPAdapterVariant
from converters.registry import register
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapter, IPAdapterConfig

HUB_REPO = "h94/IP-Adapter"
LICENSE = "apache-2.0"
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
SD15, SDXL = "SD 1.5", "SDXL"
SDXL_RESAMPLER_TINY = 128  # two 64-channel heads, like the full one's twenty

# Components are named after the base family (its name, not a copy of it), then the kind and encoder.
ON_SD15, ON_SDXL = sd15.FAMILY.name, sdxl.FAMILY.name
_DEFAULT_VARIANTS = (
    IPAdapterVariant(
        ON_SD15,
        "IP-Adapter",
        sd15.UNET,
        SD15,
        VIT_H14,
        IPAdapterConfig.sd15(),
        "models/ip-adapter_sd15.safetensors",
    ),
    IPAdapterVariant(
        f"{ON_SD15}_plus",
        "IP-Adapter plus",
        sd15.UNET,
        SD15,
        VIT_H14,
        IPAdapterConfig.sd15_plus(),
        "models/ip-adapter-plus_sd15.safetensors",
    ),
    IPAdapterVariant(
        ON_SDXL,
        "IP-Adapter",
        sdxl.UNET,
        SDXL,
        VIT_BIG_G14,
        IPAdapterConfig.sdxl(),
        "sdxl_models/ip-adapter_sdxl.safetensors",
    ),
    IPAdapterVariant(
        f"{ON_SDXL}_vit_h",
        "IP-Adapter",
        sdxl.UNET,
        SDXL,
        VIT_H14,
        IPAdapterConfig.sdxl_vit_h(),
        "sdxl_models/ip-adapter_sdxl_vit-h.safetensors",
    ),
    IPAdapterVariant(
        f"{ON_SDXL}_plus_vit_h",
        "IP-Adapter plus",
        sdxl.UNET,
        SDXL,
        VIT_H14,
        IPAdapterConfig.sdxl_plus_vit_h(),
        "sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors",
        tiny_resampler_dim=SDXL_RESAMPLER_TINY,
    ),
)
_OTHER_VARIANTS = (
    IPAdapterVariant(
        f"{ON_SD15}_full_face",
        "IP-Adapter full-face",
        sd15.UNET,
        SD15,
        VIT_H14,
        IPAdapterConfig.sd15_full_face(),
        "models/ip-adapter-full-face_sd15.safetensors",
    ),
    IPAdapterVariant(
        f"{ON_SD15}_vit_g",
        "IP-Adapter",
        sd15.UNET,
        SD15,
        VIT_BIG_G14,
        IPAdapterConfig.sd15_vit_g(),
        "models/ip-adapter_sd15_vit-G.safetensors",
    ),
)
VARIANTS = {variant.component: variant for variant in (*_DEFAULT_VARIANTS, *_OTHER_VARIANTS)}
KNOWN_BASES = tuple(
    (
        f"{title}{'' if size == 'full' else ' (its tiny test twin)'}",
        dict(unet.synthetic_configs(size)["unet"]),
    )
    for title, unet in ((SD15, sd15.UNET), (SDXL, sdxl.UNET))
    for size in ("full", "tiny")
)
DEFAULT = tuple(variant.component for variant in _DEFAULT_VARIANTS)


def ip_adapter_part(pinned: PinnedFile | None = None) -> UpstreamPart:
    """The adapter as diffusers loads it into a UNet (see `reference.py`)."""
    return UpstreamPart(
        SUBFOLDER,
        "diffusers.UNet2DConditionModel IP-Adapter modules",
        build_reference,
        weight_names=(WEIGHTS_NAME,),
        pinned=pinned,
        hub_single_file=pinned is not None,
    )


def ip_adapter_conversion(variant: IPAdapterVariant) -> Conversion:
    """The declared conversion of one variant."""
    pinned = PinnedFile(HUB_REPO, variant.hub_file, None, None, None, LICENSE, UNPINNED)

    def synthetic(size: Size) -> dict[str, dict[str, object]]:
        return {SUBFOLDER: variant.upstream(size)}

    return Conversion(
        name=f"ip_adapter.{variant.component}",
        description=variant.description,
        hub_repo=HUB_REPO,
        license=LICENSE,
        parts=(ip_adapter_part(pinned),),
        derive_config=lambda configs: derive_ip_adapter_config(configs[SUBFOLDER]),
        build_target=IPAdapter,
        example_inputs=example_feature,
        run_upstream=lambda model, feature: model(feature),
        run_target=run_ip_adapter,
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=original_layout(
            (variant.unet("full"), variant.unet("tiny")), variant.base_title, KNOWN_BASES
        ),
        family_check=variant.misfit,
    )


CONVERSIONS = {component: ip_adapter_conversion(variant) for component, variant in VARIANTS.items()}

FAMILY = register(
    Family(
        name="ip_adapter",
        description="IP-Adapter image prompts for SD 1.5 and SDXL (base, plus, full-face), as released by h94",
        conversions=tuple(CONVERSIONS[component] for component in DEFAULT),
        variants=tuple(c for component, c in CONVERSIONS.items() if component not in DEFAULT),
        single_file=SingleFileFormat(
            Recognizer("an IP-Adapter (original layout)", is_original),
            write_synthetic=write_original_file,
            per_conversion=True,
        ),
        # Tried before the single-file layout's: they name a file's variant, base and image encoder.
        recognizers=(
            FACEID,
            *(variant_recognizer(VARIANTS[c], CONVERSIONS[c].name) for c in VARIANTS),
            Recognizer(
                "an IP-Adapter (original layout) of no declared variant",
                unknown_original(tuple(VARIANTS.values())),
            ),
            DIFFUSERS,
        ),
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY", "VARIANTS", "ip_adapter_conversion", "ip_adapter_part"]
