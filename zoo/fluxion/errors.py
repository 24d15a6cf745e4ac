"""Errors fluxion raises on purpose: each says what was wrong and what to do instead.

They are `zoo.errors.ZooError`s (so the CLI renders them as one line and a hint) and also the builtin
exception a Python caller would expect (`AttributeError` for a refused assignment, `KeyError` for an
unknown name, `ValueError` for tensors of the wrong shape), so existing `except` clauses keep working.
"""

from __future__ import annotations

from zoo.errors import ZooError


class FluxionError(ZooError):
    """Base class: a misuse of the chain framework, with the hint in the message itself.

    Unlike errors about files, these reach a Python developer as a traceback rather than through the CLI,
    so `str()` shows the hint too.
    """

    def __str__(self) -> str:
        return f"{self.one_line()}: {self.hint}" if self.hint else self.one_line()


class ChainAttributeError(FluxionError, AttributeError):
    """An assignment that would silently do something else: a module set as a chain attribute (it would
    become a child that runs), or an attribute an adapter does not have (a typo would change nothing)."""


class LoraNameError(FluxionError, KeyError):
    """A LoRA name that is not in the adapter."""


class LoraWeightsError(FluxionError, ValueError):
    """Tensors that cannot make the LoRA asked for (shape, rank, a missing half)."""


class ConverterError(FluxionError, RuntimeError):
    """A `Converter` with no layer after it holding tensors: there is nothing to convert to."""


__all__ = ["ChainAttributeError", "ConverterError", "FluxionError", "LoraNameError", "LoraWeightsError"]
