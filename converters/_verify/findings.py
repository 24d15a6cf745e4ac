"""What `zoo verify` reports: one finding per checked fact, and whether it fails the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from zoo.manifest import FileCheck, Manifest, check_files, recipe_revision

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


def from_check(check: FileCheck, kind: Check) -> Finding:
    return Finding(check.entry, kind, check.status, check.file, f"{check.role}: {check.detail}")


def source_argument(manifest: Manifest, entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """What to pass `zoo convert` as --source and --revision to redo an entry's conversion."""
    recipe = entry["convert"]
    if recipe["source_kind"] == "local":
        return str(manifest.folder / recipe["source"]), None
    return recipe["source"], recipe_revision(entry)


def entry_dtype(entry: Mapping[str, Any]) -> torch.dtype | None:
    name = entry["convert"]["dtype"]
    return None if name == "keep" else getattr(torch, name)


def source_findings(manifest: Manifest, name: str, kind: Check) -> list[Finding]:
    """Sources that are missing or changed: a re-run from them would prove nothing."""
    checks = check_files(manifest, name, outputs=False, extras=False)
    return [blocked(check, kind) for check in checks if check.status in ("missing", "mismatch")]


def weights_findings(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    checks = check_files(manifest, name, out, sources=False, extras=False)
    return [blocked(check, "parity") for check in checks if check.status in ("missing", "mismatch")]


def blocked(check: FileCheck, kind: Check) -> Finding:
    detail = f"cannot {'reproduce' if kind == 'reproduce' else 'measure parity'}: {check.role} {check.detail}"
    return Finding(check.entry, kind, check.status, check.file, detail)


__all__ = [
    "Check",
    "Finding",
    "Status",
    "VerifyReport",
    "blocked",
    "entry_dtype",
    "from_check",
    "source_argument",
    "source_findings",
    "weights_findings",
]
