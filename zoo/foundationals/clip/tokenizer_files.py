"""Reading a CLIP tokenizer folder as Stable Diffusion repositories hold it.

A folder (`tokenizer/`, SDXL's `tokenizer_2/`) holds `vocab.json` (token -> id), `merges.txt` (a
`#version` header, then one merge `left right` per line, best first), `tokenizer_config.json` (special
tokens, `model_max_length`, `do_lower_case`) and, in folders saved before transformers 4.34,
`special_tokens_map.json`. Folders saved by transformers 5 hold `tokenizer.json` instead of
`vocab.json` and `merges.txt`: the same vocabulary and merges under `model`, and the added tokens with
their flags under `added_tokens`. Which special tokens a folder declares is `special_tokens`' business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.special_tokens import JsonFile, SpecialToken, special_tokens
from zoo.foundationals.clip.text_rules import byte_alphabet

VOCAB_NAME = "vocab.json"
TOKENIZER_JSON_NAME = "tokenizer.json"
MERGES_NAME = "merges.txt"
CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_NAME = "special_tokens_map.json"
ADDED_TOKENS_NAME = "added_tokens.json"
MERGES_HEADER = "#version"
END_OF_WORD = "</w>"
ENDS_PER_ROW = 2  # the start and end tokens around a row's text
_SIDES = ("padding_side", "truncation_side")
_SHOWN = 40  # characters of a bad line shown in an error


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
    if (folder / TOKENIZER_JSON_NAME).is_file() and not (folder / VOCAB_NAME).is_file():
        vocab, merges, added = _read_tokenizer_json(folder / TOKENIZER_JSON_NAME)
        _check_merges(vocab, merges, folder / TOKENIZER_JSON_NAME)
        return TokenizerFiles(vocab, merges, _read_config(folder, vocab, added))
    vocab = _read_vocab(folder / VOCAB_NAME)
    merges = _read_merges(folder / MERGES_NAME)
    _check_merges(vocab, merges, folder / VOCAB_NAME)
    return TokenizerFiles(vocab, merges, _read_config(folder, vocab))


def _read_tokenizer_json(
    path: Path,
) -> tuple[dict[str, int], tuple[tuple[str, str], ...], dict[str, Any]]:
    """(vocab, merges, added tokens by id as `added_tokens_decoder` lists them) of a BPE tokenizer.json."""
    data = _read_json_object(path)
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":  # pyright: ignore[reportUnknownMemberType]
        raise FormatError(f"{path.name} does not hold a BPE model", file=path, hint="a CLIP tokenizer is BPE")
    if model.get("end_of_word_suffix") not in (None, END_OF_WORD):  # pyright: ignore[reportUnknownMemberType]
        raise FormatError(f"{path.name}: words do not end with {END_OF_WORD!r} as CLIP's do", file=path)
    vocab = _checked_vocab(model.get("vocab"), path)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    merges = tuple(
        _json_merge(merge, number, path) for number, merge in enumerate(model.get("merges") or [], 1)
    )  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType, reportUnknownVariableType]
    added = data.get("added_tokens") or []
    if not isinstance(added, list) or not all(isinstance(t, dict) and "id" in t for t in added):  # pyright: ignore[reportUnknownVariableType]
        raise FormatError(f"{path.name}: added_tokens is not a list of tokens with ids", file=path)
    decoder = {str(token["id"]): {k: v for k, v in token.items() if k != "id"} for token in added}  # pyright: ignore[reportUnknownVariableType]
    return vocab, merges, decoder


def _json_merge(merge: object, number: int, path: Path) -> tuple[str, str]:
    """A merge as tokenizer.json writes it: `"left right"` (older) or `["left", "right"]`."""
    if isinstance(merge, str):
        return _merge(merge, number, path)
    if isinstance(merge, list) and len(merge) == 2 and all(isinstance(part, str) and part for part in merge):  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        return merge[0], merge[1]  # pyright: ignore[reportUnknownVariableType]
    raise FormatError(f"{path.name}: merge {number} is not two symbols: {merge!r}", file=path)


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
    return _checked_vocab(_read_json_object(path), path)


def _checked_vocab(vocab: object, path: Path) -> dict[str, int]:
    if not isinstance(vocab, dict):
        raise FormatError(f"{path.name}: the vocabulary is not an object of token -> id", file=path)
    wrong = [token for token, index in vocab.items() if type(index) is not int or index < 0]
    if wrong:
        raise FormatError(
            f"{len(wrong)} token(s) without a non-negative integer id, e.g. {wrong[0]!r}", file=path
        )
    return vocab  # pyright: ignore[reportUnknownVariableType]


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


def _read_config(
    folder: Path, vocab: Mapping[str, int], added_tokens: Mapping[str, Any] | None = None
) -> CLIPTokenizerConfig:
    """`added_tokens`: tokenizer.json's, which stand for an `added_tokens_decoder` the config lacks."""
    data = _read_json_object(folder / CONFIG_NAME)
    if added_tokens and "added_tokens_decoder" not in data:
        data = {**data, "added_tokens_decoder": dict(added_tokens)}
    config = JsonFile(folder / CONFIG_NAME, data)
    _check_supported(config)
    tokens = special_tokens(
        config, _optional_json(folder / SPECIAL_TOKENS_NAME), _optional_json(folder / ADDED_TOKENS_NAME)
    )
    _check_ids(tokens.named, tokens.all, vocab, folder / VOCAB_NAME)
    return CLIPTokenizerConfig(
        max_length=_max_length(config),
        bos_token=_required(tokens.named, "bos_token", config.path).content,
        eos_token=_required(tokens.named, "eos_token", config.path).content,
        pad_token=_required(tokens.named, "pad_token", config.path).content,
        special_tokens=tokens.all,
    )


def _optional_json(path: Path) -> JsonFile:
    return JsonFile(path, _read_json_object(path, required=False))


def _check_supported(config: JsonFile) -> None:
    """Refuse settings that transformers would honour (or ignore) differently from us."""
    if config.data.get("do_lower_case", True) is not True:
        hint = "transformers' CLIPTokenizer lowercases anyway, and CLIP's vocabulary is lowercase"
        raise ConfigError("do_lower_case must be true for a CLIP tokenizer", file=config.path, hint=hint)
    for key in _SIDES:
        if config.data.get(key, "right") != "right":
            raise ConfigError(f"{key} {config.data[key]!r} is not supported (only 'right')", file=config.path)


def _max_length(config: JsonFile) -> int:
    length = config.data.get("model_max_length")
    if type(length) is not int or length < ENDS_PER_ROW:
        message = (
            f"model_max_length must be an integer >= {ENDS_PER_ROW} (room for start and end), got {length!r}"
        )
        raise FormatError(message, file=config.path)
    return length


def _required(named: Mapping[str, SpecialToken], key: str, path: Path) -> SpecialToken:
    if key not in named:
        raise FormatError(f"{path.name} names no {key}", file=path)
    return named[key]


def _check_ids(
    named: Mapping[str, SpecialToken], tokens: tuple[SpecialToken, ...], vocab: Mapping[str, int], path: Path
) -> None:
    roles = [*named.items(), *(("added token", token) for token in tokens)]
    unknown = [(role, token.content) for role, token in roles if token.content not in vocab]
    if unknown:
        role, content = unknown[0]
        hint = "special tokens must be CLIP vocabulary entries: a new one would need a new embedding"
        raise FormatError(f"{role} {content!r} is not in {path.name}", file=path, hint=hint)


__all__ = [
    "ADDED_TOKENS_NAME",
    "CONFIG_NAME",
    "ENDS_PER_ROW",
    "END_OF_WORD",
    "MERGES_HEADER",
    "MERGES_NAME",
    "SPECIAL_TOKENS_NAME",
    "TOKENIZER_JSON_NAME",
    "VOCAB_NAME",
    "CLIPTokenizerConfig",
    "TokenizerFiles",
    "read_tokenizer_folder",
]
