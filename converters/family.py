"""A model family, declared once as data in its own folder (`converters/<family>/`).

A family holds its conversions (and the variants converted only when named) plus everything the
shared machinery needs to know about it without naming it: how `zoo inspect` recognises its
checkpoints, how it is laid out in an original single file, which diffusers pipeline class names its
folders, and which of its parts LoRA files may target. Every optional field is for the families that
have that thing: a vision backbone has no pipeline class, no single file and no LoRA parts.

A family's folder registers it with `converters.registry.register(Family(...))`; nothing else lists
families.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from converters.declaration import Conversion, Shape

Shapes = Mapping[str, Shape]


@dataclass(frozen=True)
class Recognizer:
    """One kind of checkpoint a family can tell from its tensor names and shapes.

    Attributes:
        description: What the file is, for `zoo inspect` and error messages (an SDXL base checkpoint
            in the SGM layout; an SD 1.x UNet in the diffusers layout).
        matches: Tensor names and shapes -> whether a file holds this kind.
        conversion: The registry name that converts it, or None when zoo recognises the kind only to
            say what it is (an SDXL refiner, an SD 2.x checkpoint).
        generic: A catch-all ("a UNet (diffusers layout)"), tried only after every family's specific
            recognizers found nothing.
    """

    description: str
    matches: Callable[[Shapes], bool]
    conversion: str | None = None
    generic: bool = False


@dataclass(frozen=True)
class SingleFileFormat:
    """How the family's original single-file checkpoint is recognised and written.

    Attributes:
        recognizer: Matches every file in the family's single-file layout (a key prefix only they have).
        write_synthetic: (diffusers pipeline folder, file to write) -> writes the original single file
            that holds those weights, for offline tests and `--synthetic --layout single-file`.
        per_conversion: Each original file holds one conversion's model (one file per model size or
            variant) rather than the whole family; its synthetic file is written from a folder holding
            only that conversion's parts.
    """

    recognizer: Recognizer
    write_synthetic: Callable[[Path, Path], Path]
    per_conversion: bool = False


@dataclass(frozen=True)
class Family:
    """Everything zoo knows about one model family.

    Attributes:
        name: Registry name, also the folder name (`sdxl`); conversions are named `<name>.<component>`.
        description: One line for `zoo list` and messages.
        conversions: Converted when the family is named (`zoo convert sdxl`), in this order.
        variants: Conversions of related upstream repos, converted only when named.
        pipeline_class: The diffusers pipeline class whose folders hold the family
            (`model_index.json`'s `_class_name`); None for families that are not diffusers pipelines.
        single_file: The original single-file layout, when the family has one.
        recognizers: How `zoo inspect` tells the family's checkpoints (first match wins), including
            kinds zoo recognises without converting them.
        lora_parts: Upstream parts (pipeline subfolders) LoRA files may target; empty: no LoRAs.
        alternatives: The conversions are alternatives (sizes or variants of one model), each read from
            its own source, rather than parts of one pipeline: named with `--source`, the family
            converts the one conversion the source is (`converters._convert.pick`); with `--synthetic`,
            a conversion must be named.
    """

    name: str
    description: str
    conversions: tuple[Conversion, ...]
    variants: tuple[Conversion, ...] = ()
    pipeline_class: str | None = None
    single_file: SingleFileFormat | None = None
    recognizers: tuple[Recognizer, ...] = ()
    lora_parts: tuple[str, ...] = ()
    alternatives: bool = False

    @property
    def declared(self) -> tuple[Conversion, ...]:
        """Every conversion, variants included."""
        return (*self.conversions, *self.variants)

    @property
    def all_recognizers(self) -> tuple[Recognizer, ...]:
        """The family's recognizers, then its single-file layout's (which matches every file in the
        layout, where the others can name a file's size or variant)."""
        own = (self.single_file.recognizer,) if self.single_file else ()
        return (*self.recognizers, *own)

    def lora_conversions(self) -> tuple[Conversion, ...]:
        """The conversions holding a part LoRAs may target."""
        return tuple(c for c in self.conversions if any(p.subfolder in self.lora_parts for p in c.parts))


def has_prefix(prefix: str) -> Callable[[Shapes], bool]:
    """A matcher: some tensor name starts with `prefix`."""
    return lambda shapes: any(key.startswith(prefix) for key in shapes)


__all__ = ["Family", "Recognizer", "Shapes", "SingleFileFormat", "has_prefix"]
