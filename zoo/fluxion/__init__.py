"""fluxion: models as trees of small layers, and adapters that change them without editing them.

Import it as `import zoo.fluxion as fl`.
"""

from zoo.fluxion.adapters.adapter import Adapter
from zoo.fluxion.adapters.delta import LayerDelta, LayerOp, WeightDelta
from zoo.fluxion.adapters.diff import Diff
from zoo.fluxion.adapters.dora import Dora
from zoo.fluxion.adapters.loha import Loha
from zoo.fluxion.adapters.lokr import Lokr
from zoo.fluxion.adapters.lora import Conv2dLora, LinearLora, Lora, LoraAdapter
from zoo.fluxion.adapters.tucker import TuckerConv2dLora
from zoo.fluxion.chain import Chain, child_names
from zoo.fluxion.combinators import Concatenate, Distribute, Parallel, Passthrough, Residual, Sum
from zoo.fluxion.context import Context, ContextProvider, Contexts
from zoo.fluxion.errors import (
    ChainAttributeError,
    ConverterError,
    FluxionError,
    LoraNameError,
    LoraWeightsError,
)
from zoo.fluxion.layers.activations import GLU, GeLU, QuickGeLU, ReLU, SiLU
from zoo.fluxion.layers.attention import Attention, ScaledDotProductAttention, SelfAttention
from zoo.fluxion.layers.basics import (
    Chunk,
    Flatten,
    GetArg,
    Identity,
    Interpolate,
    Lambda,
    Multiply,
    Pad,
    Permute,
    Reshape,
    Slicing,
    Transpose,
    Unflatten,
)
from zoo.fluxion.layers.context_access import SetContext, UseContext
from zoo.fluxion.layers.converter import Converter
from zoo.fluxion.layers.sampling import Downsample, Upsample
from zoo.fluxion.layers.weighted import Conv2d, Embedding, GroupNorm, LayerNorm, Linear, Parameter
from zoo.fluxion.module import ContextModule, Module, WeightedModule
from zoo.fluxion.state import (
    adapter_key_map,
    adapter_state_dict,
    base_key_map,
    base_state_dict,
    load_adapter_state_dict,
    load_base_state_dict,
)

__all__ = [
    "GLU",
    "Adapter",
    "Attention",
    "Chain",
    "ChainAttributeError",
    "Chunk",
    "Concatenate",
    "Context",
    "ContextModule",
    "ContextProvider",
    "Contexts",
    "Conv2d",
    "Conv2dLora",
    "Converter",
    "ConverterError",
    "Diff",
    "Distribute",
    "Dora",
    "Downsample",
    "Embedding",
    "Flatten",
    "FluxionError",
    "GeLU",
    "GetArg",
    "GroupNorm",
    "Identity",
    "Interpolate",
    "Lambda",
    "LayerDelta",
    "LayerNorm",
    "LayerOp",
    "Linear",
    "LinearLora",
    "Loha",
    "Lokr",
    "Lora",
    "LoraAdapter",
    "LoraNameError",
    "LoraWeightsError",
    "Module",
    "Multiply",
    "Pad",
    "Parallel",
    "Parameter",
    "Passthrough",
    "Permute",
    "QuickGeLU",
    "ReLU",
    "Reshape",
    "Residual",
    "ScaledDotProductAttention",
    "SelfAttention",
    "SetContext",
    "SiLU",
    "Slicing",
    "Sum",
    "Transpose",
    "TuckerConv2dLora",
    "Unflatten",
    "Upsample",
    "UseContext",
    "WeightDelta",
    "WeightedModule",
    "adapter_key_map",
    "adapter_state_dict",
    "base_key_map",
    "base_state_dict",
    "child_names",
    "load_adapter_state_dict",
    "load_base_state_dict",
]
