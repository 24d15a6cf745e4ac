"""What zoo's own files are called and what their headers say about them.

A converted model is a folder holding `model.safetensors` and `config.json`; its safetensors header
names the conversion (`zoo.component`), the output format and the key map's digest. A converted LoRA
is one safetensors file whose header says `zoo.format: zoo.lora/2` and names its base (version 1 files,
plain LoRAs only, keep loading). These facts
are shared by the runtime (`zoo.load`, `zoo.lora`) and the converters that write them.
"""

from __future__ import annotations

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
OUTPUT_FORMAT = 1

FORMAT_KEY = "zoo.format"
COMPONENT_KEY = "zoo.component"
KEYMAP_KEY = "zoo.keymap_sha256"
# 2: updates other than LoRA (LoHa, LoKr, Tucker, diffs, DoRA), by tensor role; the kinds in the header.
LORA_FORMAT = "zoo.lora/2"
LORA_FORMATS = ("zoo.lora/1", LORA_FORMAT)  # what zoo reads
LORA_KEY_PREFIX = "zoo.lora."
LORA_BASE_KEY = f"{LORA_KEY_PREFIX}base"

__all__ = [
    "COMPONENT_KEY",
    "CONFIG_NAME",
    "FORMAT_KEY",
    "KEYMAP_KEY",
    "LORA_BASE_KEY",
    "LORA_FORMAT",
    "LORA_FORMATS",
    "LORA_KEY_PREFIX",
    "OUTPUT_FORMAT",
    "WEIGHTS_NAME",
]
