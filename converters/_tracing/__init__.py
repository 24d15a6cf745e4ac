"""Key tracing: find which upstream tensor goes where by running both models on ``meta``.

``trace`` records the tensor-holding modules of a model in execution order, ``build_key_map``
aligns two traces into a checked :class:`KeyMap` (overrides declared as data), and
``trace_key_map`` does both for two models. Any gap in coverage raises
:class:`zoo.errors.CoverageError` with the two traces side by side at the divergence.
"""

from converters._tracing.align import Overrides, build_key_map, signature, trace_key_map
from converters._tracing.keymap import (
    IDENTITY,
    KEYMAP_FORMAT,
    Concat,
    Coverage,
    Identity,
    KeyMap,
    MapEntry,
    Reshape,
    Split,
    Transform,
    Transpose,
    transform_from_dict,
)
from converters._tracing.report import Divergence, failure_report, side_by_side
from converters._tracing.trace import (
    Shape,
    Trace,
    TracedModule,
    TracedTensor,
    held_tensors,
    state_shapes,
    trace,
)

__all__ = [
    "IDENTITY",
    "KEYMAP_FORMAT",
    "Concat",
    "Coverage",
    "Divergence",
    "Identity",
    "KeyMap",
    "MapEntry",
    "Overrides",
    "Reshape",
    "Shape",
    "Split",
    "Trace",
    "TracedModule",
    "TracedTensor",
    "Transform",
    "Transpose",
    "build_key_map",
    "failure_report",
    "held_tensors",
    "side_by_side",
    "signature",
    "state_shapes",
    "trace",
    "trace_key_map",
    "transform_from_dict",
]
