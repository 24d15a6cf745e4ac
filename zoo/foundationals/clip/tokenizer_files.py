"""Reading a CLIP tokenizer folder as Stable Diffusion repositories hold it.

A folder (`tokenizer/`, SDXL's `tokenizer_2/`) holds `vocab.json` (token -> id), `merges.txt` (a
`#version` header, then one merge `left right` per line, best first), `tokenizer_config.json` (special
tokens, `model_max_length`, `do_lower_case`) and, in folders saved before transformers 4.34,
`special_tokens_map.json`. Which special tokens are matched in raw text and which in normalized text
follows transformers 5.24's `from_pretrained`:

- with an `added_tokens_decoder` in the config, its entries are the added tokens and
  `special_tokens_map.json` is not read;
- without one, `special_tokens_map.json` overrides the config's entries (and `added_tokens.json`, if
  any, lists the added tokens);
- a named token (`bos_token`, `pad_token`, ...) listed among the added tokens takes that entry;
- a token is matched in normalized text when its entry says `normalized: true`. A plain string says
  false; an object that does not say takes `not special`, and transformers adds every named token as a
  special one (last, so the last named token with a given text wins).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.text_rules import byte_alphabet

VOCAB_NAME = "vocab.json"
MERGES_NAME = "merges.txt"
CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_NAME = "special_tokens_map.json"
ADDED_TOKENS_NAME = "added_tokens.json"
MERGES_HEADER = "#version"
END_OF_WORD = "</w>"
# transformers' named special tokens, in the order it adds them (a later one's flags win).
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_EXTRA_TOKEN_LISTS = ("additional_special_tokens", "extra_special_tokens")
_SIDES = ("padding_side", "truncation_side")
_SHOWN = 40  # characters of a bad line shown in an error


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


@dataclass(frozen=True)
class CLIPTokenizerConfig:
    """What a tokenizer folder's JSON says, for SD 1.5 and SDXL: 77, `<|startoftext|>`, `<|endoftext|>`.

    Attributes:
        max_length: Length of every tokenized row, start and end tokens included (`model_max_length`).
        bos_token: Starts every row.
        eos_token: Ends every row's text.
        pad_token: Fills a row after the end token (`<|endoftext|>`, or `!` for SDXL's `tokenizer_2`).
        special_tokens: Tokens cut out of the text before byte-pair encoding.
    """

    max_length: int
    bos_token: str
    eos_token: str
    pad_token: str
    special_tokens: tuple[SpecialToken, ...]


@dataclass(frozen=True)
class TokenizerFiles:
    """A tokenizer folder, read and checked.

    Attributes:
        vocab: Token -> id.
        merges: Symbol pairs to merge, best first.
        config: Special tokens and row length.
    """

    vocab: Mapping[str, int]
    merges: tuple[tuple[str, str], ...]
    config: CLIPTokenizerConfig


def read_tokenizer_folder(folder: str | Path) -> TokenizerFiles:
    """Read and check a tokenizer folder; FormatError naming the file for anything missing or malformed."""
    folder = Path(folder)
    vocab = _read_vocab(folder / VOCAB_NAME)
    merges = _read_merges(folder / MERGES_NAME)
    _check_merges(vocab, merges, folder / VOCAB_NAME)
    return TokenizerFiles(vocab, merges, _read_config(folder, vocab))


def _read_json(path: Path, *, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise FormatError(f"no {path.name} in the tokenizer folder", file=path)
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FormatError(f"{path.name} is not valid JSON: {error}", file=path) from error


def _read_json_object(path: Path, *, required: bool = True) -> dict[str, Any]:
    data = _read_json(path, required=required)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FormatError(f"{path.name} holds a {type(data).__name__}, not an object", file=path)
    return data


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = _read_json_object(path)
    wrong = [token for token, index in vocab.items() if type(index) is not int or index < 0]
    if wrong:
        raise FormatError(
            f"{len(wrong)} token(s) without a non-negative integer id, e.g. {wrong[0]!r}", file=path
        )
    return vocab


def _read_merges(path: Path) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        raise FormatError(f"no {path.name} in the tokenizer folder", file=path)
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines[0].startswith(MERGES_HEADER):
        hint = f"the first line must be the {MERGES_HEADER} header (it is {lines[0][:_SHOWN]!r})"
        raise FormatError(f"{path.name} has no header", file=path, hint=hint)
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return tuple(_merge(line.removesuffix("\r"), number, path) for number, line in enumerate(lines[1:], 2))


def _merge(line: str, number: int, path: Path) -> tuple[str, str]:
    parts = line.split(" ")
    if len(parts) != 2 or not all(parts):
        raise FormatError(
            f"{path.name} line {number} is not two symbols split by a space: {line!r}", file=path
        )
    return parts[0], parts[1]


def _check_merges(vocab: Mapping[str, int], merges: tuple[tuple[str, str], ...], path: Path) -> None:
    """Every byte symbol (alone and ending a word) and every merge result must have an id."""
    symbols = [*byte_alphabet(), *(symbol + END_OF_WORD for symbol in byte_alphabet())]
    missing = [symbol for symbol in symbols if symbol not in vocab]
    if missing:
        hint = "a CLIP vocabulary holds every byte symbol, alone and with </w>"
        raise FormatError(f"{len(missing)} byte symbol(s) missing, e.g. {missing[0]!r}", file=path, hint=hint)
    unknown = [left + right for left, right in merges if left + right not in vocab]
    if unknown:
        raise FormatError(
            f"{len(unknown)} merge result(s) not in {path.name}, e.g. {unknown[0]!r}", file=path
        )


def _read_config(folder: Path, vocab: Mapping[str, int]) -> CLIPTokenizerConfig:
    path = folder / CONFIG_NAME
    config = _read_json_object(path)
    _check_supported(config, path)
    declared = _named_tokens(config, folder)
    listed = _listed_tokens(config, folder, {token.content for token in declared.values()})
    named = {key: listed.get(token.content, token).resolve(named=True) for key, token in declared.items()}
    # Named tokens override listed ones, and a later named token an earlier one with the same text.
    special_tokens = {content: token.resolve(named=False) for content, token in listed.items()}
    special_tokens |= {named[key].content: named[key] for key in NAMED_TOKENS if key in named}
    _check_ids(named, special_tokens, vocab, folder)
    return CLIPTokenizerConfig(
        max_length=_max_length(config, path),
        bos_token=_required(named, "bos_token", path).content,
        eos_token=_required(named, "eos_token", path).content,
        pad_token=_required(named, "pad_token", path).content,
        special_tokens=tuple(special_tokens.values()),
    )


def _check_supported(config: dict[str, Any], path: Path) -> None:
    """Refuse settings that transformers would honour (or ignore) differently from us."""
    if config.get("do_lower_case", True) is not True:
        hint = "transformers' CLIPTokenizer lowercases anyway, and CLIP's vocabulary is lowercase"
        raise ConfigError("do_lower_case must be true for a CLIP tokenizer", file=path, hint=hint)
    for key in _SIDES:
        if config.get(key, "right") != "right":
            raise ConfigError(f"{key} {config[key]!r} is not supported (only 'right')", file=path)
    for key in _EXTRA_TOKEN_LISTS:
        if config.get(key):
            raise ConfigError(f"{key} is not supported: no Stable Diffusion tokenizer has any", file=path)
    others = [key for key, value in config.items() if _is_other_token(key, value)]
    if others:
        raise ConfigError(f"model-specific special token(s) not supported: {', '.join(others)}", file=path)


def _is_other_token(key: str, value: object) -> bool:
    return key.endswith("_token") and key not in NAMED_TOKENS and isinstance(value, str | dict)


def _max_length(config: dict[str, Any], path: Path) -> int:
    length = config.get("model_max_length")
    if type(length) is not int or length < 2:
        raise FormatError(
            f"model_max_length must be an integer >= 2 (room for start and end), got {length!r}", file=path
        )
    return length


def _required(named: dict[str, SpecialToken], key: str, path: Path) -> SpecialToken:
    if key not in named:
        raise FormatError(f"{path.name} names no {key}", file=path)
    return named[key]


def _named_tokens(config: dict[str, Any], folder: Path) -> dict[str, _Declared]:
    """The named special tokens as declared: the config's, overridden by the legacy map's."""
    config_path, map_path = folder / CONFIG_NAME, folder / SPECIAL_TOKENS_NAME
    named = {key: _declared(config[key], config_path) for key in NAMED_TOKENS if config.get(key)}
    if "added_tokens_decoder" in config:
        return named
    overrides = _read_json_object(map_path, required=False)
    return named | {key: _declared(overrides[key], map_path) for key in NAMED_TOKENS if overrides.get(key)}


def _listed_tokens(config: dict[str, Any], folder: Path, named: set[str]) -> dict[str, _Declared]:
    """The added tokens a folder lists: `added_tokens_decoder`, else the legacy `added_tokens.json`."""
    decoder = config.get("added_tokens_decoder")
    if decoder is not None:
        if not isinstance(decoder, dict):
            raise FormatError("added_tokens_decoder is not an object", file=folder / CONFIG_NAME)
        tokens = [_declared(value, folder / CONFIG_NAME) for value in decoder.values()]
        return {token.content: token for token in tokens}
    added = _read_json_object(folder / ADDED_TOKENS_NAME, required=False)
    # transformers matches the listed tokens that are not named ones in normalized text.
    return {content: _Declared(content, content not in named, content in named) for content in added}


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


def _check_ids(
    named: dict[str, SpecialToken], tokens: dict[str, SpecialToken], vocab: Mapping[str, int], folder: Path
) -> None:
    roles = [*named.items(), *(("added token", token) for token in tokens.values())]
    unknown = [(role, token.content) for role, token in roles if token.content not in vocab]
    if unknown:
        role, content = unknown[0]
        hint = "special tokens must be CLIP vocabulary entries: a new one would need a new embedding"
        raise FormatError(f"{role} {content!r} is not in {VOCAB_NAME}", file=folder / VOCAB_NAME, hint=hint)
