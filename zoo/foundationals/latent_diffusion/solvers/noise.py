"""Gaussian noise drawn exactly as diffusers draws it, so a seeded generator gives the same tensor.

diffusers' rule (its `randn_tensor`): a CPU generator always draws on the CPU, the result is then moved
to the target device; a list of generators draws one batch item from each, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from zoo.errors import UsageError

Generators = torch.Generator | Sequence[torch.Generator] | None


def gaussian_noise(
    shape: Sequence[int], generator: Generators, device: torch.device | str | None, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal noise of `shape` on `device`, drawn from `generator`.

    Args:
        shape: The noise shape, batch first.
        generator: A generator, one per batch item, or None for torch's global one.
        device: Where the noise goes (the CPU when None).
        dtype: The noise dtype; the draw itself is made in this dtype.

    Returns:
        The noise tensor.

    Example:
        >>> noise = gaussian_noise((2, 4, 8, 8), torch.Generator().manual_seed(0), "cpu", torch.float32)
        >>> noise.shape
        torch.Size([2, 4, 8, 8])
    """
    target = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, Sequence) and len(generator) == 1:
        generator = generator[0]
    draw_device = _draw_device(generator, target)
    if isinstance(generator, Sequence):
        return _per_item_noise(shape, generator, draw_device, dtype).to(target)
    return torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=dtype).to(target)


def _draw_device(generator: Generators, target: torch.device) -> torch.device:
    if generator is None:
        return target
    kind = (generator[0] if isinstance(generator, Sequence) else generator).device.type
    if kind == target.type:
        return target
    if kind == "cpu":
        return torch.device("cpu")
    raise UsageError(
        f"a {kind} generator cannot draw noise for a {target.type} tensor", hint="use a CPU generator"
    )


def _per_item_noise(
    shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    if len(generators) != shape[0]:
        raise UsageError(
            f"{len(generators)} generators for a batch of {shape[0]}", hint="pass one per batch item"
        )
    item_shape = (1, *shape[1:])
    return torch.cat(
        [torch.randn(item_shape, generator=item, device=device, dtype=dtype) for item in generators]
    )


__all__ = ["Generators", "gaussian_noise"]
