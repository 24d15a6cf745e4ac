r"""How CLIP's tokenizer turns text into words of byte symbols, before byte-pair encoding.

These are the rules of transformers 5.24's `CLIPTokenizer`, a `tokenizers` pipeline. Unlike OpenAI's
original tokenizer and transformers 4's Python one, it applies no ftfy repair and no HTML unescaping, so
nothing here depends on whether ftfy is installed:

1. normalize: NFC, every run of whitespace to one space, then lowercase character by character (a
   word-final capital sigma becomes σ, not ς as `str.lower` would make it);
2. split into words with CLIP's pattern
   `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`, keeping the
   matches and dropping what lies between (whitespace). The byte-level step then splits every word again
   with GPT-2's pattern, which changes only the two markers: each becomes `<|`, its name and `|>`;
3. write each word's UTF-8 bytes in GPT-2's byte alphabet, one printable character per byte value.

`\p{L}`, `\p{N}` and `\s` are Oniguruma's: letters and numbers by Unicode general category, whitespace by
the White_Space property (which, unlike `str.isspace`, leaves out the separators U+001C to U+001F).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from zoo.foundationals.clip.unicode_gaps import (
    NEWER_LETTERS,
    NEWER_LOWERCASE,
    NEWER_NUMBERS,
    UNCOMPOSED_PAIRS,
)

# The start and end markers that CLIP's split pattern names literally, whatever the folder's tokens.
MARKERS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

# Past CJK extension H no code point is a letter, number or space (checked once on all 1.1 M code
# points; the tests check every one up to here, plane 14, and a sample of the rest).
_LAST_CLASSIFIED = 0x323AF
_INFORMATION_SEPARATORS = frozenset(map(chr, range(0x1C, 0x20)))
# Bytes that GPT-2's alphabet writes as themselves: printable Latin-1 except the space and soft hyphen.
_PRINTABLE_BYTES = frozenset([*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]) | frozenset(
    range(ord("®"), ord("ÿ") + 1)
)
_FIRST_STAND_IN = 0x100  # the other bytes take the characters from U+0100 on, in byte order

WHITESPACE = "".join(
    char
    for char in map(chr, range(_LAST_CLASSIFIED + 1))
    if char.isspace() and char not in _INFORMATION_SEPARATORS
)
_WHITESPACE_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")
_HELD_BACK_PAIR = re.compile("(" + "|".join(map(re.escape, UNCOMPOSED_PAIRS)) + ")")
_MARKER_WORDS = {marker: tuple(re.findall(r"[a-z]+|[^a-z]+", marker)) for marker in MARKERS}


def normalize(text: str) -> str:
    """NFC, whitespace runs to one space, lowercase: the reference's normalizer."""
    return _lowercase(_WHITESPACE_RUN.sub(" ", _nfc(text)))


def _nfc(text: str) -> str:
    if unicodedata.is_normalized("NFC", text):
        return text
    # Normalizing around a pair the reference does not compose leaves that pair as it is.
    parts = _HELD_BACK_PAIR.split(text)
    return "".join(part if odd else unicodedata.normalize("NFC", part) for odd, part in _alternate(parts))


def _alternate(parts: list[str]) -> Iterable[tuple[bool, str]]:
    return ((bool(index % 2), part) for index, part in enumerate(parts))


def _lowercase(text: str) -> str:
    if text.isascii():
        return text.lower()
    # str.lower() is per character except for Σ, which it makes ς at a word's end: the reference never does.
    return text.replace("Σ", "σ").translate(NEWER_LOWERCASE).lower()


def split_words(text: str) -> list[str]:
    """The words of normalized text, as the reference's pre-tokenizer cuts them (still in Unicode)."""
    words: list[str] = []
    for word in _word_pattern().findall(text):
        words.extend(_MARKER_WORDS.get(word, (word,)))
    return words


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """CLIP's split pattern; built on first use since classifying code points takes ~0.1 s."""
    letters = _character_class(_category_codes("L"), NEWER_LETTERS)
    numbers = _character_class(_category_codes("N"), NEWER_NUMBERS)
    others = f"[^{re.escape(WHITESPACE)}{letters}{numbers}]+"
    alternatives = [*map(re.escape, MARKERS), *CONTRACTIONS, f"[{letters}]+", f"[{numbers}]", others]
    return re.compile("|".join(alternatives))


def _category_codes(major: str) -> list[int]:
    """Code points whose general category starts with `major` ("L": letters, "N": numbers)."""
    return [code for code in range(_LAST_CLASSIFIED + 1) if unicodedata.category(chr(code))[0] == major]


def _character_class(codes: list[int], newer: tuple[tuple[int, int], ...]) -> str:
    """A regex character class body for `codes` plus the inclusive ranges `newer`."""
    extra = [code for first, last in newer for code in range(first, last + 1)]
    return "".join(_class_range(first, last) for first, last in _runs(sorted({*codes, *extra})))


def _runs(codes: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for code in codes:
        if runs and runs[-1][1] == code - 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return runs


def _class_range(first: int, last: int) -> str:
    start = re.escape(chr(first))
    return start if first == last else f"{start}-{re.escape(chr(last))}"


@functools.cache
def byte_alphabet() -> tuple[str, ...]:
    """GPT-2's stand-in character for each byte value (index = byte), printable so BPE never sees spaces."""
    stand_ins = iter(range(_FIRST_STAND_IN, _FIRST_STAND_IN + 256))
    return tuple(chr(byte) if byte in _PRINTABLE_BYTES else chr(next(stand_ins)) for byte in range(256))


def byte_symbols(word: str) -> str:
    """`word`'s UTF-8 bytes written in the byte alphabet."""
    alphabet = byte_alphabet()
    return "".join(alphabet[byte] for byte in word.encode("utf-8"))


__all__ = [
    "CONTRACTIONS",
    "MARKERS",
    "WHITESPACE",
    "byte_alphabet",
    "byte_symbols",
    "normalize",
    "split_words",
]
