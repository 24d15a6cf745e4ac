"""Record what a function does to tensors, on meta, and replay it later one tensor at a time.

Upstream libraries ship good key conversions for original single-file checkpoints (diffusers'
`convert_ldm_unet_checkpoint` and friends), but they work on a whole in-memory state dict. We hand them
*recorded* tensors instead: meta tensors (no data) that remember how they were made. Every output
tensor then carries a recipe — which file tensor(s), and which torch operations (slicing, transposing,
concatenating, cloning) — that is replayed on the real tensor when the streaming writer needs it.
Nothing is loaded to learn the mapping, and the mapping is exactly the upstream code's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_map

from zoo.errors import ConfigError


@dataclass(frozen=True)
class Leaf:
    """A tensor read from the file as is."""

    key: str

    def describe(self) -> str:
        return repr(self.key)


@dataclass(frozen=True)
class Call:
    """A torch operation applied to recorded inputs."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    index: int | None  # which output, when the operation returns several

    def describe(self) -> str:
        name = getattr(self.func, "__name__", None) or repr(self.func)
        parts = [_describe(arg) for arg in self.args] + [
            f"{k}={_describe(v)}" for k, v in self.kwargs.items()
        ]
        suffix = f"[{self.index}]" if self.index is not None else ""
        return f"{name}({', '.join(parts)}){suffix}"


Recipe = Leaf | Call


def _describe(value: Any) -> str:
    if isinstance(value, Leaf | Call):
        return value.describe()
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_describe(v) for v in value) + ")"  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return repr(value)


class RecordedTensor(torch.Tensor):
    """A meta tensor that knows how it was made."""

    recipe: Recipe

    @staticmethod
    def wrap(tensor: torch.Tensor, recipe: Recipe) -> RecordedTensor:
        recorded = torch.Tensor._make_subclass(RecordedTensor, tensor)  # pyright: ignore[reportUnknownMemberType]
        recorded.recipe = recipe
        return recorded

    @classmethod
    def __torch_function__(
        cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*_plain(args), **_plain(kwargs))
        recipe_args, recipe_kwargs = _recipes(args), _recipes(kwargs)
        if isinstance(result, torch.Tensor):
            return cls.wrap(result, Call(func, recipe_args, recipe_kwargs, None))
        if isinstance(result, tuple | list) and any(isinstance(r, torch.Tensor) for r in result):  # pyright: ignore[reportUnknownVariableType]
            return type(result)(  # pyright: ignore[reportUnknownArgumentType]
                cls.wrap(r, Call(func, recipe_args, recipe_kwargs, i)) if isinstance(r, torch.Tensor) else r
                for i, r in enumerate(result)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
            )
        return result


def _plain(tree: Any) -> Any:
    return tree_map(lambda v: v.as_subclass(torch.Tensor) if isinstance(v, RecordedTensor) else v, tree)


def _recipes(tree: Any) -> Any:
    return tree_map(lambda v: v.recipe if isinstance(v, RecordedTensor) else v, tree)


def recorded_inputs(
    shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, torch.dtype]
) -> dict[str, Any]:
    """One recorded meta tensor per file key."""
    return {
        key: RecordedTensor.wrap(torch.empty(shape, dtype=dtypes[key], device="meta"), Leaf(key))
        for key, shape in shapes.items()
    }


def recipe_of(value: Any, name: str) -> Recipe:
    """The recipe of an output of the recorded function; an error if it is not a recorded tensor."""
    if not isinstance(value, RecordedTensor):
        raise ConfigError(
            f"the upstream conversion produced {type(value).__name__} for this tensor, not one derived "
            "from the file: it cannot be streamed",
            tensor=name,
        )
    return value.recipe


def leaves(recipe: Recipe) -> set[str]:
    """The file keys a recipe reads."""
    if isinstance(recipe, Leaf):
        return {recipe.key}
    found: set[str] = set()
    for value in (*recipe.args, *recipe.kwargs.values()):
        tree_map(lambda v: found.update(leaves(v)) if isinstance(v, Leaf | Call) else None, value)
    return found


def replay(recipe: Recipe, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Run a recipe on real tensors fetched by `get`."""
    if isinstance(recipe, Leaf):
        return get(recipe.key)
    evaluate = lambda tree: tree_map(lambda v: replay(v, get) if isinstance(v, Leaf | Call) else v, tree)  # noqa: E731
    result = recipe.func(*evaluate(recipe.args), **evaluate(dict(recipe.kwargs)))
    return result if recipe.index is None else result[recipe.index]


__all__ = ["Call", "Leaf", "Recipe", "RecordedTensor", "leaves", "recipe_of", "recorded_inputs", "replay"]
