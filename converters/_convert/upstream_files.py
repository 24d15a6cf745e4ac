"""The declared upstream files a local file can be recognised as, by its sha256.

A conversion's parts pin their upstream weights (repo, file, revision, sha256); a local file with the
same sha256 is that file, whatever its path, so it carries that file's licence and repository. This is
how `zoo publish` publishes a conversion of a local copy of SDXL without the publisher declaring anything.
"""

from __future__ import annotations

from converters import registry
from converters._convert.record import hub_license
from zoo.licensing import UpstreamFile


def declared_upstream_files() -> dict[str, UpstreamFile]:
    """Every pinned upstream file with a known sha256 and licence, by sha256."""
    files: dict[str, UpstreamFile] = {}
    for conversion in registry.all_conversions().values():
        for part in conversion.parts:
            pin = part.pinned
            license, _ = hub_license(conversion, pin.repo) if pin is not None else (None, None)
            if pin is not None and pin.sha256 is not None and license is not None:
                files[pin.sha256] = UpstreamFile(pin.repo, pin.filename, pin.revision, license)
    return files


__all__ = ["declared_upstream_files"]
