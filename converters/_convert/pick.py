"""Which of a family's alternative conversions a source fits (families declaring `picks_by_source`).

Sizes of one model (ViT-H or ViT-bigG) or variants of one adapter are alternatives: a source holds one
of them. Each candidate reads the source's configs (a folder's config.json, or a single file's shapes),
derives our config and checks it is its own (`Conversion.family_check`); the first that fits is chosen,
and when none does the error says why each one did not.
"""

from __future__ import annotations

from collections.abc import Sequence

from converters._convert.sources import FolderSource, resolve_source
from converters._single_file.replay import single_file_configs
from converters.declaration import Conversion
from zoo.errors import ConfigError, ZooError


def pick_conversion(
    conversions: Sequence[Conversion], source: str, revision: str | None = None
) -> Conversion:
    """The first of `conversions` that `source` fits.

    Raises:
        ConfigError: The source fits none of them; the message gives each one's reason.
    """
    reasons: list[str] = []
    for conversion in conversions:
        misfit = _misfit(conversion, source, revision)
        if misfit is None:
            return conversion
        reasons.append(f"{conversion.name}: {misfit}")
    raise ConfigError(
        f"the source fits none of the conversions: {'; '.join(reasons)}",
        file=source,
        hint="pass a source of one of them, or name the conversion to see its own error",
    )


def _misfit(conversion: Conversion, source: str, revision: str | None) -> str | None:
    """Why the source is not this conversion's, or None when it is."""
    try:
        resolved = resolve_source(conversion, source, revision)
        if isinstance(resolved, FolderSource):
            configs = resolved.configs
        else:
            configs = single_file_configs(conversion, resolved)
        config = conversion.derive_config(configs)
    except ZooError as error:
        return error.message
    return conversion.family_check(config)


__all__ = ["pick_conversion"]
