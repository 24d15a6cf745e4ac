"""Read-only views for the CLI: trace a declared conversion, describe the registry, inspect a file."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from converters import registry
from converters.declaration import Conversion, UpstreamPart
from converters.io import open_checkpoint
from converters.pipeline import TracedConversion, trace_conversion
from converters.sources import FolderSource, resolve_source
from zoo.errors import FormatError
from zoo.hub import sha256_file
from zoo.loading import CONFIG_NAME, WEIGHTS_NAME
from zoo.manifest import MANIFEST_NAME, Manifest, check_files, read_manifest

CHUNK = 1 << 20


def trace_named(name: str, source: Path | None = None) -> list[TracedConversion]:
    """Key maps for NAME, from a source's configs or from the full-size upstream configs."""
    traced: list[TracedConversion] = []
    for conversion in registry.resolve(name):
        if source is None:
            configs = conversion.synthetic_configs("full")
        else:
            resolved = resolve_source(conversion, source)
            if not isinstance(resolved, FolderSource):
                from converters.single_file import single_file_configs

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


def describe_conversions(out: Path | None = None) -> list[dict[str, Any]]:
    """Every declared conversion as plain data, its pinned sources included.

    With `out`, also whether its outputs are in `out/<name>/` and match `out/manifest.json` by sha256.
    """
    manifest = _output_manifest(out)
    return [
        {
            "name": c.name,
            "description": c.description,
            "hub_repo": c.hub_repo,
            "license": c.license,
            "parts": [p.subfolder for p in c.parts],
            "upstream_classes": [p.library_class for p in c.parts],
            "pinned": [
                {"file": p.pinned.filename, "revision": p.pinned.revision, "sha256": p.pinned.sha256}
                for p in c.parts
                if p.pinned is not None
            ],
            "sources": [_pinned_source(c, p) for p in c.parts],
            "single_file": c.single_file is not None,
            "outputs": _output_status(c.name, out, manifest) if out is not None else None,
        }
        for c in registry.all_conversions().values()
    ]


def _pinned_source(conversion: Conversion, part: UpstreamPart) -> dict[str, Any]:
    pin = part.pinned
    if pin is None:
        return {"repo": conversion.hub_repo, "file": None, "unknown": "no pinned file declared"}
    return {
        "repo": pin.repo,
        "file": pin.filename,
        "revision": pin.revision,
        "sha256": pin.sha256,
        "size": pin.size,
        "license": pin.license or conversion.license,
        "unknown": pin.unknown,
    }


def _output_manifest(out: Path | None) -> Manifest | str | None:
    if out is None or not (out / MANIFEST_NAME).is_file():
        return None
    try:
        return read_manifest(out / MANIFEST_NAME)
    except FormatError as error:
        return error.one_line()


def _output_status(name: str, out: Path, manifest: Manifest | str | None) -> dict[str, Any]:
    """present: both files are there; verified: True/False by sha256 against the manifest, None unknown."""
    folder = out / name
    present = (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file()
    status: dict[str, Any] = {"folder": str(folder), "present": present, "verified": None}
    if isinstance(manifest, str):
        return {**status, "status": f"manifest unreadable: {manifest}"}
    if manifest is None or name not in manifest.entries:
        return {**status, "status": "present, not in a manifest" if present else "absent"}
    checks = check_files(manifest, name, out, sources=False, extras=False)
    bad = [check for check in checks if check.status != "ok"]
    if not bad:
        return {**status, "verified": True, "status": "verified"}
    mismatched = [check.file for check in bad if check.status == "mismatch"]
    if mismatched:
        return {**status, "verified": False, "status": f"MISMATCH: {', '.join(mismatched)}"}
    return {**status, "status": f"{bad[0].status}: {bad[0].file}"}


@dataclass(frozen=True)
class FileReport:
    """What `zoo inspect` tells about a checkpoint."""

    path: str
    format: str
    tensors: int
    params: int
    bytes: int
    sha256: str
    dtypes: dict[str, int]
    metadata: dict[str, str]
    family: str | None
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def inspect_file(path: Path, pattern: str | None = None) -> FileReport:
    """Format, counts, dtypes, metadata, sha256 (streamed) and the model family, without loading tensors."""
    with open_checkpoint(path) as reader:
        shapes = {key: reader.shape(key) for key in reader.keys()}
        dtypes = Counter(str(reader.dtype(key)).removeprefix("torch.") for key in shapes)
        report = FileReport(
            path=str(path),
            format=reader.format,
            tensors=len(shapes),
            params=sum(math.prod(shape) for shape in shapes.values()),
            bytes=_size(path),
            sha256=sha256_file(path) if path.is_file() else "",
            dtypes=dict(sorted(dtypes.items())),
            metadata=dict(sorted(reader.metadata.items())),
            family=detect_family(shapes),
            shapes={k: list(v) for k, v in shapes.items() if pattern and fnmatch(k, pattern)},
        )
    return report


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def detect_family(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Which model a set of tensor names and shapes looks like, or None."""
    keys = set(shapes)

    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    if has("model.diffusion_model."):
        if has("conditioner.embedders.1."):
            return "sdxl (original single file, SGM layout)"
        if has("cond_stage_model.transformer."):
            return "sd15 (original single file, LDM layout)"
        return "latent diffusion UNet (original single file, unknown text encoder)"
    if "conv_in.weight" in keys and has("down_blocks.") and has("up_blocks."):
        if has("add_embedding."):
            return "sdxl.unet (diffusers layout)"
        return (
            "sd15.unet (diffusers layout)" if has("down_blocks.0.attentions.") else "UNet (diffusers layout)"
        )
    if has("encoder.conv_in.") and has("decoder.conv_in."):
        return "autoencoder (diffusers layout)"
    for prefix in ("text_model.", ""):
        embedding = shapes.get(f"{prefix}embeddings.token_embedding.weight")
        if embedding is not None:
            hidden = embedding[1]
            return {768: "CLIP-L text encoder", 1280: "OpenCLIP bigG text encoder"}.get(
                hidden, "CLIP text encoder"
            )
    if any("lora" in key for key in keys):
        return "LoRA"
    return None


__all__ = ["FileReport", "describe_conversions", "detect_family", "inspect_file", "trace_named"]
