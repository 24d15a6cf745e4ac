"""A folder of downloaded LoRAs at a time: each file converted on its own, a bad one refused with its reason.

Every file with a weights suffix directly in the folder is tried (zoo's own converted LoRAs and the
output folder are left alone). A file that cannot be converted (not a LoRA, broken, an unsupported
variant, made for another base) is refused with the one-line reason and hint zoo gives it alone, and
the others go on; nothing is written for a refused file. Files sharing a name (`style.safetensors` and
`style.bin`) would write the same output, so they are refused together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters._checkpoints import open_checkpoint
from converters.lora.convert import LoraConversionResult, convert_lora
from zoo.errors import ConfigError, ZooError
from zoo.formats import FORMAT_KEY, LORA_FORMATS

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class FolderItem:
    """One file of the folder: what it gave, or why it was refused.

    Attributes:
        source: The file.
        result: Its conversion, when it converted.
        error: Why it was refused (one line), when it was.
        hint: What to do about it, when zoo knows.
    """

    source: Path
    result: LoraConversionResult | None = None
    error: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.result is not None:
            return {"source": str(self.source), "status": "converted", **self.result.to_dict()}
        return {"source": str(self.source), "status": "refused", "error": self.error, "hint": self.hint}


@dataclass(frozen=True)
class FolderConversion:
    """What `convert_lora_folder` did with each file, in name order."""

    folder: Path
    out: Path
    items: tuple[FolderItem, ...]

    @property
    def converted(self) -> list[FolderItem]:
        return [item for item in self.items if item.result is not None]

    @property
    def refused(self) -> list[FolderItem]:
        return [item for item in self.items if item.result is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "out": str(self.out),
            "converted": len(self.converted),
            "refused": len(self.refused),
            "files": [item.to_dict() for item in self.items],
        }


def lora_files(folder: Path, out: Path) -> list[Path]:
    """The files of `folder` to try: weights files, not zoo's own LoRAs, not inside `out`."""
    found = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES and not _inside(path, out)
    ]
    return [path for path in found if not _zoo_lora(path)]


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def _zoo_lora(path: Path) -> bool:
    """A LoRA zoo converted (its header says so); unreadable files are tried, to be refused with why."""
    if path.suffix.lower() != ".safetensors":
        return False
    try:
        with open_checkpoint(path) as reader:
            return reader.metadata.get(FORMAT_KEY) in LORA_FORMATS
    except (ZooError, OSError):
        return False


def convert_lora_folder(
    folder: str | Path,
    base: str | Path,
    *,
    out: Path,
    scale: float = 1.0,
    dry_run: bool = False,
    on_file: Callable[[Path], None] | None = None,
) -> FolderConversion:
    """Convert every LoRA file in `folder` for `base`, going on past the ones that cannot be.

    Args:
        folder: The folder (its files, not its subfolders).
        base: As for `convert_lora`: a family, a `zoo convert` output folder, a pipeline folder.
        out: The output folder (each file keeps its name; recorded in `OUT/manifest.json`).
        scale: Folded into every file's weights (1 for files with DoRA, which are refused otherwise).
        dry_run: Read, place and check every file; write nothing.
        on_file: Called after each file (for a progress bar).

    Raises:
        ConfigError: The folder holds no weights file to try.
    """
    files = lora_files(Path(folder), out)
    if not files:
        raise ConfigError(
            f"no LoRA files here (looked for {', '.join(WEIGHT_SUFFIXES)})",
            file=folder,
            hint="pass a file or another folder",
        )
    stems = Counter(path.stem for path in files)
    items: list[FolderItem] = []
    for path in files:
        if stems[path.stem] > 1:
            items.append(_same_name(path, files))
        else:
            items.append(_convert_one(path, base, out, scale, dry_run))
        if on_file is not None:
            on_file(path)
    return FolderConversion(Path(folder), out, tuple(items))


def _convert_one(path: Path, base: str | Path, out: Path, scale: float, dry_run: bool) -> FolderItem:
    try:
        return FolderItem(path, convert_lora(path, base, out=out, scale=scale, dry_run=dry_run))
    except ZooError as error:
        return FolderItem(path, error=error.message, hint=error.hint)
    except OSError as error:
        return FolderItem(path, error=f"cannot read the file: {error.strerror or error}")


def _same_name(path: Path, files: list[Path]) -> FolderItem:
    twins = [other.name for other in files if other.stem == path.stem and other != path]
    return FolderItem(
        path,
        error=f"{', '.join(twins)} has the same name: both would be written as {path.stem}.safetensors",
        hint="rename one of them",
    )


__all__ = ["WEIGHT_SUFFIXES", "FolderConversion", "FolderItem", "convert_lora_folder", "lora_files"]
