"""One conversion per release: a transformers folder (or an original file) -> `DINOv2`.

Tracing pairs transformers' modules with ours in execution order, except the embedding tensors:
transformers' `Dinov2Embeddings` holds the class, mask, register tokens and position embeddings
itself and runs before its patch convolution, while ours are one layer each, after it. Those are
paired explicitly (`overrides`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from converters._tracing import IDENTITY, MapEntry, Overrides
from converters.declaration import Conversion, PinnedFile, Size, UpstreamPart
from converters.dinov2.original import original_layout
from converters.dinov2.releases import LICENSE, RELEASES, Release, describe, release_of_size
from converters.dinov2.transformers_config import (
    PLAIN,
    WITH_REGISTERS,
    architecture,
    derive_config,
    upstream_config,
    upstream_model,
)
from converters.dinov2.transformers_keys import normalize_keys
from zoo.foundationals.dinov2 import DINOv2, DINOv2Config

WEIGHTS_FILE = "model.safetensors"
NOT_PINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
BATCH = 2
MASKED_EVERY = 3  # the first image has every third patch masked, the second none


class ExampleInputs(NamedTuple):
    """A seeded batch at the training size, and a patch mask exercising the mask token."""

    image: torch.Tensor
    patch_mask: torch.Tensor


def example_inputs(config: DINOv2Config, device: str, dtype: torch.dtype | None) -> ExampleInputs:
    """Two images at the training size; on meta, shapes only."""
    shape = (BATCH, config.in_channels, config.image_size, config.image_size)
    patches = config.grid_side**2
    if torch.device(device).type == "meta":
        return ExampleInputs(
            torch.zeros(shape, device="meta", dtype=dtype),
            torch.zeros(BATCH, patches, dtype=torch.bool, device="meta"),
        )
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    mask = torch.zeros(BATCH, patches, dtype=torch.bool)
    mask[0, ::MASKED_EVERY] = True
    return ExampleInputs(image, mask.to(device))


def _split(tokens: torch.Tensor, registers: int) -> tuple[torch.Tensor, ...]:
    """(class, [registers,] patches): no empty register tensor (it has no largest value to compare)."""
    start = 1 + registers
    split = (tokens[:, 0], tokens[:, 1:start], tokens[:, start:])
    return split if registers else (split[0], split[2])


def run_upstream(model: nn.Module, inputs: ExampleInputs) -> tuple[torch.Tensor, ...]:
    """transformers' final tokens, split, then every layer's output (`hidden_states[1:]`)."""
    output = model(pixel_values=inputs.image, bool_masked_pos=inputs.patch_mask, output_hidden_states=True)
    config: Any = model.config  # a transformers config (typed as a submodule by nn.Module)
    registers = config.num_register_tokens if architecture(config.to_dict()) == WITH_REGISTERS else 0
    return (*_split(output.last_hidden_state, registers), *output.hidden_states[1:])


def run_target(model: nn.Module, inputs: ExampleInputs) -> tuple[torch.Tensor, ...]:
    """Ours: the same outputs, from `DINOv2.encode`."""
    assert isinstance(model, DINOv2)
    layers = range(model.config.num_layers)
    output = model.encode(inputs.image, layers=layers, patch_mask=inputs.patch_mask)
    tokens = torch.cat((output.class_token[:, None], output.register_tokens, output.patch_tokens), dim=1)
    return (*_split(tokens, model.config.num_registers), *output.layers)


def overrides(config: DINOv2Config) -> Overrides:
    """The embedding tensors, paired by name (see the module docstring)."""
    pairs = {
        "embeddings.cls_token": "Embeddings.ClassToken.weight",
        "embeddings.mask_token": "Embeddings.MaskToken.weight",
        "embeddings.position_embeddings": "Embeddings.PositionEmbedding.weight",
    }
    if config.num_registers:
        pairs["embeddings.register_tokens"] = "Embeddings.Registers.weight"
    return Overrides(
        pairs=tuple(MapEntry((source,), (target,), IDENTITY) for source, target in pairs.items())
    )


def family_check(release: Release) -> Callable[[DINOv2Config], str | None]:
    """None for a config of the release's kind (registers, feed-forward) and no other release's size."""

    def check(config: DINOv2Config) -> str | None:
        other = release_of_size(config)
        if release.same_kind(config) and other in (None, release):
            return None
        kind = [candidate.name for candidate in RELEASES if candidate.same_kind(config)]
        hint = f"convert it as {other.name}" if other else f"convert it as one of its kind: {', '.join(kind)}"
        return f"it is {describe(config)}, and {release.name} converts {release.title}: {hint}"

    return check


def tiny_config(release: Release) -> DINOv2Config:
    """The release's test twin: its registers and feed-forward, tiny."""
    registers = bool(release.config.num_registers)
    return DINOv2Config.tiny(registers=registers, feedforward=release.config.feedforward)


def release_conversion(release: Release) -> Conversion:
    """The conversion of one release, from its transformers folder or its original file."""
    subfolder = release.component
    class_name = WITH_REGISTERS if release.config.num_registers else PLAIN

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {subfolder: upstream_config(release.config if size == "full" else tiny_config(release))}

    return Conversion(
        name=release.name,
        description=f"DINOv2 {release.title} backbone (transformers {class_name})",
        hub_repo=release.hub_repo,
        license=LICENSE,
        parts=(
            UpstreamPart(
                subfolder,
                f"transformers.{class_name}",
                upstream_model,
                normalize_keys=normalize_keys,
                pinned=PinnedFile(release.hub_repo, WEIGHTS_FILE, None, None, None, LICENSE, NOT_PINNED),
                repo_folder="",
            ),
        ),
        derive_config=lambda configs: derive_config(configs[subfolder]),
        build_target=DINOv2,
        example_inputs=example_inputs,
        run_upstream=run_upstream,
        run_target=run_target,
        overrides=overrides,
        synthetic_configs=synthetic,
        single_file=original_layout(release),
        family_check=family_check(release),
        upstream_configs_of=lambda config: {subfolder: upstream_config(config)},
    )


__all__ = ["ExampleInputs", "example_inputs", "release_conversion", "run_target", "run_upstream"]
