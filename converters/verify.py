"""`zoo verify`: check converted outputs against their manifest.

- hashes: every file an entry names that is present locally has the recorded size and sha256.
- reproduce: convert again from the recorded sources into a temporary folder and compare bytes
  (catches nondeterminism, code drift and edited outputs), naming the first tensor that differs.
- parity: run the upstream reference and our converted model on the same seeded inputs; record the
  error, or check it has not grown beyond max(2 × recorded, 1e-5) (float32).

LoRA entries (`"type": "lora"`) are checked the same way, except that `reproduce` runs
`convert_lora` again from the recorded LoRA file, base and scale, and `parity` is not applicable
(it is measured by the test suite against peft/diffusers).
"""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from converters.io import read_header
from zoo import __version__
from zoo.errors import ConfigError, FormatError
from zoo.hub import sha256_file
from zoo.loading import CONFIG_NAME, WEIGHTS_NAME
from zoo.manifest import (
    LORA_PARITY,
    MANIFEST_NAME,
    FileCheck,
    Manifest,
    check_files,
    is_lora,
    locked,
    read_manifest,
    recipe_revision,
    relative,
    select,
    weights_output,
    write_manifest,
)

PARITY_FLOOR = 1e-5  # float32: the error may always be this large, whatever was recorded
PARITY_GROWTH = 2.0  # ... and twice what was recorded
CHUNK = 1 << 20
Check = Literal["hashes", "reproduce", "parity"]
Status = Literal["ok", "mismatch", "missing", "unknown", "extra", "recorded", "not applicable"]


@dataclass(frozen=True)
class Finding:
    """One verified fact (or failed one) about one entry."""

    entry: str
    check: Check
    status: Status
    subject: str  # the file (as the manifest names it) or the model output concerned
    detail: str
    tensor: str | None = None

    def fatal(self, strict: bool) -> bool:
        """A mismatch always fails; missing, unknown and extra files fail under --strict."""
        return self.status == "mismatch" or (strict and self.status in ("missing", "unknown", "extra"))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyReport:
    """Everything `zoo verify` found."""

    findings: list[Finding]
    strict: bool

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.fatal(self.strict)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "strict": self.strict,
            "findings": [{**f.to_dict(), "fatal": f.fatal(self.strict)} for f in self.findings],
        }


@dataclass(frozen=True)
class Target:
    """Entries of one manifest to verify."""

    manifest: Manifest
    names: list[str]


def verify(
    targets: Sequence[str] = (),
    out: Path = Path("out"),
    *,
    hashes: bool = True,
    reproduce: bool = False,
    parity: bool = False,
    device: str = "cpu",
    strict: bool = False,
    record: bool = False,
) -> VerifyReport:
    """Verify manifest entries (names, output folders or manifest files; default: all of `out`)."""
    findings: list[Finding] = []
    for target in resolve_targets(targets, out):
        for name in target.names:
            if hashes:
                findings += hash_findings(target.manifest, name, out)
            if reproduce:
                findings += reproduce_findings(target.manifest, name, out)
            if parity:
                findings += parity_findings(target.manifest, name, out, device, record)
    return VerifyReport(findings, strict)


def resolve_targets(args: Sequence[str], out: Path) -> list[Target]:
    """Arguments -> manifests and entry names.

    An argument is a manifest file, an output folder holding `manifest.json`, one component folder
    inside it (`OUT/sdxl.unet`), an output file next to a `manifest.json` that names it (a converted
    LoRA, `OUT/style.safetensors`), or a name (`sdxl`, `sdxl.unet`, `lora/style`) looked up in
    `OUT/manifest.json`.
    """
    if not args:
        manifest = read_manifest(out / MANIFEST_NAME)
        return [Target(manifest, select(manifest))]
    names: list[str] = []
    targets: list[Target] = []
    for arg in args:
        path = Path(arg)
        if path.is_file() and path.suffix == ".safetensors" and (path.parent / MANIFEST_NAME).is_file():
            manifest = read_manifest(path.parent / MANIFEST_NAME)
            targets.append(Target(manifest, _naming(manifest, path)))
        elif path.is_file():
            manifest = read_manifest(path)
            targets.append(Target(manifest, select(manifest)))
        elif (path / MANIFEST_NAME).is_file():
            manifest = read_manifest(path / MANIFEST_NAME)
            targets.append(Target(manifest, select(manifest)))
        elif (path / CONFIG_NAME).is_file() and (path.parent / MANIFEST_NAME).is_file():
            manifest = read_manifest(path.parent / MANIFEST_NAME)
            targets.append(Target(manifest, select(manifest, [path.name])))
        elif path.exists():
            raise ConfigError("neither a manifest nor an output folder with one", file=path)
        else:
            names.append(arg)
    if names:
        manifest = read_manifest(out / MANIFEST_NAME)
        targets.append(Target(manifest, select(manifest, names)))
    return targets


def _naming(manifest: Manifest, path: Path) -> list[str]:
    """The entries with `path` among their outputs."""
    file = relative(path, manifest.folder)
    names = [n for n, e in sorted(manifest.entries.items()) if any(o["file"] == file for o in e["outputs"])]
    if not names:
        raise ConfigError(
            f"no entry of {manifest.path} names this file", file=path, hint="pass the folder or an entry name"
        )
    return names


# -- hashes -----------------------------------------------------------------------------------------


def hash_findings(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    return [_from_check(check, "hashes") for check in check_files(manifest, name, out)]


def _from_check(check: FileCheck, kind: Check) -> Finding:
    return Finding(check.entry, kind, check.status, check.file, f"{check.role}: {check.detail}")


# -- reproduce --------------------------------------------------------------------------------------


def reproduce_findings(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    """Convert again from the manifest's sources into a temp folder and compare every output."""
    from converters.run import convert

    entry = manifest.entries[name]
    blocked = _source_findings(manifest, name, "reproduce")
    if blocked:
        return blocked
    if is_lora(entry):
        return reproduce_lora(manifest, name, out)
    source, revision = source_argument(manifest, entry)
    root = manifest.output_root(out)
    with tempfile.TemporaryDirectory(prefix="zoo-reproduce-") as temp:
        run = convert(name, out=Path(temp), source=source, revision=revision, dtype=_dtype(entry))
        fresh_folder = run.results[0].folder
        return [
            compare_output(name, output, _fresh_file(fresh_folder, output), root / output["file"])
            for output in entry["outputs"]
        ]


def reproduce_lora(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    """Convert a LoRA entry's file again onto its recorded base and compare the bytes (and the base)."""
    from converters.lora import convert_lora

    entry = manifest.entries[name]
    recipe, recorded_base = entry["convert"], entry["base"]
    if recipe["base"] is None:
        why = recipe["unknown"].get("base", "no base recorded")
        return [Finding(name, "reproduce", "unknown", "base", f"cannot reproduce: {why}")]
    label = f"base {recipe['base']}"
    base: str | Path = recipe["base"]
    if recorded_base["kind"] == "folder":
        folder = manifest.folder / recipe["base"]
        if not folder.is_dir():
            detail = f"cannot reproduce: the base folder {folder} is not here"
            return [Finding(name, "reproduce", "missing", label, detail)]
        base = folder
    output = weights_output(entry)
    with tempfile.TemporaryDirectory(prefix="zoo-reproduce-") as temp:
        fresh = convert_lora(manifest.folder / recipe["source"], base, out=Path(temp), scale=recipe["scale"])
        compared = compare_output(name, output, fresh.output, manifest.output_root(out) / output["file"])
    return [_base_finding(name, label, recorded_base["models"], fresh.base_models), compared]


def _base_finding(
    name: str, label: str, recorded: Sequence[Mapping[str, Any]], fresh: Sequence[Mapping[str, Any]]
) -> Finding:
    """The base's models now (conversion, config and key-map digests) against the recorded ones."""
    if [dict(model) for model in recorded] == [dict(model) for model in fresh]:
        models = ", ".join(f"{m['conversion']} (config {m['config_sha256'][:12]})" for m in fresh)
        return Finding(name, "reproduce", "ok", label, f"the same base models: {models}")
    now = {model["component"]: model for model in fresh}
    for model in recorded:
        current = now.get(model["component"])
        if current is None:
            return Finding(
                name, "reproduce", "mismatch", label, f"the LoRA no longer changes its {model['component']}"
            )
        for key in ("conversion", "config_sha256", "keymap_sha256"):
            if current[key] != model[key]:
                detail = f"{model['component']} {key} is now {current[key]}, the manifest says {model[key]}"
                return Finding(name, "reproduce", "mismatch", label, detail)
    extra = sorted(set(now) - {model["component"] for model in recorded})
    return Finding(name, "reproduce", "mismatch", label, f"the LoRA now also changes {', '.join(extra)}")


def _fresh_file(folder: Path, output: Mapping[str, Any]) -> Path:
    return folder / (WEIGHTS_NAME if output["role"] == "weights" else CONFIG_NAME)


def compare_output(name: str, output: Mapping[str, Any], fresh: Path, local: Path) -> Finding:
    """A fresh conversion's file against the manifest's hash and against the local copy."""
    label, recorded = output["file"], output["sha256"]
    fresh_sha = sha256_file(fresh)
    local_sha = sha256_file(local) if local.is_file() else None
    if recorded is not None and fresh_sha != recorded:
        if local_sha == recorded:
            where, tensor = first_difference(local, fresh)
        else:
            where, tensor = "the recorded bytes are not here to compare", None
        detail = f"a fresh conversion gives sha256 {fresh_sha}, the manifest says {recorded}: {where}"
        return Finding(name, "reproduce", "mismatch", label, detail, tensor)
    if local_sha is not None and local_sha != fresh_sha:
        where, tensor = first_difference(local, fresh)
        detail = f"the local file (sha256 {local_sha}) differs from a fresh conversion: {where}"
        return Finding(name, "reproduce", "mismatch", label, detail, tensor)
    if recorded is None:
        detail = f"no sha256 recorded ({output['unknown'].get('sha256', '')}); a fresh conversion gives {fresh_sha}"
        return Finding(name, "reproduce", "unknown", label, detail)
    return Finding(name, "reproduce", "ok", label, f"reproduced byte for byte (sha256 {fresh_sha})")


def first_difference(a: Path, b: Path) -> tuple[str, str | None]:
    """Where two files first differ: a tensor, a metadata key or a JSON key when the format says."""
    if a.suffix == ".safetensors":
        return _safetensors_difference(a, b)
    if a.suffix == ".json":
        return _json_difference(a, b)
    return _byte_difference(a, b), None


def _safetensors_difference(a: Path, b: Path) -> tuple[str, str | None]:
    try:
        left, right = read_header(a), read_header(b)
    except FormatError as error:
        return f"header unreadable: {error.one_line()}", None
    for key in sorted(set(left.metadata) | set(right.metadata)):
        if left.metadata.get(key) != right.metadata.get(key):
            return f"metadata {key!r}: {left.metadata.get(key)!r} vs {right.metadata.get(key)!r}", None
    for name in sorted(set(left.entries) ^ set(right.entries)):
        return f"tensor {name!r} is in only one of the files", name
    for name, entry in sorted(left.entries.items(), key=lambda item: item[1].begin):
        other = right.entries[name]
        if (entry.dtype, entry.shape) != (other.dtype, other.shape):
            return (
                f"tensor {name!r}: {entry.dtype}{list(entry.shape)} vs {other.dtype}{list(other.shape)}",
                name,
            )
        if not _same_bytes(a, left.data_start + entry.begin, b, right.data_start + other.begin, entry.nbytes):
            return f"tensor {name!r}: its values differ", name
    return "the headers are laid out differently", None


def _same_bytes(a: Path, start_a: int, b: Path, start_b: int, count: int) -> bool:
    with a.open("rb") as left, b.open("rb") as right:
        left.seek(start_a)
        right.seek(start_b)
        while count > 0:
            size = min(CHUNK, count)
            if left.read(size) != right.read(size):
                return False
            count -= size
    return True


def _json_difference(a: Path, b: Path) -> tuple[str, str | None]:
    try:
        left, right = json.loads(a.read_text(encoding="utf-8")), json.loads(b.read_text(encoding="utf-8"))
    except ValueError:
        return _byte_difference(a, b), None
    path = _json_path(left, right, "")
    return (f"key {path or '(top)'} differs", None) if path is not None else ("formatting differs", None)


def _json_path(left: Any, right: Any, at: str) -> str | None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right)):
            found = _json_path(left.get(key), right.get(key), f"{at}.{key}" if at else str(key))
            if found is not None:
                return found
        return None
    return None if left == right else at


def _byte_difference(a: Path, b: Path) -> str:
    offset = 0
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            x, y = left.read(CHUNK), right.read(CHUNK)
            if x != y:
                index = next(
                    (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y))
                )
                return f"first differing byte at offset {offset + index}"
            if not x:
                return "identical"
            offset += len(x)


# -- parity -----------------------------------------------------------------------------------------


def parity_findings(manifest: Manifest, name: str, out: Path, device: str, record: bool) -> list[Finding]:
    """Measure parity in float32; record it, or check it against the recorded figure."""
    from converters import registry
    from converters.parity import measure_parity
    from converters.sources import resolve_source

    entry = manifest.entries[name]
    if is_lora(entry):
        return [Finding(name, "parity", "not applicable", weights_output(entry)["file"], LORA_PARITY)]
    if record and manifest.kind != "output":
        raise ConfigError("--record writes into an output manifest (OUT/manifest.json)", file=manifest.path)
    blocked = _source_findings(manifest, name, "parity") + _weights_findings(manifest, name, out)
    if blocked:
        return blocked
    conversion = registry.resolve(name)[0]
    source, revision = source_argument(manifest, entry)
    folder = (manifest.output_root(out) / weights_output(entry)["file"]).parent
    result = measure_parity(conversion, resolve_source(conversion, source, revision), folder, device=device)
    measured = parity_record(result.to_dict(), weights_output(entry)["sha256"])
    if record:
        return [_record_parity(manifest, name, measured)]
    return [_check_parity(name, measured, entry.get("parity"), weights_output(entry)["sha256"])]


def parity_record(result: Mapping[str, Any], output_sha256: str) -> dict[str, Any]:
    """A manifest's `parity` object from a measurement, with the versions that produced it."""
    return {
        "max_relative_error": result["max_relative_error"],
        "relative_errors": list(result["relative_errors"]),
        "max_abs_errors": list(result["max_abs_errors"]),
        "device": result["device"],
        "dtype": result["dtype"],
        "versions": {
            name: importlib.metadata.version(name) for name in ("torch", "diffusers", "transformers")
        },
        "zoo_version": __version__,
        "output_sha256": output_sha256,
    }


def parity_threshold(recorded: Mapping[str, Any] | None) -> float:
    """How large the float32 error may be: max(2 × recorded, 1e-5)."""
    previous = recorded["max_relative_error"] if recorded else 0.0
    return max(PARITY_GROWTH * previous, PARITY_FLOOR)


def _check_parity(
    name: str, measured: Mapping[str, Any], recorded: Mapping[str, Any] | None, output_sha256: str
) -> Finding:
    valid = recorded if recorded and recorded.get("output_sha256") == output_sha256 else None
    limit = parity_threshold(valid)
    errors = measured["relative_errors"]
    worst = max(range(len(errors)), key=errors.__getitem__)
    against = f"recorded {valid['max_relative_error']:.3g}" if valid else "nothing recorded for these bytes"
    detail = f"max relative error {errors[worst]:.3g} (limit {limit:.3g}; {against}) on {measured['device']}"
    status: Status = "mismatch" if errors[worst] > limit else "ok"
    return Finding(name, "parity", status, f"output[{worst}]", detail)


def _record_parity(manifest: Manifest, name: str, measured: dict[str, Any]) -> Finding:
    with locked(manifest.folder):
        data = read_manifest(manifest.path).data
        entry = data["conversions"][name]
        entry["parity"] = measured
        entry["unknown"].pop("parity", None)
        write_manifest(manifest.path, data)
    detail = f"recorded max relative error {measured['max_relative_error']:.3g} on {measured['device']}"
    return Finding(name, "parity", "recorded", MANIFEST_NAME, detail)


# -- shared -----------------------------------------------------------------------------------------


def source_argument(manifest: Manifest, entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """What to pass `zoo convert` as --source and --revision to redo an entry's conversion."""
    recipe = entry["convert"]
    if recipe["source_kind"] == "local":
        return str(manifest.folder / recipe["source"]), None
    return recipe["source"], recipe_revision(entry)


def _dtype(entry: Mapping[str, Any]) -> torch.dtype | None:
    name = entry["convert"]["dtype"]
    return None if name == "keep" else getattr(torch, name)


def _source_findings(manifest: Manifest, name: str, kind: Check) -> list[Finding]:
    """Sources that are missing or changed: a re-run from them would prove nothing."""
    checks = check_files(manifest, name, outputs=False, extras=False)
    return [_blocked(check, kind) for check in checks if check.status in ("missing", "mismatch")]


def _weights_findings(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    checks = check_files(manifest, name, out, sources=False, extras=False)
    return [_blocked(check, "parity") for check in checks if check.status in ("missing", "mismatch")]


def _blocked(check: FileCheck, kind: Check) -> Finding:
    detail = f"cannot {'reproduce' if kind == 'reproduce' else 'measure parity'}: {check.role} {check.detail}"
    return Finding(check.entry, kind, check.status, check.file, detail)


__all__ = [
    "PARITY_FLOOR",
    "Finding",
    "Target",
    "VerifyReport",
    "compare_output",
    "first_difference",
    "parity_record",
    "parity_threshold",
    "reproduce_lora",
    "resolve_targets",
    "source_argument",
    "verify",
]
