"""IP-Adapter's original files: `{"image_proj": ..., "ip_adapter": ...}` pickles and their flat safetensors.

The `.bin` releases pickle two state dicts, which our reader flattens to the names the `.safetensors`
releases use: `image_proj.<key>` (the image projection, in the original classes' names) and
`ip_adapter.<N>.to_k_ip.weight` / `.to_v_ip.weight`, where N numbers *all* the UNet's attention
processors in diffusers' registration order (down, up, middle blocks): cross-attentions get the odd Ns.

What the file is comes from its shapes: the projection kind and widths from `image_proj.*` (dispatched
on the same keys diffusers' loader uses), the UNet from the `ip_adapter.N` channels, matched against
the UNets the conversion is declared for. The mapping is diffusers' own loader
(`UNet2DConditionModel._load_ip_adapter_weights`), run once on recorded meta tensors: each module it
builds records what it is given to load, and each of those tensors' recipes is replayed when written.
FaceID files (an ID-embedding projection and LoRA weights for every attention) are refused.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from converters._single_file.shapes import ShapeReader
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.ip_adapter.reference import SUBFOLDER, cross_attention_processors, diffusers_unet
from zoo.errors import ConfigError, CoverageError

IMAGE_PROJ = "image_proj."
IP_ADAPTER = "ip_adapter."
PREFIXES = (IMAGE_PROJ, IP_ADAPTER)
BASE_TOKENS = 4  # diffusers' loader (and the original IPAdapter class) fix 4 tokens for the linear projection
FULL_FACE_TOKENS = 257  # diffusers' loader: 256 patches + the class token of a ViT-H/14 at 224
RESAMPLER_HEAD_DIM = 64  # diffusers' loader reads heads as to_q's width // 64
RESAMPLER_DEPTH = 4  # diffusers' loader renames layers 0-3 only
_KEY_VALUE = re.compile(r"ip_adapter\.(\d+)\.to_([kv])_ip\.weight")
FACEID_REASON = (
    "an IP-Adapter FaceID file: not supported yet (it reads InsightFace face-ID embeddings, which zoo has no "
    "model for, and carries LoRA weights for every UNet attention)"
)

Attentions = dict[int, tuple[int, int]]  # N -> (channels, cross-attention width)


# -- what the file holds ---------------------------------------------------------------------------


def projection_from_shapes(shapes: Mapping[str, Shape]) -> dict[str, Any]:
    """diffusers' image projection class and arguments for a file's `image_proj.*`, as its loader reads them.

    Raises:
        ConfigError: A FaceID projection, or one of no kind zoo knows.
    """
    read = ShapeReader(shapes, IMAGE_PROJ, "IP-Adapter image projection")
    if read.has("proj.weight"):
        out, embedding = read("proj.weight")
        return {
            "_class_name": "ImageProjection",
            "image_embed_dim": embedding,
            "cross_attention_dim": out // BASE_TOKENS,
            "num_image_text_embeds": BASE_TOKENS,
        }
    if read.has("proj.3.weight"):
        return {
            "_class_name": "IPAdapterFullImageProjection",
            "image_embed_dim": read("proj.0.weight")[0],
            "cross_attention_dim": read("proj.3.weight")[0],
        }
    if read.has("perceiver_resampler.proj_in.weight") or read.has("norm.weight"):
        raise ConfigError(FACEID_REASON, tensor=IMAGE_PROJ + "proj.0.weight")
    if read.has("latents"):
        return _resampler(read)
    raise ConfigError(
        "not an IP-Adapter image projection zoo knows (no proj.weight, proj.3.weight or latents)",
        tensor=next((key for key in shapes if key.startswith(IMAGE_PROJ)), IMAGE_PROJ),
    )


def _resampler(read: ShapeReader) -> dict[str, Any]:
    _, queries, dim = read("latents")
    depth = read.count(r"layers\.(\d+)\.")
    if depth != RESAMPLER_DEPTH:
        raise read.fail(
            f"layers.{depth - 1}", f"{depth} resampler layers; diffusers' loader reads {RESAMPLER_DEPTH}"
        )
    inner = read("layers.0.0.to_q.weight")[0]
    if inner % RESAMPLER_HEAD_DIM or inner != dim:
        raise read.fail(
            "layers.0.0.to_q.weight", f"{inner}-wide queries are not {dim}-wide heads of 64 channels"
        )
    return {
        "_class_name": "IPAdapterPlusImageProjection",
        "embed_dims": read("proj_in.weight")[1],
        "output_dims": read("proj_out.weight")[0],
        "hidden_dims": dim,
        "depth": depth,
        "dim_head": RESAMPLER_HEAD_DIM,
        "heads": inner // RESAMPLER_HEAD_DIM,
        "num_queries": queries,
        "ffn_ratio": read("layers.0.1.1.weight")[0] // dim,
    }


def tokens_of(projection: Mapping[str, Any]) -> int:
    """Image tokens per image that diffusers' loader gives the processors for a projection."""
    name = projection["_class_name"]
    if name == "IPAdapterPlusImageProjection":
        return projection["num_queries"]
    return FULL_FACE_TOKENS if name == "IPAdapterFullImageProjection" else BASE_TOKENS


def attentions_from_shapes(shapes: Mapping[str, Shape]) -> Attentions:
    """N -> (channels, width) of every `ip_adapter.N.to_{k,v}_ip.weight` pair.

    Raises:
        ConfigError: FaceID LoRA weights, another key under `ip_adapter.`, or a pair that disagrees.
    """
    found: dict[int, dict[str, Shape]] = {}
    for key, shape in shapes.items():
        if not key.startswith(IP_ADAPTER):
            continue
        match = _KEY_VALUE.fullmatch(key)
        if match is None:
            reason = FACEID_REASON if "_lora." in key else "not an IP-Adapter key/value projection"
            raise ConfigError(reason, tensor=key)
        found.setdefault(int(match[1]), {})[match[2]] = tuple(shape)
    return {index: _pair(index, pair) for index, pair in sorted(found.items())}


def _pair(index: int, pair: Mapping[str, Shape]) -> tuple[int, int]:
    key = f"{IP_ADAPTER}{index}.to_k_ip.weight"
    if set(pair) != {"k", "v"} or pair["k"] != pair["v"] or len(pair["k"]) != 2:
        raise ConfigError(
            "the key and value projections of this attention disagree or one is missing", tensor=key
        )
    return pair["k"][0], pair["k"][1]


def expected_attentions(unet: Mapping[str, Any]) -> Attentions:
    """The `ip_adapter.N` an IP-Adapter for a UNet (diffusers config) holds: N -> (channels, width)."""
    width = unet["cross_attention_dim"]
    return {
        2 * i + 1: (channels, width) for i, (_name, channels) in enumerate(cross_attention_processors(unet))
    }


def describe_attentions(attentions: Attentions) -> str:
    """In words, for messages."""
    if not attentions:
        return "no cross-attention"
    channels = [c for c, _ in attentions.values()]
    widths = sorted({w for _, w in attentions.values()})
    width = widths[0] if len(widths) == 1 else widths
    span = f"{min(channels)}" if min(channels) == max(channels) else f"{min(channels)}-{max(channels)}"
    return f"{len(attentions)} cross-attentions ({span} channels) reading {width}-wide embeddings"


# -- the layout ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _expected(unet_json: str) -> tuple[tuple[int, tuple[int, int]], ...]:
    return tuple(expected_attentions(json.loads(unet_json)).items())


def _matching_unet(attentions: Attentions, unets: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for unet in unets:
        if dict(_expected(json.dumps(dict(unet), sort_keys=True))) == attentions:
            return unet
    return None


KnownBases = Sequence[tuple[str, Mapping[str, Any]]]  # (title, diffusers UNet config), to name a file's base


def configs_from_shapes(
    unets: Sequence[Mapping[str, Any]], base: str, known: KnownBases = ()
) -> Callable[[Mapping[str, Shape]], dict[str, dict[str, Any]]]:
    """The upstream config of an original file, for the first of `unets` its attentions fit.

    `base` names those UNets in messages ("SD 1.5"); a file for another UNet is refused naming both
    (the file's base by the first of `known` it fits).
    """

    def configs(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Any]]:
        projection = projection_from_shapes(shapes)
        attentions = attentions_from_shapes(shapes)
        unet = _matching_unet(attentions, unets)
        if unet is None:
            _check_not_truncated(attentions, unets)
            raise _wrong_base(attentions, unets[0], base, known)
        return {
            SUBFOLDER: {
                "unet": dict(unet),
                "image_projection": projection,
                "num_tokens": tokens_of(projection),
            }
        }

    return configs


def _wrong_base(attentions: Attentions, unet: Mapping[str, Any], base: str, known: KnownBases) -> ConfigError:
    expected = describe_attentions(dict(_expected(json.dumps(dict(unet), sort_keys=True))))
    fits = next((title for title, other in known if _matching_unet(attentions, [other]) is not None), None)
    what = f"an IP-Adapter for {fits}" if fits else "an IP-Adapter for no base zoo declares"
    return ConfigError(
        f"this is {what}, whose UNet has {describe_attentions(attentions)}; {base}'s UNet has {expected}",
        tensor=f"{IP_ADAPTER}1.to_k_ip.weight",
        hint="convert it for the base it was made for",
    )


def _check_not_truncated(attentions: Attentions, unets: Sequence[Mapping[str, Any]]) -> None:
    """A file whose attentions are some of a UNet's, shaped as its, lacks the others: say so."""
    for unet in unets:
        expected = dict(_expected(json.dumps(dict(unet), sort_keys=True)))
        if attentions.items() < expected.items():
            missing = sorted(set(expected) - set(attentions))
            raise CoverageError(
                f"{len(missing)} cross-attention(s) of the UNet missing, e.g. {IP_ADAPTER}{missing[0]}.to_k_ip.weight",
                tensor=f"{IP_ADAPTER}{missing[0]}.to_k_ip.weight",
                hint="the file is truncated",
            )


def original_layout(
    unets: Sequence[Mapping[str, Any]], base: str, known: KnownBases = ()
) -> SingleFileLayout:
    """Where an IP-Adapter for one of `unets` sits in an original file (all of it: both prefixes)."""
    configs = configs_from_shapes(unets, base, known)
    return SingleFileLayout(prefixes=PREFIXES, to_upstream=to_upstream, upstream_configs=configs)


# -- original -> diffusers: diffusers' loader, recorded --------------------------------------------


def to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
    """The file's tensors under the names diffusers' loader gives them in a UNet (recorded on meta)."""
    state = {
        "image_proj": {
            key.removeprefix(IMAGE_PROJ): t for key, t in tensors.items() if key.startswith(IMAGE_PROJ)
        },
        "ip_adapter": {
            key.removeprefix(IP_ADAPTER): t for key, t in tensors.items() if key.startswith(IP_ADAPTER)
        },
    }
    with torch.device("meta"), _quiet_diffusers():
        unet = diffusers_unet(configs[SUBFOLDER]["unet"])
        with _loads_recorded() as given:
            try:
                unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
            except RuntimeError as error:  # load_state_dict's missing keys and size mismatches
                raise ConfigError(f"diffusers' IP-Adapter loader refuses this file: {error}") from None
    return {
        f"{name}.{local}": given[module, local]
        for name, module in unet.named_modules()
        for local, _ in module.named_parameters(recurse=False)
        if (module, local) in given
    }


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' warnings while its loader runs on meta (its dtype advice means nothing there)."""
    from diffusers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(previous)


@contextmanager
def _loads_recorded() -> Iterator[dict[tuple[nn.Module, str], Any]]:
    """What `load_state_dict` gives each module built in the block, by (module, parameter name).

    diffusers' loader builds the projection and the processors and loads the state dicts it made from the
    file into them; the tensors it passes are our recorded ones, so keeping them keeps their recipes.
    """
    given: dict[tuple[nn.Module, str], Any] = {}
    hooks: dict[nn.Module, Any] = {}

    def record(module: nn.Module, state: Mapping[str, Any], prefix: str, *_: Any) -> None:
        for local in module._parameters:
            if prefix + local in state:
                given[module, local] = state[prefix + local]

    def watch(module: nn.Module, _name: str, _parameter: Any) -> None:
        if module not in hooks:
            hooks[module] = module.register_load_state_dict_pre_hook(record)

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(watch)
    try:
        yield given
    finally:
        handle.remove()
        for hook in hooks.values():
            hook.remove()


__all__ = [
    "FACEID_REASON",
    "IMAGE_PROJ",
    "IP_ADAPTER",
    "PREFIXES",
    "attentions_from_shapes",
    "configs_from_shapes",
    "describe_attentions",
    "expected_attentions",
    "original_layout",
    "projection_from_shapes",
    "to_upstream",
    "tokens_of",
]
