"""How `zoo inspect` recognizes LoRA files: by their key names alone (see `converters.lora.formats`)."""

from __future__ import annotations

from converters.family import Recognizer, Shapes
from converters.lora.keys import key_format, unsupported_variant


def _lora_format(shapes: Shapes) -> str | None:
    formats = {found[0] if (found := key_format(key)) else None for key in shapes}
    return formats.pop() if len(formats) == 1 else None


def _is_lora(shapes: Shapes) -> bool:
    return _lora_format(shapes) not in (None, "zoo")


def _is_unsupported_variant(shapes: Shapes) -> bool:
    return any(unsupported_variant(key) is not None for key in shapes)


RECOGNIZERS = (
    Recognizer(
        "a LoRA variant zoo does not convert yet (OFT, BOFT, GLoRA, (IA)³, ...)", _is_unsupported_variant
    ),
    Recognizer("a LoRA: convert it with `zoo convert lora FILE --base BASE`", _is_lora),
)

__all__ = ["RECOGNIZERS"]
