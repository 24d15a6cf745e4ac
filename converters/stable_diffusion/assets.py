"""What a Stable Diffusion conversion carries besides weights: its tokenizers and its scheduler config.

The text encoders carry their pipeline's `tokenizer/` (and SDXL's `tokenizer_2/`), the UNet carries
`scheduler/scheduler_config.json`: `zoo generate` needs both, and they are copied byte for byte.
Synthetic sources get stand-ins: the family's real scheduler config, and a small CLIP-style BPE
vocabulary (every byte symbol, alone and ending a word, merges learned from a fixed word list, the
start and end tokens last) small enough for the tiny text encoders' embeddings.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from converters.declaration import Asset, Size
from zoo.errors import FormatError
from zoo.foundationals.clip.text_rules import byte_alphabet
from zoo.foundationals.clip.tokenizer import CLIPTokenizer

TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
SCHEDULER_FILE = "scheduler_config.json"
START, END, END_OF_WORD = "<|startoftext|>", "<|endoftext|>", "</w>"
MERGES_HEADER = "#version: 0.2"
# Words the synthetic vocabulary learns its merges from (what prompts are made of).
_WORDS = (
    "a photo of the cat dog on in with and at by an astronaut riding horse moon painting portrait "
    "landscape mountain river lake forest city street night sunset sky clouds sea beach house garden "
    "flower tree snow winter summer light shadow detailed masterpiece quality style art oil watercolor "
    "digital render cinematic lighting sharp focus colorful"
).split()


def tokenizer_asset(
    subfolder: str, pad_token: str, max_length: Callable[[Size], int], vocab_size: Callable[[Size], int]
) -> Asset:
    """A pipeline's CLIP tokenizer folder; synthetic ones pad with `pad_token` and fit the text encoder."""

    def write_synthetic(folder: Path, size: Size) -> None:
        write_synthetic_tokenizer(folder, pad_token, max_length(size), vocab_size(size))

    return Asset(subfolder, "tokenizer", TOKENIZER_FILES, CLIPTokenizer.from_folder, write_synthetic)


def scheduler_asset(config: Mapping[str, Any]) -> Asset:
    """A pipeline's `scheduler/` folder; synthetic sources get `config`, the family's real one."""

    def write_synthetic(folder: Path, _size: Size) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SCHEDULER_FILE).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")

    return Asset("scheduler", "scheduler", (SCHEDULER_FILE,), read_scheduler_file, write_synthetic)


def read_scheduler_file(folder: Path) -> dict[str, Any]:
    """A scheduler folder's `scheduler_config.json`, which must be a JSON object naming its class."""
    path = folder / SCHEDULER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FormatError(f"unreadable scheduler config: {error}", file=path) from error
    if not isinstance(data, dict) or "_class_name" not in data:
        raise FormatError("a scheduler config is a JSON object with a _class_name", file=path)
    return data  # pyright: ignore[reportUnknownVariableType]


# -- the synthetic tokenizer ---------------------------------------------------------------------------


def write_synthetic_tokenizer(folder: Path, pad_token: str, max_length: int, vocab_size: int) -> None:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json of a small CLIP vocabulary."""
    symbols = [*byte_alphabet(), *(symbol + END_OF_WORD for symbol in byte_alphabet())]
    merges = learned_merges(vocab_size - len(symbols) - 2)
    tokens = [*symbols, *(left + right for left, right in merges), START, END]
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "vocab.json", {token: index for index, token in enumerate(tokens)})
    lines = [MERGES_HEADER, *(f"{left} {right}" for left, right in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    named = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": pad_token}
    config = {"model_max_length": max_length, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    _write_json(folder / "tokenizer_config.json", {**config, **named})
    _write_json(folder / "special_tokens_map.json", named)


def learned_merges(limit: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned from `_WORDS`, most frequent pair first (ties by the pair), at most `limit`."""
    words = [(*word[:-1], word[-1] + END_OF_WORD) for word in _WORDS]
    merges: list[tuple[str, str]] = []
    while len(merges) < limit:
        pairs = Counter(pair for word in words for pair in itertools.pairwise(word))
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        words = [_merged(word, best) for word in words]
    return merges


def _merged(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    symbols: list[str] = []
    index = 0
    while index < len(word):
        if word[index : index + 2] == pair:
            symbols.append(pair[0] + pair[1])
            index += 2
        else:
            symbols.append(word[index])
            index += 1
    return tuple(symbols)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = [
    "SCHEDULER_FILE",
    "TOKENIZER_FILES",
    "learned_merges",
    "read_scheduler_file",
    "scheduler_asset",
    "tokenizer_asset",
    "write_synthetic_tokenizer",
]
