"""What a checkpoint is: the one place that says so, for `zoo inspect` and for error messages.

The file format comes from the content (`converters._checkpoints.detect_format`); what model the
tensors belong to comes from, in order:
1. zoo's own outputs, which say what they are in their header metadata (`zoo.component`, `zoo.format`);
2. each family's recognizers (`Family.recognizers`, its single-file layout first);
3. the families' catch-all recognizers ("a UNet (diffusers layout) of no declared family").
Adapters are families too: the `lora` family recognizes LoRA files by their key names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from converters import registry
from converters.family import Recognizer, Shapes
from zoo.formats import COMPONENT_KEY, FORMAT_KEY, LORA_BASE_KEY, LORA_FORMATS


@dataclass(frozen=True)
class Detection:
    """What a set of tensors is.

    Attributes:
        description: In words, for people.
        family: The family it belongs to, when one is declared.
        conversion: The registry name that converts it, or None (already ours, or not convertible).
        generic: Only a catch-all matched: the kind is known, the family is not.
    """

    description: str
    family: str | None = None
    conversion: str | None = None
    generic: bool = False


def detect_checkpoint(shapes: Shapes, metadata: Mapping[str, str] | None = None) -> Detection | None:
    """What these tensors (names and shapes; with the file's header metadata) are, or None."""
    return (
        _zoo_output(metadata or {}) or _recognized(shapes, generic=False) or _recognized(shapes, generic=True)
    )


def _zoo_output(metadata: Mapping[str, str]) -> Detection | None:
    component = metadata.get(COMPONENT_KEY)
    if component is not None:
        known = component in registry.all_conversions()
        family = component.partition(".")[0] if known else None
        return Detection(
            f"converted by zoo: {component} (zoo format {metadata.get(FORMAT_KEY, '?')})", family
        )
    if (version := metadata.get(FORMAT_KEY)) in LORA_FORMATS:
        base = metadata.get(LORA_BASE_KEY)
        return Detection(f"a LoRA converted by zoo ({version}) for {base or 'an unknown base'}", base)
    return None


def _recognized(shapes: Shapes, generic: bool) -> Detection | None:
    for family in registry.families().values():
        for recognizer in family.all_recognizers:
            if recognizer.generic == generic and recognizer.matches(shapes):
                return _detection(recognizer, family.name)
    return None


def _detection(recognizer: Recognizer, family: str) -> Detection:
    owner = None if recognizer.generic else family
    return Detection(recognizer.description, owner, recognizer.conversion, recognizer.generic)


__all__ = ["Detection", "detect_checkpoint"]
