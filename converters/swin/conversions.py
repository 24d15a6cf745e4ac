"""The Swin conversions as data: one builder for the any-size backbone and the pinned releases.

`swin.backbone` converts any Swin V1 (its config comes from the source: a `config.json`, or the
shapes of an original file); the releases (`swin.tiny`, … `swin.large_window12`) each convert their Hub
repository, and refuse a source of another size, naming both. Every conversion's test twin is
`SwinConfig.toy()`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from converters._tracing import Overrides
from converters.declaration import Conversion, PinnedFile, SingleFileLayout, Size, UpstreamPart
from converters.family import Recognizer, Shapes
from converters.swin.keys import hub_key, normalize_swin_keys
from converters.swin.shapes import swin_upstream_config
from converters.swin.upstream import (
    SUBFOLDER,
    derive_swin_config,
    example_images,
    run_ours,
    run_upstream,
    swin_model,
    upstream_swin_config,
)
from zoo.errors import ConfigError
from zoo.foundationals.swin.transformer import SwinConfig, SwinTransformer

LICENSE = "apache-2.0"  # as the Hub's microsoft/swin-* repositories are tagged (the GitHub release: MIT)
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
WEIGHTS_FILE = "model.safetensors"
LIBRARY_CLASS = "transformers.SwinModel"

Signature = tuple[tuple[int, ...], tuple[int, ...], int]


def signature(config: SwinConfig) -> Signature:
    """What tells the Swin releases apart: depths, heads per stage, window."""
    return config.depths, config.num_heads, config.window_size


def describe(config: SwinConfig, releases: Mapping[str, SwinConfig]) -> str:
    """A config in words: the release it has the size of, and its depths, heads and window."""
    shape = f"depths {config.depths}, heads {config.num_heads}, window {config.window_size}"
    named = [name for name, release in releases.items() if signature(release) == signature(config)]
    return f"{named[0]} ({shape})" if named else f"a Swin of {shape}"


def size_check(
    name: str, release: SwinConfig, twin: SwinConfig, releases: Mapping[str, SwinConfig]
) -> Callable[[Any], str | None]:
    """A release's `family_check`: None for a source of its size (or its declared test twin), else both sizes.

    The twin (what `--synthetic tiny` writes) is accepted as it is declared: a twin with a release's
    depths, heads and window would have its 24 blocks, which tests trace again and again.
    """

    def check(config: SwinConfig) -> str | None:
        if signature(config) == signature(release) or config == twin:
            return None
        return f"{name} converts {describe(release, releases)}; this source is {describe(config, releases)}"

    return check


def transformers_shapes(shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """A transformers Swin file's shapes under `SwinModel`'s names (unknown keys are kept as they are)."""
    renames = normalize_swin_keys(shapes).renames
    return {renames.get(key, key): tuple(shape) for key, shape in shapes.items()}


def transformers_config(shapes: Shapes) -> SwinConfig | None:
    """Our config of a transformers-layout Swin file, from its shapes; None if it is not one."""
    named = transformers_shapes(shapes)
    if not any(key.startswith("encoder.layers.") for key in named):
        return None
    try:
        return derive_swin_config(swin_upstream_config(named))
    except ConfigError:
        return None


def recognizer(description: str, release: SwinConfig | None, conversion: str) -> Recognizer:
    """Recognizes transformers-layout files of a release's size (any Swin when `release` is None)."""

    def matches(shapes: Shapes) -> bool:
        config = transformers_config(shapes)
        return config is not None and (release is None or signature(config) == signature(release))

    return Recognizer(description, matches, conversion)


def _part(pinned: PinnedFile) -> UpstreamPart:
    return UpstreamPart(
        SUBFOLDER,
        LIBRARY_CLASS,
        swin_model,
        normalize_keys=normalize_swin_keys,
        pinned=pinned,
        hub_key=hub_key,
        repo_folder="",  # the Hub's repositories hold one model, at their top level
    )


def swin_conversion(
    name: str,
    description: str,
    hub_repo: str,
    full: SwinConfig,
    tiny: SwinConfig,
    family_check: Callable[[Any], str | None] = lambda _config: None,
    single_file: SingleFileLayout | None = None,
) -> Conversion:
    """One Swin conversion from transformers' `SwinModel` onto `SwinTransformer`."""

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {SUBFOLDER: upstream_swin_config(full if size == "full" else tiny)}

    return Conversion(
        name=name,
        description=description,
        hub_repo=hub_repo,
        license=LICENSE,
        parts=(_part(PinnedFile(hub_repo, WEIGHTS_FILE, None, None, None, LICENSE, UNPINNED)),),
        derive_config=lambda configs: derive_swin_config(configs[SUBFOLDER]),
        build_target=SwinTransformer,
        example_inputs=lambda config, device, dtype: example_images(config, device, dtype),
        run_upstream=run_upstream,
        run_target=run_ours,
        overrides=lambda _config: Overrides(),  # same modules, same order: tracing pairs them all
        synthetic_configs=synthetic,
        single_file=single_file,
        family_check=family_check,
        upstream_configs_of=lambda config: {SUBFOLDER: upstream_swin_config(config)},
    )


__all__ = [
    "LICENSE",
    "describe",
    "recognizer",
    "signature",
    "size_check",
    "swin_conversion",
    "transformers_config",
    "transformers_shapes",
]
