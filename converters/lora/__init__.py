"""LoRAs for the SD 1.5 and SDXL families: read kohya / LyCORIS LoCon / diffusers / PEFT files, place
each entry on a layer of our chain models by name, and write them in our format or inject them.

    read_lora(file)          -> LoraFile      format found from the keys, entries checked
    resolve_base(base)       -> LoraBase      a family, a `zoo convert` output, a pipeline folder
    map_lora(lora, base)     -> MappedLora    every entry on exactly one chain layer, or an error
    convert_lora(file, base, out=...)         writes OUT/<stem>.safetensors in our format
    load_lora(model, file, name=..., scale=...)   straight into a chain model (`zoo.lora` at run time)
"""

from converters.lora.base import LoraBase, Placement, model_base, resolve_base
from converters.lora.convert import (
    LoadedLora,
    LoraConversionResult,
    convert_lora,
    load_lora,
    record_lora_in_manifest,
)
from converters.lora.files import lora_metadata, write_zoo_lora, zoo_lora_weights
from converters.lora.formats import SUPPORTED, ZOO_FORMAT, LoraEntry, LoraFile, LoraFormat, read_lora
from converters.lora.mapping import MappedLora, PlacedEntry, map_lora

__all__ = [
    "SUPPORTED",
    "ZOO_FORMAT",
    "LoadedLora",
    "LoraBase",
    "LoraConversionResult",
    "LoraEntry",
    "LoraFile",
    "LoraFormat",
    "MappedLora",
    "PlacedEntry",
    "Placement",
    "convert_lora",
    "load_lora",
    "lora_metadata",
    "map_lora",
    "model_base",
    "read_lora",
    "record_lora_in_manifest",
    "resolve_base",
    "write_zoo_lora",
    "zoo_lora_weights",
]
