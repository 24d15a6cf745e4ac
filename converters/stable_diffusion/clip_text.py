"""CLIP text towers: configs, upstream models, example inputs and checkpoint key layouts.

Covers transformers' `CLIPTextModel` (SD 1.5's text encoder, SDXL's first) and
`CLIPTextModelWithProjection` (SDXL's second), converted onto
`zoo.foundationals.clip.text_encoder.CLIPTextEncoder` and the SD 1.5 / SDXL text conditioning of
`zoo.foundationals.latent_diffusion.text_encoders`.

Tracing needs no overrides for these models: every upstream tensor is held by a module that runs, in
the same order and with the same shapes as ours, and `position_ids` is a non-persistent buffer of the
upstream model. Files are another matter: a file names its tensors either with the `text_model.`
prefix (Hub files, single-file checkpoints, `CLIPTextModelWithProjection`) or without it
(transformers 5's `CLIPTextModel.save_pretrained`), and files saved before transformers 4.31 also hold
`position_ids`. `normalize_clip_keys` maps either layout onto the upstream model's own names, which
are the names a traced key map uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from converters._tracing import Overrides
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.text_encoder import CLIPTextEncoderConfig
from zoo.foundationals.clip.transformer_layer import ACTIVATIONS
from zoo.foundationals.latent_diffusion.text_encoders import SDXLTextEncoderConfig

if TYPE_CHECKING:
    from transformers import CLIPTextConfig

# transformers' legacy configs (before its PR #24773, i.e. every Stable Diffusion text encoder) say
# `eos_token_id: 2`; transformers then pools at the highest token id instead.
LEGACY_EOS_TOKEN_ID = 2
TEXT_MODEL_PREFIX = "text_model."
POSITION_IDS_REASON = (
    "position ids (0..max_position_embeddings-1): saved by transformers < 4.31 as a buffer, "
    "recomputed by every model, holds no weights"
)
SUPPORTED_ACTIVATIONS = ACTIVATIONS  # what our layers implement
ARCHITECTURES = {"CLIPTextModel": False, "CLIPTextModelWithProjection": True}

# Neither conversion needs an ignore, a pair or a transform (see the module docstring).
CLIP_TEXT_OVERRIDES = Overrides()
SDXL_TEXT_OVERRIDES = Overrides()


# -- configs ---------------------------------------------------------------------------------------


def _upstream_defaults() -> dict[str, Any]:
    """What transformers' `CLIPTextConfig` assumes for a field a config.json leaves out."""
    from transformers import CLIPTextConfig

    defaults = CLIPTextConfig()
    return {
        name: getattr(defaults, name)
        for name in (
            "vocab_size",
            "max_position_embeddings",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "layer_norm_eps",
            "projection_dim",
            "eos_token_id",
        )
    }


def _with_projection(upstream: Mapping[str, Any], with_projection: bool | None) -> bool:
    """Whether the upstream class has a text projection: given, or read from `architectures`."""
    if with_projection is not None:
        return with_projection
    architectures = upstream.get("architectures") or []
    known = [ARCHITECTURES[name] for name in architectures if name in ARCHITECTURES]
    if len(known) != 1:
        raise ConfigError(
            f"architectures={architectures!r}: expected one of {sorted(ARCHITECTURES)}",
            hint="pass with_projection explicitly",
        )
    return known[0]


def derive_clip_text_config(
    upstream: Mapping[str, Any], *, with_projection: bool | None = None
) -> CLIPTextEncoderConfig:
    """Our config from a transformers CLIP text config (`config.json` content).

    Fields only used for training or initialisation (dropouts, initializer ranges) and token ids the
    text model does not read (bos, pad) do not change the architecture and are not read.

    Args:
        upstream: The `config.json` of a `CLIPTextModel` or `CLIPTextModelWithProjection`.
        with_projection: Whether the model has a text projection; None reads `architectures`.

    Raises:
        ConfigError: A field names a variant this conversion does not support.
    """
    model_type = upstream.get("model_type", "clip_text_model")
    if model_type != "clip_text_model":
        hint = "pass its text_config" if model_type == "clip" else None
        raise ConfigError(f"model_type={model_type!r}: expected 'clip_text_model'", hint=hint)
    fields = {**_upstream_defaults(), **upstream}
    if fields["hidden_act"] not in SUPPORTED_ACTIVATIONS:
        raise ConfigError(f"hidden_act={fields['hidden_act']!r}: expected one of {SUPPORTED_ACTIVATIONS}")
    if fields["hidden_size"] % fields["num_attention_heads"]:
        raise ConfigError(
            f"hidden_size={fields['hidden_size']} is not a multiple of "
            f"num_attention_heads={fields['num_attention_heads']}"
        )
    eos_token_id = fields["eos_token_id"]
    return CLIPTextEncoderConfig(
        vocab_size=fields["vocab_size"],
        max_position_embeddings=fields["max_position_embeddings"],
        hidden_size=fields["hidden_size"],
        num_layers=fields["num_hidden_layers"],
        num_heads=fields["num_attention_heads"],
        intermediate_size=fields["intermediate_size"],
        activation=fields["hidden_act"],
        layer_norm_eps=fields["layer_norm_eps"],
        projection_dim=fields["projection_dim"] if _with_projection(upstream, with_projection) else None,
        eos_token_id=None if eos_token_id == LEGACY_EOS_TOKEN_ID else eos_token_id,
    )


def derive_sdxl_text_encoder_config(
    text_encoder: Mapping[str, Any], text_encoder_2: Mapping[str, Any]
) -> SDXLTextEncoderConfig:
    """Our SDXL text conditioning config from the two towers' `config.json` contents.

    Raises:
        ConfigError: A tower is unsupported, the second has no projection, or the towers read
            different sequence lengths.
    """
    first = derive_clip_text_config(text_encoder)
    second = derive_clip_text_config(text_encoder_2)
    if second.projection_dim is None:
        raise ConfigError(
            f"text_encoder_2 architectures={text_encoder_2.get('architectures')!r}: SDXL needs "
            "CLIPTextModelWithProjection (its pooled, projected output conditions the UNet)"
        )
    if first.max_position_embeddings != second.max_position_embeddings:
        raise ConfigError(
            f"max_position_embeddings differs between the towers: {first.max_position_embeddings} and "
            f"{second.max_position_embeddings} (their hidden states are concatenated position by position)"
        )
    return SDXLTextEncoderConfig(first, second)


def upstream_clip_text_config(config: CLIPTextEncoderConfig) -> dict[str, Any]:
    """The transformers `config.json` content of a tower: the inverse of `derive_clip_text_config`."""
    with_projection = config.projection_dim is not None
    return {
        "architectures": ["CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.activation,
        "layer_norm_eps": config.layer_norm_eps,
        "projection_dim": config.projection_dim if with_projection else config.hidden_size,
        "bos_token_id": 0,
        "pad_token_id": 1,
        "eos_token_id": LEGACY_EOS_TOKEN_ID if config.eos_token_id is None else config.eos_token_id,
        "attention_dropout": 0.0,
        "dropout": 0.0,
    }


# -- upstream models -------------------------------------------------------------------------------


def _transformers_config(config: CLIPTextEncoderConfig) -> CLIPTextConfig:
    from transformers import CLIPTextConfig

    fields = {
        key: value for key, value in upstream_clip_text_config(config).items() if key != "architectures"
    }
    return CLIPTextConfig(**fields)


def upstream_clip_text_model(
    config: CLIPTextEncoderConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """transformers' model for our config (randomly initialised; free on `meta`), in eval mode."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    model_class = CLIPTextModel if config.projection_dim is None else CLIPTextModelWithProjection
    with torch.device(device or "cpu"):
        # Seen as a plain module: transformers' decorated `to` confuses type checkers.
        model = cast(nn.Module, model_class(_transformers_config(config)))
    if dtype is not None:
        model.to(dtype)
    return model.eval()


class SDXLTextEncodersReference(nn.Module):
    """diffusers' SDXL prompt encoding (`encode_prompt`, `clip_skip=None`) over the two upstream towers.

    Returns the concatenated penultimate hidden states (`hidden_states[-2]`) of both towers and the
    second tower's `text_embeds`. Its state-dict keys are the pipeline's component names followed by
    each tower's own names (`text_encoder.embeddings...`, `text_encoder_2.text_model.embeddings...`).
    """

    def __init__(self, text_encoder: nn.Module, text_encoder_2: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2

    def forward(
        self, input_ids: torch.Tensor, input_ids_2: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.text_encoder(input_ids, output_hidden_states=True)
        second = self.text_encoder_2(
            input_ids if input_ids_2 is None else input_ids_2, output_hidden_states=True
        )
        context = torch.concat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return context, second.text_embeds


def upstream_sdxl_text_encoders(
    config: SDXLTextEncoderConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> SDXLTextEncodersReference:
    """Both upstream towers for our config, combined as diffusers' SDXL pipeline uses them."""
    return SDXLTextEncodersReference(
        upstream_clip_text_model(config.text_encoder, device, dtype),
        upstream_clip_text_model(config.text_encoder_2, device, dtype),
    ).eval()


# -- example inputs --------------------------------------------------------------------------------


def example_input_ids(
    config: CLIPTextEncoderConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    batch_size: int = 2,
    pad_token_id: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Token ids (B, max_position_embeddings), the positional input of both upstream and ours.

    Off `meta`, each row is a start token (the second-highest id), random tokens, an end token at a
    different position per row, then padding (the end token, as CLIP-L's tokenizer pads, unless
    `pad_token_id` is given: SDXL's second tokenizer pads with 0). The end token is `eos_token_id`, or
    the highest id for legacy configs.

    Args:
        config: The tower's config.
        device: Where the ids live (`meta` for tracing: zeros, shapes only).
        dtype: Ignored: token ids are always int64 (accepted to match other example-input functions).
        batch_size: Rows.
        pad_token_id: Padding id; None pads with the end token.
        seed: Seed of the random tokens (the global RNG is not touched).
    """
    del dtype
    shape = (batch_size, config.max_position_embeddings)
    if torch.device(device or "cpu").type == "meta":
        return torch.zeros(shape, dtype=torch.long, device="meta")
    start = config.vocab_size - 2  # as in CLIP's vocab: start of text, then end of text, the highest ids
    end = config.vocab_size - 1 if config.eos_token_id is None else config.eos_token_id
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, start, shape, generator=generator)
    ids[:, 0] = start
    for row in range(batch_size):
        length = 2 + (row * 7 + 5) % (shape[1] - 2)  # start + at least one end token
        ids[row, length - 1] = end
        ids[row, length:] = end if pad_token_id is None else pad_token_id
    return ids.to(device or "cpu")


def sdxl_example_inputs(
    config: SDXLTextEncoderConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    batch_size: int = 2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, input_ids_2): the same prompts as SDXL's two tokenizers give them (padding differs)."""
    first = example_input_ids(config.text_encoder, device, dtype, batch_size=batch_size, seed=seed)
    second = example_input_ids(
        config.text_encoder_2, device, dtype, batch_size=batch_size, pad_token_id=0, seed=seed
    )
    return first, second


# -- checkpoint key layouts ------------------------------------------------------------------------

_TOWER_KEY = re.compile(
    r"embeddings\.(token_embedding|position_embedding)\.weight"
    r"|encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|layer_norm1|layer_norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|final_layer_norm\.(weight|bias)"
)
_POSITION_IDS = "embeddings.position_ids"
_PROJECTION = "text_projection.weight"


@dataclass(frozen=True)
class CLIPFileKeys:
    """How a CLIP text checkpoint's keys name the upstream model's tensors.

    Attributes:
        model_keys: File key → the upstream model's state-dict key.
        ignored: File key → why no model tensor comes from it (`position_ids`).
    """

    model_keys: Mapping[str, str]
    ignored: Mapping[str, str]

    def file_keys(self) -> dict[str, str]:
        """Upstream model key → file key (what a reader needs to fetch a key map's sources)."""
        return {model: file for file, model in self.model_keys.items()}

    def getter(self, get_file_tensor: Callable[[str], torch.Tensor]) -> Callable[[str], torch.Tensor]:
        """Turns a reader by file key into a reader by upstream model key."""
        file_keys = self.file_keys()
        return lambda model_key: get_file_tensor(file_keys[model_key])


def normalize_clip_keys(
    keys: Iterable[str], *, with_projection: bool, file_prefix: str = "", model_prefix: str = ""
) -> CLIPFileKeys:
    """Map a CLIP text checkpoint, in either layout, onto the upstream model's state-dict names.

    `CLIPTextModel` (transformers 5) names its tensors without `text_model.`, while
    `CLIPTextModelWithProjection` keeps it for the tower (not for `text_projection.weight`); files
    name the tower with or without it. Old files also hold `embeddings.position_ids`, ignored here.

    Args:
        keys: The file's tensor names.
        with_projection: Whether the upstream model is `CLIPTextModelWithProjection`.
        file_prefix: Only keys under this prefix are read, with it removed (a single-file checkpoint's
            `cond_stage_model.transformer.`, or `conditioner.embedders.0.transformer.` for SDXL's CLIP-L).
        model_prefix: Prepended to every model key (`text_encoder_2.` for `SDXLTextEncodersReference`).

    Returns:
        The mapping and the ignored keys, each with a reason.

    Raises:
        FormatError: A key is not a CLIP text tower tensor, a projection is found for a model without
            one, or two file keys name the same tensor.
    """
    model_keys: dict[str, str] = {}
    ignored: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key in keys:
        if not key.startswith(file_prefix):
            continue
        bare = key.removeprefix(file_prefix).removeprefix(TEXT_MODEL_PREFIX)
        if bare == _POSITION_IDS:
            ignored[key] = POSITION_IDS_REASON
            continue
        model_key = model_prefix + _model_key(key, bare, with_projection)
        if model_key in seen:
            raise FormatError(f"{key!r} and {seen[model_key]!r} both name {model_key!r}", tensor=key)
        seen[model_key] = key
        model_keys[key] = model_key
    return CLIPFileKeys(model_keys, ignored)


def _model_key(key: str, bare: str, with_projection: bool) -> str:
    """The upstream model's name for a file key whose layout prefix was removed (`bare`)."""
    if bare == _PROJECTION:
        if not with_projection:
            raise FormatError(
                "a text projection, but the model (CLIPTextModel) has none",
                tensor=key,
                hint="convert it as CLIPTextModelWithProjection",
            )
        return _PROJECTION
    if not _TOWER_KEY.fullmatch(bare):
        raise FormatError("not a tensor of a CLIP text tower", tensor=key)
    return TEXT_MODEL_PREFIX + bare if with_projection else bare


__all__ = [
    "CLIP_TEXT_OVERRIDES",
    "POSITION_IDS_REASON",
    "SDXL_TEXT_OVERRIDES",
    "CLIPFileKeys",
    "SDXLTextEncodersReference",
    "derive_clip_text_config",
    "derive_sdxl_text_encoder_config",
    "example_input_ids",
    "normalize_clip_keys",
    "sdxl_example_inputs",
    "upstream_clip_text_config",
    "upstream_clip_text_model",
    "upstream_sdxl_text_encoders",
]
