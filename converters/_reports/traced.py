"""`zoo trace NAME`: key maps for a name, from a source's configs or from the full-size upstream configs."""

from __future__ import annotations

from pathlib import Path

from converters import registry
from converters._convert.component import TracedConversion, trace_conversion
from converters._convert.sources import FolderSource, resolve_source
from converters._single_file.replay import single_file_configs


def trace_named(name: str, source: Path | None = None) -> list[TracedConversion]:
    """Key maps for NAME, from a source's configs or from the full-size upstream configs."""
    traced: list[TracedConversion] = []
    for conversion in registry.resolve(name):
        if source is None:
            configs = conversion.synthetic_configs("full")
        else:
            resolved = resolve_source(conversion, source)
            if not isinstance(resolved, FolderSource):
                configs = single_file_configs(conversion, resolved)
            else:
                configs = resolved.configs
        traced.append(
            trace_conversion(
                conversion,
                {part.subfolder: configs[part.subfolder] for part in conversion.parts},
                use_cache=False,  # `zoo trace` shows a fresh trace, never a remembered one
            )
        )
    return traced


__all__ = ["trace_named"]
