"""Carrying a conversion's assets (tokenizers, scheduler config) from its source into the output folder.

Each declared `Asset` is a folder of small files copied byte for byte into `OUT/<name>/<subfolder>/`.
They are read and checked before anything is written (a tokenizer zoo could not use is an error
naming the file); an asset the source lacks is a warning, since the weights convert without it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from converters._convert.sources import FolderSource, Source
from converters.declaration import Asset, Conversion
from zoo.files import write_bytes_atomic


@dataclass(frozen=True)
class CarriedAsset:
    """One asset found in the source: its declaration and the files present."""

    asset: Asset
    files: tuple[Path, ...]


@dataclass(frozen=True)
class CarriedAssets:
    """The assets a conversion carries from one source, checked."""

    conversion: Conversion
    found: tuple[CarriedAsset, ...]
    warnings: tuple[str, ...]

    def write(self, folder: Path, *, durable: bool = False) -> None:
        """Copy every found asset into `folder`, replacing what an earlier conversion left there."""
        for asset in self.conversion.assets:
            shutil.rmtree(folder / asset.subfolder, ignore_errors=True)
        for carried in self.found:
            target = folder / carried.asset.subfolder
            target.mkdir(parents=True, exist_ok=True)
            for path in carried.files:
                write_bytes_atomic(target / path.name, path.read_bytes(), durable=durable)

    def outputs(self) -> dict[str, str]:
        """File (relative to the output folder) -> role."""
        return {f"{c.asset.subfolder}/{path.name}": c.asset.role for c in self.found for path in c.files}

    def source_roles(self) -> dict[str, str]:
        """Source file -> role."""
        return {str(path): c.asset.role for c in self.found for path in c.files}


def carry_assets(conversion: Conversion, source: Source) -> CarriedAssets:
    """The assets `source` holds for `conversion`, each checked as zoo will read it."""
    present = source.assets if isinstance(source, FolderSource) else {}
    found = tuple(
        CarriedAsset(asset, tuple(present[asset.subfolder]))
        for asset in conversion.assets
        if asset.subfolder in present
    )
    for carried in found:
        _check(carried)
    missing = [asset for asset in conversion.assets if asset.subfolder not in present]
    return CarriedAssets(conversion, found, tuple(_absent(conversion, asset, source) for asset in missing))


def _check(carried: CarriedAsset) -> None:
    """Read the asset as zoo will (the source folder holds at least the files carried)."""
    if carried.asset.check is not None:
        carried.asset.check(carried.files[0].parent)


def _absent(conversion: Conversion, asset: Asset, source: Source) -> str:
    where = (
        "an original single file holds none" if not isinstance(source, FolderSource) else "not in the source"
    )
    return (
        f"no {asset.subfolder}/ carried ({where}): {conversion.name} converts without it, but using the "
        f"output for generation needs its {asset.role}"
    )


__all__ = ["CarriedAsset", "CarriedAssets", "carry_assets"]
