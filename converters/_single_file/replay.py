"""Original single-file checkpoints as upstream tensors: the mapping is learned from the header alone.

A conversion's `SingleFileLayout` says which keys of the file are its component's, how to derive the
upstream configs from their shapes, and how the upstream library turns them into the upstream model's
tensors (`to_upstream`, diffusers' own single-file conversion). That function runs once, on recorded
meta tensors (`converters._single_file.recording`): each tensor it returns carries a recipe naming the file tensors
and the operations (slice, transpose, clone...) that make it. While the writer streams, each recipe is
replayed on the memory-mapped file, one tensor at a time; no weight is loaded to learn the mapping.

Before anything is written, every file key under the layout's prefixes must be read by some recipe or
ignored with a reason (`CoverageError` otherwise), and the recipes must produce exactly the upstream
model's tensors, with its shapes. Keys under other prefixes belong to other components. A map that
passed these checks is cached by the file's header (`map_cache`), so converting a file of the same
layout again needs neither the recording nor the upstream library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

from converters._checkpoints import CheckpointReader, open_checkpoint
from converters._convert.sources import SingleFileSource
from converters._convert.upstream_tensors import SourceTensor, UpstreamTensors
from converters._detect import Detection, detect_checkpoint
from converters._single_file import map_cache
from converters._single_file.recording import Call, Leaf, Recipe, leaves, recipe_of, recorded_inputs, replay
from converters.declaration import Conversion, Shape, SingleFileLayout, upstream_model
from converters.registry import family_of
from zoo.errors import ConfigError, CoverageError, ZooError, few


@dataclass(frozen=True)
class UpstreamRecipe:
    """How one upstream tensor is made from the file's tensors, and what it will be."""

    recipe: Recipe
    shape: Shape
    dtype: torch.dtype

    @property
    def origin(self) -> str:
        """The file key, or how the tensor is computed from file keys."""
        return self.recipe.key if isinstance(self.recipe, Leaf) else self.recipe.describe()


@dataclass(frozen=True)
class SingleFileMap:
    """What a single file holds for one conversion, learned from its header.

    Attributes:
        file: The checkpoint.
        configs: Subfolder -> upstream config, derived from the shapes.
        recipes: Upstream state-dict key -> how to make it from the file's tensors.
        ignored: File key -> why it is not converted.
    """

    file: Path
    configs: dict[str, dict[str, Any]]
    recipes: dict[str, UpstreamRecipe]
    ignored: dict[str, str]


@contextmanager
def open_single_file_tensors(
    conversion: Conversion, source: SingleFileSource
) -> Iterator[tuple[dict[str, dict[str, Any]], UpstreamTensors]]:
    """The upstream configs and tensors of a conversion's component in an original single file.

    Raises:
        ConfigError: The file is another family's, holds none of the component's keys, has shapes the
            layout cannot describe, or the upstream conversion cannot be recorded.
        CoverageError: A file key under the component's prefixes is neither read nor ignored, or the
            recipes do not produce exactly the upstream model's tensors and shapes.
    """
    with open_checkpoint(source.path) as reader:
        shapes, dtypes = _header(reader)
        mapped = _mapped(conversion, shapes, dtypes, source.path)
        tensors = {
            name: SourceTensor(
                source.path, plan.origin, plan.shape, plan.dtype, _loader(plan.recipe, reader.get)
            )
            for name, plan in mapped.recipes.items()
        }
        ignored = {f"{source.path}: {key}": reason for key, reason in mapped.ignored.items()}
        yield mapped.configs, UpstreamTensors(tensors, ignored)


def _mapped(
    conversion: Conversion, shapes: Mapping[str, Shape], dtypes: Mapping[str, torch.dtype], file: Path
) -> SingleFileMap:
    """The file's map: from the cache when this header was mapped and checked before, else learned."""
    key = map_cache.entry_key(conversion.name, shapes, dtypes)
    parts = map_cache.load(key)
    if parts is not None:
        recipes = {name: UpstreamRecipe(*made) for name, made in parts["recipes"].items()}
        return SingleFileMap(file, parts["configs"], recipes, parts["ignored"])
    mapped = map_single_file(conversion, shapes, dtypes, file)
    check_upstream_names(conversion, mapped)
    recipes = {name: (plan.recipe, plan.shape, plan.dtype) for name, plan in mapped.recipes.items()}
    map_cache.store(key, {"configs": mapped.configs, "recipes": recipes, "ignored": mapped.ignored})
    return mapped


def single_file_configs(conversion: Conversion, source: SingleFileSource) -> dict[str, dict[str, Any]]:
    """The upstream configs of a conversion's component, derived from a single file's header."""
    with open_checkpoint(source.path) as reader:
        shapes, _ = _header(reader)
    layout = _layout(conversion, source.path)
    inputs, _ = _component_keys(conversion, layout, shapes, source.path)
    return _configs(conversion, layout, inputs, source.path)


def map_single_file(
    conversion: Conversion, shapes: Mapping[str, Shape], dtypes: Mapping[str, torch.dtype], file: Path
) -> SingleFileMap:
    """Record the conversion's `to_upstream` on a header (names, shapes, dtypes) and check its coverage."""
    layout = _layout(conversion, file)
    inputs, ignored = _component_keys(conversion, layout, shapes, file)
    configs = _configs(conversion, layout, inputs, file)
    outputs = _record(conversion, layout, inputs, dtypes, configs, file)
    recipes = {name: _checked(value, name, file) for name, value in outputs.items()}
    _check_coverage(conversion, layout, inputs, recipes, file)
    return SingleFileMap(file, configs, recipes, ignored)


def check_upstream_names(conversion: Conversion, mapped: SingleFileMap) -> None:
    """The recipes make exactly the upstream model's tensors (built on meta from the derived configs)."""
    with torch.device("meta"):
        model = upstream_model(conversion, mapped.configs)
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    unknown = sorted(set(mapped.recipes) - set(expected))
    if unknown:
        raise CoverageError(
            f"the upstream conversion makes {len(unknown)} tensor(s) that the upstream model does not have, "
            f"e.g. {few(unknown)}",
            file=mapped.file,
            tensor=mapped.recipes[unknown[0]].origin,
            hint="the checkpoint holds a variant this conversion does not know",
        )
    missing = sorted(set(expected) - set(mapped.recipes))
    if missing:
        raise CoverageError(
            f"{len(missing)} upstream tensor(s) missing from this file, e.g. {few(missing)}",
            file=mapped.file,
            tensor=missing[0],
            hint="the checkpoint is incomplete or for another variant",
        )
    for key, plan in sorted(mapped.recipes.items()):
        if plan.shape != expected[key]:
            raise CoverageError(
                f"makes {key} with shape {plan.shape}, but the derived config says {expected[key]}",
                file=mapped.file,
                tensor=plan.origin,
            )


# -- steps ------------------------------------------------------------------------------------------


def _header(reader: CheckpointReader) -> tuple[dict[str, Shape], dict[str, torch.dtype]]:
    keys = reader.keys()
    return {key: tuple(reader.shape(key)) for key in keys}, {key: reader.dtype(key) for key in keys}


def _layout(conversion: Conversion, file: Path) -> SingleFileLayout:
    if conversion.single_file is None:
        raise ConfigError(f"{conversion.name} cannot be converted from a single file", file=file)
    return conversion.single_file


def _component_keys(
    conversion: Conversion, layout: SingleFileLayout, shapes: Mapping[str, Shape], file: Path
) -> tuple[dict[str, Shape], dict[str, str]]:
    """(shapes of the keys to convert, ignored key -> reason), after checking the file's family."""
    layout_format = family_of(conversion).single_file
    expected = layout_format.recognizer if layout_format else None
    found = detect_checkpoint(shapes)
    if expected is not None and not expected.matches(shapes) and found is not None and not found.generic:
        raise ConfigError(
            f"this looks like {found.description}, not {expected.description} as {conversion.name} needs",
            file=file,
            hint=_hint(conversion, expected.description, found),
        )
    owned = {key: shape for key, shape in shapes.items() if key.startswith(layout.prefixes)}
    if not owned:
        wanted = expected.description if expected else "an original single file"
        looks_like = found.description if found else "no checkpoint zoo knows"
        raise ConfigError(
            f"{conversion.name} reads {wanted}, with tensors under {', '.join(layout.prefixes)}; this file has "
            f"none, and looks like {looks_like}",
            file=file,
            hint=f"pass {wanted}, or a diffusers pipeline folder",
        )
    ignored = {key: reason for key in owned if (reason := _ignore_reason(layout, key)) is not None}
    return {key: shape for key, shape in owned.items() if key not in ignored}, ignored


def _hint(conversion: Conversion, expected: str, found: Detection) -> str:
    if found.conversion == conversion.name:
        return "a file in the upstream library's own layout: pass the folder holding it and its config.json"
    return f"pass {expected}" + (f", or convert it as {found.conversion}" if found.conversion else "")


def _ignore_reason(layout: SingleFileLayout, key: str) -> str | None:
    return next((reason for pattern, reason in layout.ignored.items() if fnmatchcase(key, pattern)), None)


def _configs(
    conversion: Conversion, layout: SingleFileLayout, inputs: Mapping[str, Shape], file: Path
) -> dict[str, dict[str, Any]]:
    try:
        configs = layout.upstream_configs(inputs)
    except ZooError as error:
        raise _in_file(error, file) from None
    absent = [part.subfolder for part in conversion.parts if part.subfolder not in configs]
    if absent:
        raise ConfigError(f"{conversion.name}'s single-file layout derives no config for {', '.join(absent)}")
    return configs


def _record(
    conversion: Conversion,
    layout: SingleFileLayout,
    inputs: Mapping[str, Shape],
    dtypes: Mapping[str, torch.dtype],
    configs: Mapping[str, dict[str, Any]],
    file: Path,
) -> dict[str, Any]:
    recorded = recorded_inputs(inputs, {key: dtypes[key] for key in inputs})
    try:
        return dict(layout.to_upstream(recorded, configs))
    except ZooError as error:
        raise _in_file(error, file) from None
    except KeyError as error:
        raise CoverageError(
            f"{conversion.name}: the upstream conversion reads {error.args[0]!r}, which this file lacks",
            file=file,
            tensor=str(error.args[0]),
            hint="the checkpoint is incomplete or for another variant",
        ) from error
    except (RuntimeError, NotImplementedError) as error:
        if "meta" not in str(error):
            raise
        raise ConfigError(
            f"{conversion.name}: the upstream conversion reads tensor values ({error}); a mapping learned "
            "from the header alone can only use names, shapes and dtypes",
            file=file,
        ) from error


def _checked(value: Any, name: str, file: Path) -> UpstreamRecipe:
    if value is None:
        raise CoverageError(
            "the upstream conversion expects a file tensor to make it from, and this file lacks it",
            file=file,
            tensor=name,
            hint="the checkpoint is incomplete",
        )
    try:
        recipe = recipe_of(value, name)
    except ZooError as error:
        raise _in_file(error, file) from None
    if _has_foreign_tensor(recipe):
        raise ConfigError(
            "the upstream conversion mixes in a tensor that does not come from the file",
            file=file,
            tensor=name,
        )
    return UpstreamRecipe(recipe, tuple(value.shape), value.dtype)


def _has_foreign_tensor(recipe: Recipe) -> bool:
    if isinstance(recipe, Leaf):
        return False
    values, _ = tree_flatten((recipe.args, dict(recipe.kwargs)))
    return any(
        isinstance(value, torch.Tensor) or (isinstance(value, Call) and _has_foreign_tensor(value))
        for value in values
    )


def _check_coverage(
    conversion: Conversion,
    layout: SingleFileLayout,
    inputs: Mapping[str, Shape],
    recipes: Mapping[str, UpstreamRecipe],
    file: Path,
) -> None:
    used: set[str] = set()
    for plan in recipes.values():
        used |= leaves(plan.recipe)
    unused = sorted(set(inputs) - used)
    if unused:
        raise CoverageError(
            f"{len(unused)} tensor(s) under {', '.join(layout.prefixes)} that {conversion.name} does not "
            f"convert, e.g. {few(unused)}",
            file=file,
            tensor=unused[0],
            hint="a variant this conversion does not know; tensors without weights need an ignore with a reason",
        )


def _loader(recipe: Recipe, get: Callable[[str], torch.Tensor]) -> Callable[[], torch.Tensor]:
    return lambda: replay(recipe, get)


def _in_file(error: ZooError, file: Path) -> ZooError:
    """The same error, naming the file when it did not (the traceback stays the original's)."""
    if error.file is None:
        error = type(error)(error.message, file=file, tensor=error.tensor, hint=error.hint).with_traceback(
            error.__traceback__
        )
    return error


__all__ = [
    "SingleFileMap",
    "UpstreamRecipe",
    "check_upstream_names",
    "map_single_file",
    "open_single_file_tensors",
    "single_file_configs",
]
