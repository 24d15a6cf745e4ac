"""Resolve `--source` into local files: a diffusers pipeline or component folder, a single file,
or a Hub repository at a pinned revision (through the local HF cache)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from converters.declaration import Conversion, UpstreamPart
from zoo.errors import ConfigError, FormatError
from zoo.hub import download_file, download_optional_files, download_pipeline_parts

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class FolderSource:
    """Upstream model folders (diffusers / transformers `save_pretrained` layout), one per part."""

    folders: dict[str, Path]  # subfolder -> folder
    weights: dict[str, Path]  # subfolder -> weights file (or shard index)
    configs: dict[str, dict[str, Any]]  # subfolder -> config.json content
    repo: str | None = None
    revision: str | None = None
    assets: dict[str, list[Path]] = field(default_factory=dict)  # asset subfolder -> its files present

    @property
    def files(self) -> list[Path]:
        configs = [folder / "config.json" for folder in self.folders.values()]
        return [*self.weights.values(), *configs, *(path for paths in self.assets.values() for path in paths)]


@dataclass(frozen=True)
class SingleFileSource:
    """An original single-file checkpoint (SGM / LDM layout)."""

    path: Path

    @property
    def files(self) -> list[Path]:
        return [self.path]


Source = FolderSource | SingleFileSource


def resolve_source(conversion: Conversion, source: str | Path, revision: str | None = None) -> Source:
    """Local files for `conversion` from a path or a Hub repository id."""
    path = Path(source)
    if path.is_file():
        if conversion.single_file is None:
            raise ConfigError(f"{conversion.name} cannot be converted from a single file", file=path)
        return SingleFileSource(path)
    if path.is_dir():
        return _folder_source(conversion, path)
    if _REPO_ID.match(str(source)) and not str(source).startswith((".", "/")):
        return resolve_hub_source(conversion, str(source), revision)
    raise FormatError(
        "no such file or folder, and not a Hub repository id",
        file=path,
        hint="pass a diffusers pipeline folder, a component folder, a single-file checkpoint or ORG/NAME",
    )


def resolve_hub_source(conversion: Conversion, repo: str, revision: str | None = None) -> Source:
    """Each part from the Hub (or the local cache) at `revision`, else at its own pinned revision."""
    single = [part for part in conversion.parts if part.hub_single_file]
    if single:
        return _hub_single_file(conversion, single[0], repo, revision)
    folders: dict[str, Path] = {}
    resolved: list[str] = []
    for part in conversion.parts:
        pinned = part.pinned.revision if part.pinned and part.pinned.repo == repo else None
        folder = part.subfolder if part.repo_folder is None else part.repo_folder
        pins = [part.pinned] if part.pinned is not None else []
        root, used = download_pipeline_parts(repo, [folder], revision=revision or pinned, pins=pins)
        folders[part.subfolder] = root / folder
        resolved.append(used or "?")
    source = _from_folders(conversion, folders, repo=repo, revision=",".join(sorted(set(resolved))))
    return replace(
        source, assets=_hub_assets(conversion, repo, resolved[0] if len(set(resolved)) == 1 else None)
    )


def _hub_assets(conversion: Conversion, repo: str, revision: str | None) -> dict[str, list[Path]]:
    """The assets' files the repo holds at that revision (absent ones are skipped, not errors)."""
    found: dict[str, list[Path]] = {}
    for asset in conversion.assets:
        names = [f"{asset.subfolder}/{name}" for name in asset.files]
        paths = download_optional_files(repo, names, revision)
        if paths:
            found[asset.subfolder] = paths
    return found


def _hub_single_file(
    conversion: Conversion, part: UpstreamPart, repo: str, revision: str | None
) -> SingleFileSource:
    """An original single file from the Hub, verified against its pin when read at the pinned revision."""
    pin = part.pinned
    if pin is None or conversion.single_file is None:
        raise ConfigError(f"{conversion.name} declares a Hub single file but no pin or single-file layout")
    pinned = pin.revision if pin.repo == repo else None
    used = revision or pinned
    at_pin = used is not None and used == pin.revision
    path = download_file(
        repo, pin.filename, used, sha256=pin.sha256 if at_pin else None, size=pin.size if at_pin else None
    )
    return SingleFileSource(path)


def _folder_source(
    conversion: Conversion, path: Path, repo: str | None = None, revision: str | None = None
) -> Source:
    folders = {part.subfolder: _part_folder(conversion, part, path) for part in conversion.parts}
    pipeline = path if all(folder.parent == path for folder in folders.values()) else None
    source = _from_folders(conversion, folders, repo, revision)
    return replace(source, assets=local_assets(conversion, pipeline)) if pipeline else source


def local_assets(conversion: Conversion, pipeline: Path) -> dict[str, list[Path]]:
    """The assets' files a pipeline folder holds (`tokenizer/vocab.json`, ...); absent ones are skipped."""
    found: dict[str, list[Path]] = {}
    for asset in conversion.assets:
        paths = [pipeline / asset.subfolder / name for name in asset.files]
        present = [path for path in paths if path.is_file()]
        if present:
            found[asset.subfolder] = present
    return found


def _from_folders(
    conversion: Conversion, folders: dict[str, Path], repo: str | None = None, revision: str | None = None
) -> FolderSource:
    return FolderSource(
        folders=folders,
        weights={part.subfolder: find_weights(folders[part.subfolder], part) for part in conversion.parts},
        configs={sub: read_config(folder / "config.json") for sub, folder in folders.items()},
        repo=repo,
        revision=revision,
    )


def _part_folder(conversion: Conversion, part: UpstreamPart, path: Path) -> Path:
    if (path / part.subfolder / "config.json").is_file():
        return path / part.subfolder
    if (path / "config.json").is_file() and not (path / "model_index.json").is_file():
        if len(conversion.parts) > 1:
            subs = ", ".join(p.subfolder for p in conversion.parts)
            raise ConfigError(
                f"{conversion.name} reads several folders ({subs}): pass the pipeline folder that holds them",
                file=path,
            )
        return path
    raise ConfigError(
        f"no `{part.subfolder}/config.json` here: {conversion.name} needs the pipeline's {part.subfolder} folder",
        file=path,
        hint="pass a diffusers pipeline folder (with model_index.json) or the component folder itself",
    )


def find_weights(folder: Path, part: UpstreamPart) -> Path:
    """The weights file of an upstream folder: preferred names first, then any safetensors, then pickles."""
    for name in part.weight_names:
        for candidate in (folder / name, folder / f"{name}.index.json"):
            if candidate.is_file():
                return candidate
    found = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if len(found) == 1:
        return found[0]
    listing = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise FormatError(
        f"cannot tell which weights file to read (found: {listing})",
        file=folder,
        hint=f"expected one of {', '.join(part.weight_names)}",
    )


def read_config(path: Path) -> dict[str, Any]:
    """A `config.json`, with a clear error when it is missing or not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FormatError("missing config.json", file=path) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise FormatError(f"config.json is not valid JSON: {error}", file=path) from error
    if not isinstance(data, dict):
        raise FormatError("config.json does not hold an object", file=path)
    return data  # pyright: ignore[reportUnknownVariableType]


__all__ = [
    "FolderSource",
    "SingleFileSource",
    "Source",
    "find_weights",
    "local_assets",
    "read_config",
    "resolve_source",
]
