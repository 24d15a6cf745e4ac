"""Stability's Control-LoRAs (`stabilityai/control-lora`, `control-lora-*-rank128.safetensors` /
`rank256`): ControlNets for SDXL stored as low-rank changes to the base UNet's encoder plus full
tensors; `zoo convert control-lora FILE --base BASE` merges one into a ControlNet of ours.

Upstream: https://huggingface.co/stabilityai/control-lora (SAI community licence, see the repo).
"""

from converters.control_lora.convert import ControlLoraResult, convert_control_lora, read_base
from converters.family import Family, Recognizer
from converters.registry import register

FAMILY = register(
    Family(
        name="control_lora",
        description="Control-LoRAs for SDXL (stabilityai/control-lora), merged with their base UNet",
        conversions=(),
        recognizers=(
            Recognizer(
                "a Control-LoRA for SDXL (stabilityai/control-lora; convert with --base, its SDXL UNet)",
                lambda shapes: "lora_controlnet" in shapes,
            ),
        ),
    )
)

__all__ = ["FAMILY", "ControlLoraResult", "convert_control_lora", "read_base"]
