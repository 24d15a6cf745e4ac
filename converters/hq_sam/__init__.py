"""HQ-SAM: `hq_sam.vit_b`, `hq_sam.vit_l`, `hq_sam.vit_h`, the HQ modules of SysCV's `sam_hq_vit_{b,l,h}.pth`
for the Segment Anything of the same size, as an `HQSAM` model that `HQSAMAdapter` injects into that SAM.

Upstream: https://github.com/SysCV/sam-hq (the `segment-anything-hq` package); weights
https://huggingface.co/lkeab/hq-sam (Apache 2.0). The files hold a whole frozen SAM plus the HQ
modules; these conversions read the HQ modules (against SysCV's own, see `reference.py`) and leave the
SAM to the sam family. The conversions are alternatives: `zoo convert hq_sam --source FILE` converts the
size the file is, and `zoo convert hq-sam FILE --base BASE` checks that it fits a SAM base first
(`convert.py`).
"""

from __future__ import annotations

from converters.declaration import Conversion, PinnedFile, Size, UpstreamConfigs, UpstreamPart
from converters.family import Family, SingleFileFormat
from converters.hq_sam.original import LAYOUT, RECOGNIZER, RECOGNIZERS, write_original
from converters.hq_sam.reference import (
    SUBFOLDER,
    build_reference,
    derive_config,
    example_inputs,
    overrides,
    run_ours,
    run_reference,
    upstream_config,
)
from converters.hq_sam.sizes import FAMILY_NAME, RELEASES, HQRelease, size_check
from converters.registry import register
from zoo.foundationals.segment_anything.hq_sam import HQSAM, HQSAMConfig

HUB_REPO = "lkeab/hq-sam"
LICENSE = "apache-2.0"
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"


def _part(release: HQRelease) -> UpstreamPart:
    pinned = PinnedFile(HUB_REPO, release.hub_file, None, None, None, LICENSE, UNPINNED)
    return UpstreamPart(
        SUBFOLDER,
        "segment_anything_hq MaskDecoderHQ (HQ modules)",
        build_reference,
        pinned=pinned,
        hub_single_file=True,
    )


def _synthetic(release: HQRelease) -> dict[Size, HQSAMConfig]:
    return {"full": release.config, "tiny": HQSAMConfig.tiny()}


def _conversion(release: HQRelease) -> Conversion:
    configs = _synthetic(release)

    def derive(upstream: UpstreamConfigs) -> HQSAMConfig:
        return derive_config(upstream[SUBFOLDER])

    return Conversion(
        name=release.conversion,
        description=f"HQ-SAM's modules (HQ token, its MLP, feature fusion) for SAM {release.sam.title}",
        hub_repo=HUB_REPO,
        license=LICENSE,
        parts=(_part(release),),
        derive_config=derive,
        build_target=HQSAM,
        example_inputs=example_inputs,
        run_upstream=run_reference,
        run_target=run_ours,
        overrides=overrides,
        synthetic_configs=lambda size: {SUBFOLDER: upstream_config(configs[size])},
        single_file=LAYOUT,
        family_check=size_check(release),
        upstream_configs_of=lambda config: {SUBFOLDER: upstream_config(config)},
    )


# By the component of the SAM conversion each is for (`vit_b`: `hq_sam.vit_b` goes with `sam.vit_b`).
CONVERSIONS = {release.name: _conversion(release) for release in RELEASES}

FAMILY = register(
    Family(
        name=FAMILY_NAME,
        description="HQ-SAM modules (sam_hq_vit_b/l/h.pth) for the Segment Anything of the same size",
        conversions=tuple(CONVERSIONS.values()),
        single_file=SingleFileFormat(RECOGNIZER, write_original, per_conversion=True),
        # Tried before the single-file layout's: they name a file's size.
        recognizers=RECOGNIZERS,
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY", "HUB_REPO", "LICENSE"]
