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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converters._verify.findings import Finding, VerifyReport, from_check
from converters._verify.parity_check import parity_findings
from converters._verify.reproduce import reproduce_findings
from zoo.errors import ConfigError
from zoo.formats import CONFIG_NAME
from zoo.manifest import MANIFEST_NAME, Manifest, check_files, read_manifest, relative, select


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
    return [from_check(check, "hashes") for check in check_files(manifest, name, out)]


__all__ = ["Target", "hash_findings", "resolve_targets", "verify"]
