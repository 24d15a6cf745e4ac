"""CLIP's byte-pair-encoding tokenizer, with torch and the standard library only.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (2021,
https://arxiv.org/abs/2103.00020); byte-level BPE after GPT-2 (Radford et al., 2019).
Upstream: https://github.com/openai/CLIP (vocabulary: MIT). It gives the ids of transformers 5.24's
`CLIPTokenizer` (the `tokenizers`-backed one, without ftfy) as Stable Diffusion pipelines call it:
padded to `model_max_length` with truncation. Its rules are in `text_rules` (normalization, words,
bytes), `tokenizer_files` (the folder) and `special_tokens` (which tokens are cut out of the text, how).

    text ─► cut out special tokens matched in raw text ─► normalize ─► cut out those matched in
         normalized text ─► words ─► byte symbols, "</w>" on the last ─► merge pairs, best first ─► ids
    row: start id, ids (at most max_length - 2), end id, pad id ... (max_length in all)

Usage: `tokenizer = CLIPTokenizer.from_folder("sd15/tokenizer")`, then `tokenizer(["a cat", "a dog"])`
gives a (2, 77) int64 tensor and `tokenizer.encode("a cat")` the ids alone.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch

from zoo.foundationals.clip.text_rules import byte_symbols, normalize, split_words
from zoo.foundationals.clip.tokenizer_files import (
    END_OF_WORD,
    ENDS_PER_ROW,
    CLIPTokenizerConfig,
    TokenizerFiles,
    read_tokenizer_folder,
)

WORD_CACHE_SIZE = 1 << 16  # words whose ids are kept: a prompt repeats few, a corpus many


def bpe(symbols: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Merge the best-ranked adjacent pair, everywhere left to right, until no adjacent pair has a rank.

    Args:
        symbols: A word's symbols.
        ranks: Rank of each mergeable pair (0: merged first).

    Returns:
        The merged symbols.
    """
    unranked = len(ranks)
    while len(symbols) > 1:
        rank, pair = min((ranks.get(pair, unranked), pair) for pair in itertools.pairwise(symbols))
        if rank == unranked:
            break
        symbols = _merge_pair(symbols, *pair)
    return symbols


def _merge_pair(symbols: list[str], first: str, second: str) -> list[str]:
    merged: list[str] = []
    index, last = 0, len(symbols) - 1
    while index <= last:
        if index < last and symbols[index] == first and symbols[index + 1] == second:
            merged.append(first + second)
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return merged


def _token_pattern(contents: Iterable[str]) -> re.Pattern[str] | None:
    """One capturing alternation, longest first so the leftmost match is also the longest."""
    ordered = sorted(set(contents), key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None


def _cut(pattern: re.Pattern[str] | None, text: str) -> Iterator[tuple[str, bool]]:
    """The pieces of `text` around the matches of `pattern`, each with whether it is a match."""
    parts = pattern.split(text) if pattern else [text]
    for index, part in enumerate(parts):
        if index % 2 or part:
            yield part, bool(index % 2)


class CLIPTokenizer:
    """Text to CLIP token ids, as transformers' `CLIPTokenizer` called with max-length padding.

    Attributes:
        config: The folder's special tokens and row length.
        bos_id: Id that starts every row.
        eos_id: Id that ends every row's text.
        pad_id: Id that fills a row after the end.
    """

    def __init__(self, files: TokenizerFiles) -> None:
        """Build from a folder read and checked by `read_tokenizer_folder` (or use `from_folder`)."""
        self.config: CLIPTokenizerConfig = files.config
        self._vocab = dict(files.vocab)
        self._ranks = {pair: rank for rank, pair in enumerate(files.merges)}
        special = files.config.special_tokens
        self._raw_tokens = _token_pattern(token.content for token in special if not token.normalized)
        # The reference matches these in normalized text, against their normalized content.
        self._normalized_ids = {
            normalize(token.content): self._vocab[token.content] for token in special if token.normalized
        }
        self._normalized_tokens = _token_pattern(self._normalized_ids)
        self._word_ids = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._bpe_ids)
        self.bos_id, self.eos_id, self.pad_id = (
            self._vocab[token]
            for token in (files.config.bos_token, files.config.eos_token, files.config.pad_token)
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> CLIPTokenizer:
        """Read a tokenizer folder (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json)."""
        return cls(read_tokenizer_folder(folder))

    @property
    def max_length(self) -> int:
        """Length of every row (transformers' `model_max_length`)."""
        return self.config.max_length

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Rows of ids, shape (batch, max_length), int64: start, ids truncated, end, padding."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        wrong = [type(text).__name__ for text in batch if not isinstance(text, str)]
        if wrong:
            raise TypeError(f"CLIPTokenizer takes a string or a sequence of strings, got a {wrong[0]}")
        rows = [self._row(text) for text in batch]
        return torch.tensor(rows, dtype=torch.int64).reshape(len(batch), self.max_length)

    def _row(self, text: str) -> list[int]:
        row = [self.bos_id, *self.encode(text)[: self.max_length - ENDS_PER_ROW], self.eos_id]
        return row + [self.pad_id] * (self.max_length - len(row))

    def encode(self, text: str) -> list[int]:
        """Ids of `text` alone, no start, end or padding (transformers' `add_special_tokens=False`).

        Special tokens written in the text (`<|endoftext|>`, SDXL tokenizer_2's `!`) still give their ids.
        """
        ids: list[int] = []
        for part, is_token in _cut(self._raw_tokens, text):
            ids.extend([self._vocab[part]] if is_token else self._encode_normalized(normalize(part)))
        return ids

    def _encode_normalized(self, text: str) -> list[int]:
        ids: list[int] = []
        for part, is_token in _cut(self._normalized_tokens, text):
            ids.extend([self._normalized_ids[part]] if is_token else self._encode_words(part))
        return ids

    def _encode_words(self, text: str) -> list[int]:
        return [index for word in split_words(text) for index in self._word_ids(word)]

    def _bpe_ids(self, word: str) -> tuple[int, ...]:
        symbols = list(byte_symbols(word))
        symbols[-1] += END_OF_WORD
        return tuple(self._vocab[symbol] for symbol in bpe(symbols, self._ranks))


__all__ = ["WORD_CACHE_SIZE", "CLIPTokenizer", "bpe"]
