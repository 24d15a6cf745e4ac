"""The upstream model's tensors as the source files hold them, loaded one at a time.

Maps each upstream state-dict key to where it lives (file, name in the file, shape, dtype) and checks,
before anything is written, that the files hold exactly what the key map needs: a tensor the upstream
model does not have, a missing tensor or a wrong shape is an error naming the file and the tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from converters._checkpoints import open_checkpoint
from converters._convert.sources import FolderSource
from converters._tracing import KeyMap
from converters.declaration import Conversion, KeyNormalization, Shape, upstream_prefix
from zoo.errors import CoverageError, FormatError


@dataclass(frozen=True)
class SourceTensor:
    """One upstream tensor, not loaded yet."""

    file: Path
    origin: str  # its name in the file, or how it is computed from the file's tensors
    shape: Shape
    dtype: torch.dtype
    load: Callable[[], torch.Tensor]


@dataclass(frozen=True)
class UpstreamTensors:
    """Upstream state-dict key -> where the tensor is; plus file keys left out on purpose."""

    tensors: Mapping[str, SourceTensor]
    ignored: Mapping[str, str]  # "file: key" -> reason

    def get(self, key: str) -> torch.Tensor:
        return self.tensors[key].load()


@contextmanager
def open_folder_tensors(conversion: Conversion, source: FolderSource) -> Iterator[UpstreamTensors]:
    """Open every part's weights file and name its tensors as the upstream model does."""
    with ExitStack() as stack:
        tensors: dict[str, SourceTensor] = {}
        ignored: dict[str, str] = {}
        for part in conversion.parts:
            path = source.weights[part.subfolder]
            reader = stack.enter_context(open_checkpoint(path))
            shapes = {key: reader.shape(key) for key in reader.keys()}
            normalized = part.normalize_keys(shapes)
            _check_normalization(path, shapes, normalized)
            prefix = upstream_prefix(conversion, part)
            for file_key, model_key in normalized.renames.items():
                shape = normalized.reshapes.get(file_key)
                tensors[prefix + model_key] = SourceTensor(
                    path,
                    file_key,
                    tuple(shape) if shape is not None else shapes[file_key],
                    reader.dtype(file_key),
                    _loader(reader.get, file_key, shape),
                )
            for file_key, model_keys in normalized.splits.items():
                count = len(model_keys)
                for index, model_key in enumerate(model_keys):
                    tensors[prefix + model_key] = SourceTensor(
                        path,
                        f"{file_key}[chunk {index + 1} of {count}]",
                        _chunk_shape(shapes[file_key], count),
                        reader.dtype(file_key),
                        _chunk_loader(reader.get, file_key, count, index),
                    )
            ignored.update({f"{path}: {key}": reason for key, reason in normalized.ignored.items()})
        yield UpstreamTensors(tensors, ignored)


def _loader(get: Callable[[str], torch.Tensor], key: str, shape: Shape | None) -> Callable[[], torch.Tensor]:
    if shape is None:
        return lambda: get(key)
    return lambda: get(key).reshape(shape)


def _chunk_shape(shape: Shape, count: int) -> Shape:
    return (shape[0] // count, *shape[1:])


def _chunk_loader(
    get: Callable[[str], torch.Tensor], key: str, count: int, index: int
) -> Callable[[], torch.Tensor]:
    return lambda: get(key).chunk(count)[index]


def _check_normalization(path: Path, shapes: Mapping[str, Shape], normalized: KeyNormalization) -> None:
    unaccounted = sorted(
        set(shapes) - set(normalized.renames) - set(normalized.ignored) - set(normalized.splits)
    )
    if unaccounted:
        raise FormatError(
            f"{len(unaccounted)} tensor(s) of unknown layout: {', '.join(unaccounted[:5])}",
            file=path,
            tensor=unaccounted[0],
        )
    for key, model_keys in normalized.splits.items():
        if not shapes[key] or shapes[key][0] % len(model_keys):
            raise FormatError(
                f"shape {shapes[key]} does not split into {len(model_keys)} equal parts along dim 0",
                file=path,
                tensor=key,
            )
    targets = [*normalized.renames.values(), *(key for keys in normalized.splits.values() for key in keys)]
    if len(targets) != len(set(targets)):
        raise FormatError("two tensors of the file map onto the same upstream name", file=path)


def check_against_key_map(tensors: UpstreamTensors, keymap: KeyMap, family: str) -> None:
    """Every tensor present is one the upstream model has, with its shape; every needed one is present."""
    known = keymap.source_shapes
    unknown = sorted(set(tensors.tensors) - set(known))
    if unknown:
        first = tensors.tensors[unknown[0]]
        raise CoverageError(
            f"{len(unknown)} tensor(s) that the {family} upstream model does not have, e.g. "
            f"{', '.join(unknown[:5])}",
            file=first.file,
            tensor=first.origin,
            hint="is this checkpoint for another model family or variant?",
        )
    missing = sorted(set(keymap.source_keys()) - set(tensors.tensors))
    if missing:
        files = sorted({str(t.file) for t in tensors.tensors.values()})
        raise CoverageError(
            f"{len(missing)} tensor(s) missing, e.g. {', '.join(missing[:5])}",
            file=", ".join(files),
            tensor=missing[0],
            hint="the checkpoint is incomplete or for another variant",
        )
    for key, tensor in sorted(tensors.tensors.items()):
        expected = tuple(known[key])
        if tuple(tensor.shape) != expected:
            raise CoverageError(
                f"shape {tuple(tensor.shape)} in the file, but the config says {expected}",
                file=tensor.file,
                tensor=tensor.origin,
                hint="config.json does not match the weights",
            )


__all__ = ["SourceTensor", "UpstreamTensors", "check_against_key_map", "open_folder_tensors"]
