"""Checkpoint input and output: safe readers and a streaming, deterministic, atomic writer.

Readers detect the format from content, validate safetensors headers with our own strict parser,
and never unpickle code. The writer streams tensors one at a time into a byte-reproducible file.
"""

from converters._checkpoints.detect import CheckpointFormat, detect_format
from converters._checkpoints.readers import (
    CheckpointReader,
    PickleReader,
    SafetensorsReader,
    ShardedSafetensorsReader,
    open_checkpoint,
)
from converters._checkpoints.safetensors_header import SafetensorsHeader, TensorEntry, read_header
from converters._checkpoints.writer import TensorPlan, WriteSummary, write_safetensors

__all__ = [
    "CheckpointFormat",
    "CheckpointReader",
    "PickleReader",
    "SafetensorsHeader",
    "SafetensorsReader",
    "ShardedSafetensorsReader",
    "TensorEntry",
    "TensorPlan",
    "WriteSummary",
    "detect_format",
    "open_checkpoint",
    "read_header",
    "write_safetensors",
]
