"""A conversion, declared once as data.

Each `Conversion` says where the upstream weights come from (one or more upstream model folders,
pinned Hub files, an optional single-file layout), how to build the upstream reference model and our
chain model from config, the example inputs that run both for tracing and parity, and the overrides
tracing cannot find on its own. `zoo convert`, `zoo trace`, `zoo verify`, synthetic sources and the
manifests all read this one declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from converters._tracing import Overrides
from zoo.fluxion import Chain
from zoo.hub import WEIGHT_NAMES

Shape = tuple[int, ...]
UpstreamConfigs = Mapping[str, dict[str, Any]]  # subfolder -> config.json content
Size = Literal["tiny", "full"]


@dataclass(frozen=True)
class PinnedFile:
    """An upstream file pinned by revision and hash; None values are unknown, with `unknown` saying why."""

    repo: str
    filename: str
    revision: str | None
    sha256: str | None
    size: int | None = None
    license: str | None = None
    unknown: str | None = None


@dataclass(frozen=True)
class BasedFile:
    """An upstream file that converts only against a base model zoo converted (a Control-LoRA, which holds
    changes to its base's weights): declared so that `zoo list` and `zoo inspect` know it, and so that a
    recorded run of it inherits its licence.

    Attributes:
        name: Its manifest entry name, `<family>/<file stem>` (never a registry name).
        description: One line for `zoo list`.
        pinned: The Hub file (revision and sha256 None while unknown, with the reason).
        base: The registry name of the conversion whose output it goes on (`--base OUT/<base>`).
        license_name: The licence's name, when `pinned.license` is `other`.
        license_link: Where that licence is written.
    """

    name: str
    description: str
    pinned: PinnedFile
    base: str
    license_name: str | None = None
    license_link: str | None = None


@dataclass(frozen=True)
class KeyNormalization:
    """How a file's tensor names map onto the upstream model's state-dict names."""

    renames: Mapping[str, str]  # file key -> upstream model key
    ignored: Mapping[str, str] = field(default_factory=dict)  # file key -> reason
    reshapes: Mapping[str, Shape] = field(default_factory=dict)  # file key -> shape the model holds it in
    # file key -> the upstream model keys it holds as equal chunks along dim 0, in order (a projection
    # an older library version saved fused, which the installed one keeps as several)
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def identity_keys(shapes: Mapping[str, Shape]) -> KeyNormalization:
    """Files saved by the upstream library itself: names are already the model's."""
    return KeyNormalization({key: key for key in shapes})


@dataclass(frozen=True)
class UpstreamPart:
    """One upstream model folder feeding a conversion (most have one; SDXL's text encoder has two).

    Attributes:
        subfolder: Its folder in a diffusers pipeline (`unet`, `text_encoder_2`).
        library_class: The upstream class, for messages and model cards (`diffusers.UNet2DConditionModel`).
        build: Upstream config -> upstream model, built on the current default device (meta for tracing).
        normalize_keys: The file's names -> the model's (legacy layouts, prefixes); every file key is
            either renamed or ignored with a reason.
        weight_names: File names to look for in the folder, in order of preference.
        pinned: The pinned upstream weights file, when known.
        hub_key: Where the Hub's files name tensors differently from what the installed library's
            `save_pretrained` writes, this maps a saved name to the Hub's (synthetic sources use it,
            so tests run on files shaped like the ones users have).
        repo_folder: The folder holding it in its Hub repo when that is not `subfolder` ("" for a
            component repo with its files at the top, like madebyollin/sdxl-vae-fp16-fix).
        hub_single_file: On the Hub, the part is `pinned` alone: an original single file with no
            config.json beside it (an adapter released as one file), read through the conversion's
            single-file layout.
    """

    subfolder: str
    library_class: str
    build: Callable[[dict[str, Any]], nn.Module]
    normalize_keys: Callable[[Mapping[str, Shape]], KeyNormalization] = identity_keys
    weight_names: tuple[str, ...] = WEIGHT_NAMES
    pinned: PinnedFile | None = None
    hub_key: Callable[[str], str] | None = None
    repo_folder: str | None = None
    hub_single_file: bool = False


AssetRole = Literal["tokenizer", "scheduler", "processor"]
ASSET_ROLES: tuple[AssetRole, ...] = ("tokenizer", "scheduler", "processor")


@dataclass(frozen=True)
class Asset:
    """Files a conversion carries from its source into its output folder as they are.

    What a converted model needs besides its weights to be used: a tokenizer, a scheduler config, an
    image processor config. They are copied byte for byte into `OUT/<name>/<subfolder>/` and recorded in
    the manifest with their hashes; a source without them still converts, with a warning.

    Attributes:
        subfolder: Where the source pipeline holds them (`tokenizer`), and where the output puts them.
        role: What they are, for the manifest.
        files: The file names carried when present; at least one must be, or the asset is absent.
        check: Reads the copied folder and raises a ZooError if zoo could not use it (run before
            anything is written); None: no check.
        write_synthetic: (folder, size) -> writes a seeded stand-in for synthetic sources; None: synthetic
            sources have none.
    """

    subfolder: str
    role: AssetRole
    files: tuple[str, ...]
    check: Callable[[Path], object] | None = None
    write_synthetic: Callable[[Path, Size], None] | None = None


@dataclass(frozen=True)
class SingleFileLayout:
    """How this component sits in an original single-file checkpoint (SGM / LDM layout).

    Attributes:
        prefixes: Key prefixes that belong to this component in the single file.
        to_upstream: Single-file tensors (lazy, shapes only) -> upstream model tensors; may slice,
            transpose or concatenate (it is recorded and replayed per tensor, never run on real data).
        upstream_configs: Derives the upstream config(s) from the single file's shapes.
        ignored: Single-file keys (or globs) under `prefixes` that are not converted, with reasons.
    """

    prefixes: tuple[str, ...]
    to_upstream: Callable[[Mapping[str, Any], UpstreamConfigs], Mapping[str, Any]]
    upstream_configs: Callable[[Mapping[str, Shape]], dict[str, dict[str, Any]]]
    ignored: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversion:
    """One declared conversion: `family.component`.

    Attributes:
        name: Registry name (`sdxl.unet`).
        description: One line for `zoo list` and model cards.
        hub_repo: Upstream Hub repository of the pipeline.
        license: Licence of the upstream weights (SPDX-like id as the Hub uses it).
        parts: Upstream folders (several for a component converted into one file).
        derive_config: Upstream configs -> our config (raises ConfigError on unsupported variants).
        build_target: Our config -> our chain model (current default device).
        example_inputs: (our config, device, dtype or None) -> seeded inputs for both models (shapes
            only on meta).
        run_upstream: Runs the upstream model (a ModuleDict by subfolder when there are several parts).
        run_target: Runs our model on the same inputs.
        overrides: Our config -> what tracing cannot find alone.
        synthetic_configs: "tiny" | "full" -> subfolder -> upstream config, for seeded synthetic sources.
        single_file: Layout in the original single-file checkpoint, if there is one.
        fp16_warning: Said when converting to float16 is legal for the weights but unsafe at run time.
        family_check: Our derived config -> None when the source belongs to this family, else what
            differs (a wrong-family source is an error, not a silent conversion into the wrong name).
        assets: Files carried from the source into the output as they are (tokenizers, scheduler).
        upstream_configs_of: Our config -> the upstream configs it derives from (the inverse of
            `derive_config`), so a model known only by its config (a `zoo.load`ed output, a model in
            memory) can be traced again, e.g. to place a LoRA's upstream names on it; None when the
            conversion cannot be inverted.
    """

    name: str
    description: str
    hub_repo: str
    license: str
    parts: tuple[UpstreamPart, ...]
    derive_config: Callable[[UpstreamConfigs], Any]
    build_target: Callable[[Any], Chain]
    example_inputs: Callable[[Any, str, Any], Any]
    run_upstream: Callable[[nn.Module, Any], Any]
    run_target: Callable[[nn.Module, Any], Any]
    overrides: Callable[[Any], Overrides]
    synthetic_configs: Callable[[Size], dict[str, dict[str, Any]]]
    single_file: SingleFileLayout | None = None
    fp16_warning: str | None = None
    family_check: Callable[[Any], str | None] = lambda _config: None
    assets: tuple[Asset, ...] = ()
    upstream_configs_of: Callable[[Any], dict[str, dict[str, Any]]] | None = None

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def component(self) -> str:
        return self.name.split(".", 1)[1]


def upstream_model(conversion: Conversion, configs: UpstreamConfigs) -> nn.Module:
    """The upstream reference: the single part's model, or a ModuleDict of parts by subfolder."""
    if len(conversion.parts) == 1:
        part = conversion.parts[0]
        return part.build(configs[part.subfolder])
    return nn.ModuleDict({part.subfolder: part.build(configs[part.subfolder]) for part in conversion.parts})


def upstream_prefix(conversion: Conversion, part: UpstreamPart) -> str:
    """Prefix of a part's keys in the upstream model's state dict."""
    return "" if len(conversion.parts) == 1 else f"{part.subfolder}."


__all__ = [
    "ASSET_ROLES",
    "Asset",
    "AssetRole",
    "BasedFile",
    "Conversion",
    "KeyNormalization",
    "PinnedFile",
    "SingleFileLayout",
    "Size",
    "UpstreamConfigs",
    "UpstreamPart",
    "identity_keys",
    "upstream_model",
    "upstream_prefix",
]
