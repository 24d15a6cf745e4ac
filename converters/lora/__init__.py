"""LoRAs, as an adapter family: read kohya / LyCORIS / diffusers / PEFT files (LoRA, LoCon with or
without a Tucker core, LoHa, LoKr, DoRA, full and norm diffs), place each entry on a layer of our chain
models by name, and write them in our format or inject them. They fit the families that declare
`lora_parts` (the upstream parts LoRA files name).

    read_lora(file)          -> LoraFile      format found from the keys, entries typed and checked
    resolve_base(base)       -> LoraBase      a family, a `zoo convert` output, a pipeline folder
    map_lora(lora, base)     -> MappedLora    every entry on exactly one chain layer, or an error
    convert_lora(file, base, out=...)         writes OUT/<stem>.safetensors in our format
    convert_lora_folder(folder, base, out=...)    every LoRA file of a folder, refusals listed
    load_lora(model, file, name=..., scale=...)   straight into a chain model (`zoo.lora` at run time)
"""

from converters.family import Family
from converters.lora.base import LoraBase, Placement, model_base, resolve_base
from converters.lora.convert import (
    LoadedLora,
    LoraConversionResult,
    convert_lora,
    load_lora,
    load_lora_into,
    record_lora_in_manifest,
)
from converters.lora.files import lora_metadata, write_zoo_lora, zoo_lora_weights
from converters.lora.folder import FolderConversion, FolderItem, convert_lora_folder
from converters.lora.formats import SUPPORTED, ZOO_FORMAT, LoraEntry, LoraFile, LoraFormat, read_lora
from converters.lora.mapping import MappedLora, PlacedEntry, map_lora
from converters.lora.recognizers import RECOGNIZERS
from converters.registry import register

FAMILY = register(
    Family(
        name="lora",
        description="LoRA files (kohya/A1111, LyCORIS, diffusers, PEFT; LoRA, LoHa, LoKr, DoRA, diffs) "
        "for families with lora_parts",
        conversions=(),
        recognizers=RECOGNIZERS,
    )
)

__all__ = [
    "FAMILY",
    "SUPPORTED",
    "ZOO_FORMAT",
    "FolderConversion",
    "FolderItem",
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
    "convert_lora_folder",
    "load_lora",
    "load_lora_into",
    "lora_metadata",
    "map_lora",
    "model_base",
    "read_lora",
    "record_lora_in_manifest",
    "resolve_base",
    "write_zoo_lora",
    "zoo_lora_weights",
]
