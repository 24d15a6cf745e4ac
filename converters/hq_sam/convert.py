"""`zoo convert hq-sam FILE --base BASE`: an HQ-SAM file, checked against a SAM base, converted.

The file must fit BASE (see `base.py`): its SAM has the base's architecture, every other tensor is an HQ
module, of the base's widths. It is then converted by the declared conversion of the base's size
(`sam.vit_b` → `hq_sam.vit_b`), exactly as `zoo convert hq_sam.vit_b --source FILE` would: the output is
`OUT/hq_sam.<size>/` (`model.safetensors`, `config.json`, loaded with `zoo.load` as an `HQSAM`), recorded
in `OUT/manifest.json` with the sha256 of the file read and of the files written, so `zoo verify`
(hashes, `--reproduce`) and `zoo publish` cover it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from converters._checkpoints import open_checkpoint
from converters._convert.component import BasedConversionResult, convert_component
from converters._convert.record import record_convert_run
from converters._convert.sources import SingleFileSource
from converters._single_file.replay import single_file_configs
from converters.declaration import Conversion
from converters.hq_sam import CONVERSIONS
from converters.hq_sam.base import (
    HQBase,
    check_hq_widths,
    check_sam_names,
    check_same_sam,
    resolve_base,
    sam_configs,
    weight_warnings,
)
from converters.hq_sam.original import is_hq_key
from zoo.errors import FormatError

HQSamConversionResult = BasedConversionResult  # what it wrote, as every conversion checked against a base


def conversion_for(base: HQBase) -> Conversion:
    """The declared HQ-SAM conversion for the base's size (the SAM conversion's component)."""
    return CONVERSIONS[base.conversion.component]


def convert_hq_sam(
    file: str | Path,
    base: str | Path,
    *,
    out: Path,
    dtype: torch.dtype | None = None,
    dry_run: bool = False,
) -> HQSamConversionResult:
    """Convert the HQ modules of an HQ-SAM file for `base` (see the module docstring).

    Args:
        file: The `sam_hq_vit_*.pth` release.
        base: A SAM conversion's name or its `zoo convert` output folder.
        out: The output folder.
        dtype: The output dtype (default: the file's).
        dry_run: Check and plan everything; write nothing.

    Raises:
        FormatError: The file holds no HQ-SAM module, or is damaged.
        CoverageError: A tensor of no SAM or HQ module, or an HQ tensor missing.
        ConfigError: The base is not a SAM, or the file is for another size of SAM.
    """
    source = SingleFileSource(Path(file))
    resolved = resolve_base(base)
    conversion = conversion_for(resolved)
    warnings = check_fits_base(source.path, resolved)
    check_hq_widths(conversion.derive_config(single_file_configs(conversion, source)), resolved, source.path)
    result = convert_component(conversion, source, out, dtype=dtype, dry_run=dry_run)
    result = replace(result, warnings=[*result.warnings, *warnings])
    manifest = (
        None if dry_run else record_convert_run(out, [result], [conversion], source=source.path, dtype=dtype)
    )
    return HQSamConversionResult(source.path, conversion.name, resolved.description, result, manifest)


def check_fits_base(file: Path, base: HQBase) -> list[str]:
    """The file holds HQ modules and a SAM of the base's architecture; returns warnings (other weights).

    Raises:
        FormatError: No HQ module.
        CoverageError: A tensor of no original SAM checkpoint outside the HQ modules.
        ConfigError: Its SAM is not the base's architecture.
    """
    with open_checkpoint(file) as reader:
        shapes = {key: tuple(reader.shape(key)) for key in reader.keys()}
        if not any(is_hq_key(key) for key in shapes):
            raise FormatError(
                "no HQ-SAM module in this file (mask_decoder.hf_token, hf_mlp, ...)",
                file=file,
                hint="a plain SAM checkpoint converts with `zoo convert sam --source FILE`",
            )
        configs = sam_configs(shapes, file)
        check_sam_names(shapes, configs, file)
        check_same_sam(configs, base, file)
        return weight_warnings(reader, configs, base)


__all__ = ["HQSamConversionResult", "check_fits_base", "conversion_for", "convert_hq_sam"]
