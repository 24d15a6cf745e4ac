"""Which of a family's alternative conversions a source is (families declaring `alternatives`).

Sizes of one model (DINOv2 ViT-S/B/L/g, SAM ViT-B/L/H) or variants of one adapter are alternatives:
a source holds one of them. A Hub repo id that one conversion declares is that one, without a
download. Otherwise each candidate reads the source's configs (a folder's config.json, or a single
file's shapes), derives our config and checks it is its own (`Conversion.family_check`). Exactly one
must fit: when none does the error says why each did not, and when several do (a model of no
released size fits every conversion of its kind) it asks to name one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters._convert.sources import FolderSource, resolve_source
from converters._single_file.replay import single_file_configs
from converters.declaration import Conversion
from zoo.errors import ConfigError, ZooError


def pick_conversion(
    conversions: Sequence[Conversion], source: str, revision: str | None = None
) -> Conversion:
    """The one of `conversions` that `source` (a path or a Hub repo id) is.

    Raises:
        ConfigError: The source fits none of them (the message gives each one's reason), or several.
    """
    if not Path(source).exists():
        by_repo = [conversion for conversion in conversions if conversion.hub_repo == source]
        if len(by_repo) == 1:
            return by_repo[0]
    results = {conversion.name: _misfit(conversion, source, revision) for conversion in conversions}
    errors = [result for result in results.values() if isinstance(result, ZooError)]
    if errors and len(errors) == len(results):
        raise errors[0]  # the source itself is unreadable as any of them: its own error says why
    misfits = {
        name: result.message if isinstance(result, ZooError) else result for name, result in results.items()
    }
    fitting = [conversion for conversion in conversions if misfits[conversion.name] is None]
    if len(fitting) == 1:
        return fitting[0]
    if fitting:
        names = ", ".join(conversion.name for conversion in fitting)
        raise ConfigError(
            f"the source fits several conversions ({names}): it does not say which one it is",
            file=source,
            hint=f"name one: zoo convert {fitting[0].name} --source {source}",
        )
    reasons = "; ".join(f"{name}: {misfit}" for name, misfit in misfits.items())
    raise ConfigError(
        f"the source fits none of the conversions: {reasons}",
        file=source,
        hint="pass a source of one of them, or name the conversion to see its own error",
    )


def _misfit(conversion: Conversion, source: str, revision: str | None) -> str | ZooError | None:
    """Why the source is not this conversion's (its config's misfit, or the error reading it), or None."""
    try:
        resolved = resolve_source(conversion, source, revision)
        if isinstance(resolved, FolderSource):
            configs = resolved.configs
        else:
            configs = single_file_configs(conversion, resolved)
        config = conversion.derive_config(configs)
    except ZooError as error:
        return error
    return conversion.family_check(config)


__all__ = ["pick_conversion"]
