"""Which special tokens a CLIP tokenizer folder declares, and whether each is matched in raw or normalized text.

Special tokens are cut out of the text before byte-pair encoding, each giving its own id. The rules are
those of transformers 5.24's `from_pretrained` with the `tokenizers` library underneath:

- with an `added_tokens_decoder` in `tokenizer_config.json`, its entries are the listed tokens and
  `special_tokens_map.json` is not read;
- without one, `special_tokens_map.json` overrides the config's named tokens, and `added_tokens.json`,
  if any, lists the tokens (those not named are matched in normalized text);
- a named token (`bos_token`, `pad_token`, ...) that is also listed takes the listed entry;
- a token is matched in normalized text when its entry says `normalized: true`. A plain string says
  false; an object that does not say takes `not special` when the token is added, and transformers adds
  every named token as a special one, last (so the last named token with a given text wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, FormatError

# transformers' named special tokens, in the order it adds them (a later one's flags win).
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_EXTRA_TOKEN_LISTS = ("additional_special_tokens", "extra_special_tokens")


@dataclass(frozen=True)
class SpecialToken:
    """A token cut out of the text before byte-pair encoding (transformers' added tokens).

    Attributes:
        content: Its text, also its key in vocab.json.
        normalized: Matched in normalized text (`<|STARTOFTEXT|>` matches too) rather than in raw text.
    """

    content: str
    normalized: bool


@dataclass(frozen=True)
class JsonFile:
    """A JSON object read from a folder ({} for an optional file that is absent).

    Attributes:
        path: Where it was read, for errors.
        data: Its content.
    """

    path: Path
    data: Mapping[str, Any]


@dataclass(frozen=True)
class SpecialTokens:
    """A folder's special tokens.

    Attributes:
        named: Key (`bos_token`, `pad_token`, ...) -> token.
        all: Every special token, named or only listed, once each.
    """

    named: Mapping[str, SpecialToken]
    all: tuple[SpecialToken, ...]


@dataclass(frozen=True)
class _Declared:
    """A special token as a file declares it: `normalized` is None where the file does not say."""

    content: str
    normalized: bool | None
    special: bool

    def resolve(self, *, named: bool) -> SpecialToken:
        if self.normalized is not None:
            return SpecialToken(self.content, self.normalized)
        # tokenizers fills an unsaid flag with `not special` when the token is added.
        return SpecialToken(self.content, normalized=not (named or self.special))


def special_tokens(config: JsonFile, special_map: JsonFile, added: JsonFile) -> SpecialTokens:
    """Resolve the special tokens of `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`."""
    _check_supported(config)
    declared = _named_tokens(config, special_map)
    listed = _listed_tokens(config, added, {token.content for token in declared.values()})
    named = {key: listed.get(token.content, token).resolve(named=True) for key, token in declared.items()}
    # Named tokens override listed ones, and a later named token an earlier one with the same text.
    tokens = {content: token.resolve(named=False) for content, token in listed.items()}
    tokens |= {named[key].content: named[key] for key in NAMED_TOKENS if key in named}
    return SpecialTokens(named, tuple(tokens.values()))


def _check_supported(config: JsonFile) -> None:
    for key in _EXTRA_TOKEN_LISTS:
        if config.data.get(key):
            raise ConfigError(
                f"{key} is not supported: no Stable Diffusion tokenizer has any", file=config.path
            )
    others = [key for key, value in config.data.items() if _is_other_token(key, value)]
    if others:
        raise ConfigError(
            f"model-specific special token(s) not supported: {', '.join(others)}", file=config.path
        )


def _is_other_token(key: str, value: object) -> bool:
    return key.endswith("_token") and key not in NAMED_TOKENS and isinstance(value, str | dict)


def _named_tokens(config: JsonFile, special_map: JsonFile) -> dict[str, _Declared]:
    """The named special tokens as declared: the config's, overridden by the legacy map's."""
    named = {key: _declared(config.data[key], config.path) for key in NAMED_TOKENS if config.data.get(key)}
    if "added_tokens_decoder" in config.data:
        return named
    overrides = special_map.data
    return named | {
        key: _declared(overrides[key], special_map.path) for key in NAMED_TOKENS if overrides.get(key)
    }


def _listed_tokens(config: JsonFile, added: JsonFile, named: set[str]) -> dict[str, _Declared]:
    """The tokens a folder lists: `added_tokens_decoder`, else the legacy `added_tokens.json`."""
    decoder = config.data.get("added_tokens_decoder")
    if decoder is None:
        return {content: _Declared(content, content not in named, content in named) for content in added.data}
    if not isinstance(decoder, dict):
        raise FormatError("added_tokens_decoder is not an object", file=config.path)
    tokens = [_declared(value, config.path) for value in decoder.values()]
    return {token.content: token for token in tokens}


def _declared(value: object, path: Path) -> _Declared:
    """A token from a plain string (matched raw) or an AddedToken object."""
    if isinstance(value, str) and value:
        return _Declared(value, normalized=False, special=True)
    if not isinstance(value, dict) or not isinstance(value.get("content"), str) or not value["content"]:
        raise FormatError(
            f"a special token is neither a non-empty string nor an object with one: {value!r}", file=path
        )
    if value.get("single_word"):
        raise ConfigError(f"single_word special tokens are not supported ({value['content']!r})", file=path)
    # lstrip / rstrip only move spaces into the token, and CLIP's split drops spaces: no effect on ids.
    normalized = value.get("normalized")
    return _Declared(
        value["content"],
        normalized if normalized is None else normalized is True,
        value.get("special") is True,
    )


__all__ = ["NAMED_TOKENS", "JsonFile", "SpecialToken", "SpecialTokens", "special_tokens"]
