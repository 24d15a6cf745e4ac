"""The key map: which source tensors make which target tensor, and how.

A :class:`KeyMap` is plain data (frozen, JSON round-trippable, with a stable digest), so it can
be cached by conversion and config, shown by ``zoo trace --json`` and applied one target at a
time by a streaming writer without holding the source state dict in memory.

Example:
    >>> entry = MapEntry(("attn.in_proj_weight",), ("q.weight", "k.weight", "v.weight"), Split(0))
    >>> key_map = KeyMap((entry,))
    >>> key_map.apply(lambda key: torch.arange(6.0).reshape(6, 1), "k.weight").flatten().tolist()
    [2.0, 3.0]
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch

from zoo.errors import ConfigError, CoverageError, FormatError

Shape = tuple[int, ...]
KEYMAP_FORMAT = "zoo.keymap/1"


class _Transform(ABC):
    """How one entry turns its source tensors into its target tensors."""

    kind: ClassVar[str]
    many_sources: ClassVar[bool] = False
    many_targets: ClassVar[bool] = False

    def check_arity(self, sources: int, targets: int) -> None:
        """Raise ``ValueError`` unless this transform takes ``sources`` to ``targets`` tensors."""
        wanted_sources = "2 or more" if self.many_sources else "1"
        wanted_targets = "2 or more" if self.many_targets else "1"
        if (sources >= 2 if self.many_sources else sources == 1) and (
            targets >= 2 if self.many_targets else targets == 1
        ):
            return
        raise ValueError(
            f"{self.kind} takes {wanted_sources} source(s) to {wanted_targets} target(s), "
            f"got {sources} to {targets}"
        )

    @abstractmethod
    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        """The shapes of the targets, from the source shapes alone (``ValueError`` if invalid)."""

    @abstractmethod
    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        """Target number ``index`` of ``targets``, made from the source tensors."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"kind": ..., **parameters}``."""
        return {"kind": self.kind}


@dataclass(frozen=True)
class Identity(_Transform):
    """The target is the source, unchanged."""

    kind: ClassVar[str] = "identity"

    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        return (sources[0],)

    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        return sources[0]


@dataclass(frozen=True)
class Reshape(_Transform):
    """The source reshaped to ``shape`` (a Linear ``(o, i)`` <-> a 1x1 conv ``(o, i, 1, 1)``)."""

    shape: Shape
    kind: ClassVar[str] = "reshape"

    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        if math.prod(sources[0]) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {sources[0]} to {self.shape}")
        return (self.shape,)

    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        return sources[0].reshape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape)}


@dataclass(frozen=True)
class Transpose(_Transform):
    """The 2-D source transposed (e.g. OpenCLIP's ``text_projection``, stored ``(in, out)``)."""

    kind: ClassVar[str] = "transpose"

    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        if len(sources[0]) != 2:
            raise ValueError(f"transpose needs a 2-D tensor, got shape {sources[0]}")
        return (sources[0][::-1],)

    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        return sources[0].t()


@dataclass(frozen=True)
class Split(_Transform):
    """One source cut into equal chunks along ``dim``, one per target (fused qkv → q, k, v)."""

    dim: int = 0
    kind: ClassVar[str] = "split"
    many_targets: ClassVar[bool] = True

    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        shape = sources[0]
        dim = _axis(self.dim, len(shape))
        if shape[dim] % targets:
            raise ValueError(f"cannot split {shape} into {targets} equal parts along dim {self.dim}")
        part = (*shape[:dim], shape[dim] // targets, *shape[dim + 1 :])
        return (part,) * targets

    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        return sources[0].chunk(targets, dim=self.dim)[index]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim}


@dataclass(frozen=True)
class Concat(_Transform):
    """Several sources joined along ``dim`` into one target (separate q, k, v → fused qkv)."""

    dim: int = 0
    kind: ClassVar[str] = "concat"
    many_sources: ClassVar[bool] = True

    def output_shapes(self, sources: Sequence[Shape], targets: int) -> tuple[Shape, ...]:
        dim = _axis(self.dim, len(sources[0]))
        rest = {(*shape[:dim], *shape[dim + 1 :]) for shape in sources}
        if len(rest) != 1 or len({len(shape) for shape in sources}) != 1:
            raise ValueError(f"cannot concatenate shapes {list(sources)} along dim {self.dim}")
        first = sources[0]
        return ((*first[:dim], sum(shape[dim] for shape in sources), *first[dim + 1 :]),)

    def produce(self, sources: Sequence[torch.Tensor], index: int, targets: int) -> torch.Tensor:
        return torch.cat(list(sources), dim=self.dim)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim}


Transform = Identity | Reshape | Transpose | Split | Concat
IDENTITY = Identity()


def _axis(dim: int, ndim: int) -> int:
    """``dim`` made non-negative, or ``ValueError`` if out of range."""
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim {dim} out of range for a {ndim}-D tensor")
    return dim % ndim


def _layout(value: Any, depth: int = 0, expand: int = 2) -> str:
    """JSON with the outer ``expand`` levels one item per line and anything deeper on one line.

    Plain ``indent=`` puts every dimension of every shape on its own line; this keeps a key map
    of a few thousand tensors readable and its diffs one line per changed tensor.
    """
    if depth >= expand or not isinstance(value, dict | list) or not value:
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(key)}: {_layout(item, depth + 1)}" for key, item in sorted(value.items())]
        opening, closing = "{", "}"
    else:
        items = [f"{pad}{_layout(item, depth + 1)}" for item in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(items) + "\n" + " " * depth + closing


def transform_from_dict(data: Mapping[str, Any]) -> Transform:
    """Inverse of ``to_dict`` on any transform."""
    kind = data.get("kind")
    if kind == "identity":
        return IDENTITY
    if kind == "reshape":
        return Reshape(tuple(int(size) for size in data["shape"]))
    if kind == "transpose":
        return Transpose()
    if kind == "split":
        return Split(int(data["dim"]))
    if kind == "concat":
        return Concat(int(data["dim"]))
    raise ValueError(f"unknown transform kind {kind!r}")


@dataclass(frozen=True)
class MapEntry:
    """Source tensors → target tensors through one transform.

    Attributes:
        sources: Source state-dict keys (one, or several for ``Concat``).
        targets: Target state-dict keys (one, or several for ``Split``, in chunk order).
        transform: How the targets are made from the sources.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    transform: Transform = IDENTITY

    def __post_init__(self) -> None:
        # Declarations are often written with lists; store tuples so entries stay hashable.
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "targets", tuple(self.targets))
        self.transform.check_arity(len(self.sources), len(self.targets))

    def output_shapes(self, source_shapes: Mapping[str, Shape]) -> tuple[Shape, ...]:
        """The target shapes this entry produces from sources of the given shapes."""
        shapes = [source_shapes[key] for key in self.sources]
        return self.transform.output_shapes(shapes, len(self.targets))

    def produce(self, get: Callable[[str], torch.Tensor], target: str) -> torch.Tensor:
        """One of this entry's targets, fetching the sources through ``get``."""
        tensors = [get(key) for key in self.sources]
        return self.transform.produce(tensors, self.targets.index(target), len(self.targets))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sources": list(self.sources),
            "targets": list(self.targets),
            "transform": self.transform.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MapEntry:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["sources"]), tuple(data["targets"]), transform_from_dict(data["transform"]))


@dataclass(frozen=True)
class Coverage:
    """What a key map covers, for people (``summary``) and machines (``zoo trace --json``).

    Attributes:
        source_tensors: Tensors in the source state dict.
        target_tensors: Tensors in the target state dict.
        mapped_sources: Source tensors used by some entry.
        produced_targets: Target tensors produced by some entry.
        aligned_modules: Module pairs matched by tracing.
        override_entries: Entries declared as overrides.
        ignored_source: Ignored source keys with the declared reason.
        ignored_target: Ignored target keys with the declared reason.
        reused_source: Source keys used by several entries, with the declared reason.
        unused_overrides: Declared ignore/reuse patterns that matched no key (stale declarations).
        transforms: Number of entries per transform kind.
    """

    source_tensors: int
    target_tensors: int
    mapped_sources: int
    produced_targets: int
    aligned_modules: int
    override_entries: int
    ignored_source: Mapping[str, str] = field(default_factory=dict)
    ignored_target: Mapping[str, str] = field(default_factory=dict)
    reused_source: Mapping[str, str] = field(default_factory=dict)
    unused_overrides: tuple[str, ...] = ()
    transforms: Mapping[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """A few human-readable lines."""
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.transforms.items()))
        lines = [
            f"source: {self.mapped_sources}/{self.source_tensors} tensors mapped, "
            f"{len(self.ignored_source)} ignored",
            f"target: {self.produced_targets}/{self.target_tensors} tensors produced, "
            f"{len(self.ignored_target)} ignored",
            f"{self.aligned_modules} module pairs aligned by tracing, {self.override_entries} "
            f"entries from overrides; transforms: {kinds or 'none'}",
        ]
        for side, ignored in (("source", self.ignored_source), ("target", self.ignored_target)):
            lines += [f"ignored {side} {key}: {reason}" for key, reason in sorted(ignored.items())]
        lines += [f"reused source {key}: {reason}" for key, reason in sorted(self.reused_source.items())]
        lines += [f"override matched nothing: {pattern}" for pattern in self.unused_overrides]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (mappings with sorted keys)."""
        return {
            "source_tensors": self.source_tensors,
            "target_tensors": self.target_tensors,
            "mapped_sources": self.mapped_sources,
            "produced_targets": self.produced_targets,
            "aligned_modules": self.aligned_modules,
            "override_entries": self.override_entries,
            "ignored_source": dict(sorted(self.ignored_source.items())),
            "ignored_target": dict(sorted(self.ignored_target.items())),
            "reused_source": dict(sorted(self.reused_source.items())),
            "unused_overrides": list(self.unused_overrides),
            "transforms": dict(sorted(self.transforms.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Coverage:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "unused_overrides": tuple(data.get("unused_overrides", ()))})


@dataclass(frozen=True)
class KeyMap:
    """A complete, checked mapping from a source state dict to a target state dict.

    Attributes:
        entries: The entries; each target key is produced by exactly one.
        source_shapes: Expected source shapes (checked when applying; empty to skip).
        target_shapes: Expected target shapes (checked when applying; empty to skip).
        coverage: What was mapped and ignored, when the map came from alignment.
    """

    entries: tuple[MapEntry, ...]
    source_shapes: Mapping[str, Shape] = field(default_factory=dict)
    target_shapes: Mapping[str, Shape] = field(default_factory=dict)
    coverage: Coverage | None = None

    @cached_property
    def _by_target(self) -> dict[str, MapEntry]:
        """Target key → the entry that produces it."""
        return {target: entry for entry in self.entries for target in entry.targets}

    def entry(self, target: str) -> MapEntry | None:
        """The entry that produces `target`, if any."""
        return self._by_target.get(target)

    def target_keys(self) -> tuple[str, ...]:
        """Every produced target key, sorted."""
        return tuple(sorted(self._by_target))

    def source_keys(self) -> tuple[str, ...]:
        """Every used source key, sorted."""
        return tuple(sorted({key for entry in self.entries for key in entry.sources}))

    def apply(self, get: Callable[[str], torch.Tensor], target: str) -> torch.Tensor:
        """Produce one target tensor, fetching only the source tensors it needs.

        A split source is fetched once per target it produces; with memory-mapped sources that
        costs nothing, and it keeps this call free of caches a streaming writer would have to
        manage.

        Args:
            get: Returns a source tensor by key (e.g. a safetensors ``get_tensor``).
            target: The target key.

        Returns:
            The target tensor, contiguous (a copy only where a transform needed one).

        Raises:
            CoverageError: This map does not produce ``target``.
            ConfigError: A source or the result does not have the shape the map was traced with.
        """
        entry = self._by_target.get(target)
        if entry is None:
            raise CoverageError("the key map does not produce this tensor", tensor=target)
        tensor = entry.produce(lambda key: self._checked(key, get(key), self.source_shapes), target)
        # Writers (safetensors) need contiguous memory; for plain copies this is a no-op.
        return self._checked(target, tensor, self.target_shapes).contiguous()

    @staticmethod
    def _checked(key: str, tensor: torch.Tensor, shapes: Mapping[str, Shape]) -> torch.Tensor:
        """``tensor`` if its shape is the expected one (or none is known), else ``ConfigError``."""
        expected = shapes.get(key)
        if expected is not None and tuple(tensor.shape) != tuple(expected):
            raise ConfigError(
                f"shape {tuple(tensor.shape)} differs from {tuple(expected)} in the key map",
                tensor=key,
                hint="the checkpoint does not match the config the key map was traced with",
            )
        return tensor

    def sorted(self) -> KeyMap:
        """The same map with entries in a deterministic order (by first target key)."""
        entries = tuple(sorted(self.entries, key=lambda entry: entry.targets))
        return KeyMap(entries, self.source_shapes, self.target_shapes, self.coverage)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, entries in deterministic order."""
        return {
            "format": KEYMAP_FORMAT,
            "entries": [entry.to_dict() for entry in self.sorted().entries],
            "source_shapes": {key: list(shape) for key, shape in sorted(self.source_shapes.items())},
            "target_shapes": {key: list(shape) for key, shape in sorted(self.target_shapes.items())},
            "coverage": self.coverage.to_dict() if self.coverage else None,
        }

    def to_json(self) -> str:
        """The map as JSON text: stable (sorted keys and entries), one entry or shape per line."""
        return _layout(self.to_dict()) + "\n"

    @classmethod
    def from_json(cls, text: str) -> KeyMap:
        """Read a map written by :meth:`to_json`.

        Raises:
            FormatError: The text is not a key map of this format.
        """
        try:
            return cls._from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise FormatError(f"not a {KEYMAP_FORMAT} key map: {error}") from error

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> KeyMap:
        """Inverse of :meth:`to_dict`; ``ValueError`` on anything inconsistent."""
        if data.get("format") != KEYMAP_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}")
        entries = tuple(MapEntry.from_dict(entry) for entry in data["entries"])
        targets = [target for entry in entries for target in entry.targets]
        if len(targets) != len(set(targets)):
            raise ValueError("a target key is produced twice")
        coverage = data.get("coverage")
        return cls(
            entries,
            {key: tuple(shape) for key, shape in data["source_shapes"].items()},
            {key: tuple(shape) for key, shape in data["target_shapes"].items()},
            Coverage.from_dict(coverage) if coverage is not None else None,
        )

    def digest(self) -> str:
        """sha256 (hex) of the canonical JSON: equal maps have equal digests across runs."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
