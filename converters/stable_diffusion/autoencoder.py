"""The latent diffusion autoencoder: our config from diffusers' `AutoencoderKL` config, tracing inputs,
and the key layouts of the files that hold its weights.

Three layouts of VAE weights exist on the Hub, all for the same tensors:
- current diffusers names (`encoder.mid_block.attentions.0.to_q.weight`);
- deprecated diffusers names, in files saved before diffusers renamed its attention blocks
  (`...attentions.0.query.weight`, `key`, `value`, `proj_attn`; e.g. `stabilityai/sd-vae-ft-mse`);
- the original LDM layout of single-file checkpoints (`first_stage_model.encoder.down.0.block.1.norm1`,
  `mid.attn_1.q` stored as a 1×1 convolution, decoder levels numbered from the lowest resolution).
`normalize_vae_keys` maps the last two onto the first, which is what key tracing against a diffusers
model produces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from zoo.errors import ConfigError, FormatError
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig, LatentDiffusionAutoencoder

Shape = tuple[int, ...]

# diffusers 0.42 `AutoencoderKL.__init__` defaults: what a config.json means by leaving a field out.
UPSTREAM_DEFAULTS: Mapping[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",),
    "up_block_types": ("UpDecoderBlock2D",),
    "block_out_channels": (64,),
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
    "scaling_factor": 0.18215,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
    "force_upcast": True,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}

# diffusers hard-codes this epsilon for every group norm of the VAE.
UPSTREAM_EPS = 1e-6


def _fail(field: str, value: object, why: str) -> ConfigError:
    return ConfigError(
        f"AutoencoderKL config field {field}={value!r}: {why}",
        hint="this VAE variant is not supported by the latent diffusion autoencoder conversion",
    )


def _check_block_types(config: Mapping[str, Any], field: str, expected: str, levels: int) -> None:
    types = list(config[field])
    if any(kind != expected for kind in types):
        raise _fail(field, types, f"only {expected} blocks are supported")
    if len(types) != levels:
        raise _fail(field, types, f"{len(types)} blocks for {levels} block_out_channels")


def _check_supported(config: Mapping[str, Any]) -> None:
    class_name = config.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise _fail("_class_name", class_name, "only the KL autoencoder (AutoencoderKL) is supported")
    if config["act_fn"] != "silu":
        raise _fail("act_fn", config["act_fn"], "only silu is supported")
    levels = len(config["block_out_channels"])
    _check_block_types(config, "down_block_types", "DownEncoderBlock2D", levels)
    _check_block_types(config, "up_block_types", "UpDecoderBlock2D", levels)
    groups, channels = config["norm_num_groups"], list(config["block_out_channels"])
    if not isinstance(groups, int) or groups <= 0 or any(width % groups for width in channels):
        raise _fail("norm_num_groups", groups, f"does not divide every block_out_channels {channels}")
    if (config["latents_mean"] is None) != (config["latents_std"] is None):
        raise _fail("latents_mean", config["latents_mean"], "latents_mean and latents_std come together")


def derive_autoencoder_config(upstream: Mapping[str, Any]) -> AutoencoderConfig:
    """Our config from a diffusers `AutoencoderKL` config (the content of its `config.json`).

    Missing fields take diffusers' defaults (`UPSTREAM_DEFAULTS`); fields diffusers does not know are
    ignored, as diffusers ignores them; `sample_size` only sizes diffusers' tiles and is dropped.

    Raises:
        ConfigError: A field asks for a variant this model does not build (another autoencoder class,
            block type or activation, inconsistent sizes or latent statistics); the message
            names the field and its value.
    """
    config = {**UPSTREAM_DEFAULTS, **upstream}
    _check_supported(config)
    try:
        return AutoencoderConfig(
            in_channels=int(config["in_channels"]),
            out_channels=int(config["out_channels"]),
            block_channels=tuple(int(channels) for channels in config["block_out_channels"]),
            layers_per_block=int(config["layers_per_block"]),
            latent_channels=int(config["latent_channels"]),
            norm_groups=int(config["norm_num_groups"]),
            eps=UPSTREAM_EPS,
            scaling_factor=float(config["scaling_factor"]),
            shift_factor=None if config["shift_factor"] is None else float(config["shift_factor"]),
            latents_mean=_statistics(config["latents_mean"]),
            latents_std=_statistics(config["latents_std"]),
            force_upcast=bool(config["force_upcast"]),
            use_quant_conv=bool(config["use_quant_conv"]),
            use_post_quant_conv=bool(config["use_post_quant_conv"]),
            mid_block_attention=bool(config["mid_block_add_attention"]),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"AutoencoderKL config is inconsistent: {error}") from error


def _statistics(values: Any) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(value) for value in values)


def upstream_autoencoder_config(config: AutoencoderConfig) -> dict[str, Any]:
    """The diffusers `AutoencoderKL` keyword arguments that build the same model (for synthetic sources).

    Raises:
        ConfigError: `config.eps` differs from the one diffusers hard-codes.
    """
    if config.eps != UPSTREAM_EPS:
        raise ConfigError(f"eps={config.eps}: diffusers' AutoencoderKL always uses {UPSTREAM_EPS}")
    levels = len(config.block_channels)
    return {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": list(config.block_channels),
        "layers_per_block": config.layers_per_block,
        "act_fn": "silu",
        "latent_channels": config.latent_channels,
        "norm_num_groups": config.norm_groups,
        "scaling_factor": config.scaling_factor,
        "shift_factor": config.shift_factor,
        "latents_mean": None if config.latents_mean is None else list(config.latents_mean),
        "latents_std": None if config.latents_std is None else list(config.latents_std),
        "force_upcast": config.force_upcast,
        "use_quant_conv": config.use_quant_conv,
        "use_post_quant_conv": config.use_post_quant_conv,
        "mid_block_add_attention": config.mid_block_attention,
    }


# -- tracing ----------------------------------------------------------------------------------------


def autoencoder_example_inputs(
    config: AutoencoderConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """One image for tracing and parity, the same for upstream and ours: (1, in_channels, S, S).

    S is 8 latents per side; values are seeded uniform in [-1, 1) (meaningless, and free, on `meta`).
    """
    side = 8 * config.downscale_factor
    shape = (1, config.in_channels, side, side)
    if torch.device(device or "cpu").type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(shape, generator=generator) * 2 - 1
    return images.to(device=device, dtype=dtype)


def run_upstream_autoencoder(images: torch.Tensor) -> Callable[[nn.Module], object]:
    """Runs a diffusers `AutoencoderKL` as the tracer must see it: encode, then decode the mean."""

    def run(vae: nn.Module) -> object:
        mean = vae.encode(images).latent_dist.mean  # pyright: ignore[reportCallIssue]
        return vae.decode(mean).sample  # pyright: ignore[reportCallIssue]

    return run


def run_autoencoder(images: torch.Tensor) -> Callable[[nn.Module], object]:
    """Runs our `LatentDiffusionAutoencoder` in the same order: encode, then decode."""

    def run(model: nn.Module) -> object:
        if not isinstance(model, LatentDiffusionAutoencoder):
            raise TypeError(f"expected a LatentDiffusionAutoencoder, got {type(model).__name__}")
        return model.decode(model.encode(images))

    return run


# -- key layouts --------------------------------------------------------------------------------------


class NormalizedKey(NamedTuple):
    """Where a file's tensor goes in a current diffusers `AutoencoderKL`.

    Attributes:
        key: The current diffusers state-dict key.
        shape: The shape diffusers gives it (differs from the file's for 1×1-conv attention weights).
    """

    key: str
    shape: Shape


_RESNET = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
_LDM_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LDM_TOP = {
    "encoder.norm_out": "encoder.conv_norm_out",
    "decoder.norm_out": "decoder.conv_norm_out",
}

_LDM_DOWN = re.compile(r"encoder\.down\.(\d+)\.(block\.(\d+)\.(\w+)|downsample\.conv)\.(weight|bias)")
_LDM_UP = re.compile(r"decoder\.up\.(\d+)\.(block\.(\d+)\.(\w+)|upsample\.conv)\.(weight|bias)")
_LDM_MID = re.compile(r"(encoder|decoder)\.mid\.(block_(\d+)\.(\w+)|attn_1\.(\w+))\.(weight|bias)")
_LDM_TOP_RE = re.compile(r"(encoder\.norm_out|decoder\.norm_out)\.(weight|bias)")
_DEPRECATED = re.compile(
    r"((?:encoder|decoder)\.mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)"
)
_ATTENTION_WEIGHT = re.compile(
    r"(?:encoder|decoder)\.mid_block\.attentions\.\d+\.(?:to_q|to_k|to_v|to_out\.0)\.weight"
)
_LDM_UP_INDEX = re.compile(r"decoder\.up\.(\d+)\.")


def _resnet(prefix: str, name: str, parameter: str) -> str | None:
    return f"{prefix}.{_RESNET[name]}.{parameter}" if name in _RESNET else None


def _ldm_down(match: re.Match[str]) -> str | None:
    level, block, name, parameter = match[1], match[3], match[4], match[5]
    if block is None:
        return f"encoder.down_blocks.{level}.downsamplers.0.conv.{parameter}"
    return _resnet(f"encoder.down_blocks.{level}.resnets.{block}", name, parameter)


def _ldm_up(match: re.Match[str], up_levels: int) -> str | None:
    level = up_levels - 1 - int(match[1])  # LDM numbers decoder levels from the lowest resolution
    block, name, parameter = match[3], match[4], match[5]
    if block is None:
        return f"decoder.up_blocks.{level}.upsamplers.0.conv.{parameter}"
    return _resnet(f"decoder.up_blocks.{level}.resnets.{block}", name, parameter)


def _ldm_mid(match: re.Match[str]) -> str | None:
    half, resnet, name, attention, parameter = match[1], match[3], match[4], match[5], match[6]
    if resnet is not None:
        return _resnet(f"{half}.mid_block.resnets.{int(resnet) - 1}", name, parameter)
    if attention in _LDM_ATTENTION:
        return f"{half}.mid_block.attentions.0.{_LDM_ATTENTION[attention]}.{parameter}"
    return None


def _from_ldm(key: str, up_levels: int) -> str:
    """The diffusers name of an LDM-layout key (the key itself if it is not one)."""
    if match := _LDM_DOWN.fullmatch(key):
        return _ldm_down(match) or key
    if match := _LDM_UP.fullmatch(key):
        return _ldm_up(match, up_levels) or key
    if match := _LDM_MID.fullmatch(key):
        return _ldm_mid(match) or key
    if match := _LDM_TOP_RE.fullmatch(key):
        return f"{_LDM_TOP[match[1]]}.{match[2]}"
    return key


def _from_deprecated(key: str) -> str:
    """The current name of a deprecated diffusers attention key (the key itself if it is not one)."""
    if match := _DEPRECATED.fullmatch(key):
        return f"{match[1]}.{_DEPRECATED_ATTENTION[match[2]]}.{match[3]}"
    return key


def _diffusers_shape(key: str, shape: Shape) -> Shape:
    """Attention projections are Linear in diffusers; single-file checkpoints store 1×1 convs."""
    if _ATTENTION_WEIGHT.fullmatch(key) and len(shape) > 2 and all(size == 1 for size in shape[2:]):
        return shape[:2]
    return shape


def normalize_vae_keys(
    keys_and_shapes: Mapping[str, Sequence[int]], prefix: str = ""
) -> dict[str, NormalizedKey]:
    """Map a VAE file's keys (any of the three layouts) onto current diffusers `AutoencoderKL` keys.

    Args:
        keys_and_shapes: The file's tensor names and shapes (a safetensors header is enough).
        prefix: Only keys starting with it are VAE keys, and it is stripped (`first_stage_model.` in
            single-file SD checkpoints, `vae.` in some); other keys are left out of the result.

    Returns:
        File key → current diffusers key and shape. Keys already current, and keys no rule knows, map
        to themselves, so comparing the result with the model's state dict shows anything unexpected.

    Raises:
        FormatError: Two file keys land on the same diffusers key (e.g. both `query` and `to_q`).

    Example:
        >>> normalize_vae_keys({"encoder.mid_block.attentions.0.query.weight": (512, 512, 1, 1)})
        {'encoder.mid_block.attentions.0.query.weight': NormalizedKey(key='encoder.mid_block.attentions.0.to_q.weight', shape=(512, 512))}
    """
    keys = {key[len(prefix) :]: key for key in keys_and_shapes if key.startswith(prefix)}
    up_levels = 1 + max((int(m[1]) for key in keys if (m := _LDM_UP_INDEX.match(key))), default=-1)
    result: dict[str, NormalizedKey] = {}
    owners: dict[str, str] = {}
    for key, file_key in keys.items():
        name = _from_deprecated(_from_ldm(key, up_levels))
        if name in owners:
            raise FormatError(
                f"{owners[name]!r} and {file_key!r} are both the VAE tensor {name!r}", tensor=file_key
            )
        owners[name] = file_key
        result[file_key] = NormalizedKey(name, _diffusers_shape(name, tuple(keys_and_shapes[file_key])))
    return result


def vae_tensor_getter(
    get: Callable[[str], torch.Tensor], normalized: Mapping[str, NormalizedKey]
) -> Callable[[str], torch.Tensor]:
    """A getter by current diffusers key over a file's getter, renaming and reshaping as needed.

    Feed it to `KeyMap.apply` with a key map traced against a diffusers `AutoencoderKL`.

    Args:
        get: Returns a tensor of the file by the file's key (e.g. a safetensors `get_tensor`).
        normalized: What `normalize_vae_keys` returned for that file.
    """
    by_name = {entry.key: (file_key, entry.shape) for file_key, entry in normalized.items()}

    def get_normalized(key: str) -> torch.Tensor:
        if key not in by_name:
            raise FormatError("the VAE file has no tensor for this diffusers key", tensor=key)
        file_key, shape = by_name[key]
        tensor = get(file_key)
        return tensor if tuple(tensor.shape) == shape else tensor.reshape(shape)

    return get_normalized


__all__ = [
    "UPSTREAM_DEFAULTS",
    "UPSTREAM_EPS",
    "NormalizedKey",
    "autoencoder_example_inputs",
    "derive_autoencoder_config",
    "normalize_vae_keys",
    "run_autoencoder",
    "run_upstream_autoencoder",
    "upstream_autoencoder_config",
    "vae_tensor_getter",
]
