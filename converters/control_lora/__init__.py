"""Stability's Control-LoRAs (`stabilityai/control-lora`, `control-lora-*-rank128.safetensors` /
`rank256`): ControlNets for SDXL stored as low-rank changes to the base UNet's encoder plus full
tensors; `zoo convert control-lora FILE --base BASE` merges one into a ControlNet of ours, written to
`OUT/control_lora/<file stem>/` and recorded in `OUT/manifest.json` (`record.py`). The eight released files
are declared (`files.py`) for `zoo list`, `zoo inspect` and the licence of a recorded run.

Upstream: https://huggingface.co/stabilityai/control-lora (SAI community licence, see the repo).
"""

from converters.control_lora.convert import ControlLoraResult, convert_control_lora, read_base
from converters.control_lora.files import DECLARED, RECOGNIZERS
from converters.family import Family
from converters.registry import register

FAMILY = register(
    Family(
        name="control_lora",
        description="Control-LoRAs for SDXL (stabilityai/control-lora), merged with their base UNet",
        conversions=(),
        recognizers=RECOGNIZERS,
        based_files=DECLARED,
    )
)

__all__ = ["FAMILY", "ControlLoraResult", "convert_control_lora", "read_base"]
