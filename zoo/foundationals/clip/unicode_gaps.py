"""Where Python's `unicodedata` and the reference CLIP tokenizer disagree about characters.

The reference (transformers' `CLIPTokenizer`, run by the `tokenizers` library, 0.23) classifies letters
and digits with Oniguruma's Unicode 16 tables, lowercases with Rust's Unicode 17 tables and composes with
NFC tables older than Unicode 13. Python 3.11's `unicodedata` is Unicode 14.0: it calls the characters
below unassigned (category Cn), so without these tables they would be split and lowercased differently.
Each table only adds to what `unicodedata` says about a character it does not know (or, for NFC, holds
back one composition), so a newer Python keeps the same answers. `test_clip_tokenizer` checks all
code points up to CJK extension H (and plane 14) against the installed reference: a `tokenizers` that
moves again fails there.
"""

from __future__ import annotations

# Inclusive code point ranges that the reference matches with \p{L}: Unicode 15.0-16.0 letters
# (CJK extensions H and I, Kawi, Nag Mundari, Todhri, Garay, Sunuwar, Kirat Rai, ...).
NEWER_LETTERS: tuple[tuple[int, int], ...] = (
    (0x1C89, 0x1C8A), (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3), (0x10D4A, 0x10D65),
    (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x1123F, 0x11240), (0x11380, 0x11389), (0x1138B, 0x1138B),
    (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7), (0x113D1, 0x113D1), (0x113D3, 0x113D3),
    (0x11BC0, 0x11BE0), (0x11F02, 0x11F02), (0x11F04, 0x11F10), (0x11F12, 0x11F33), (0x1342F, 0x1342F),
    (0x13441, 0x13446), (0x13460, 0x143FA), (0x16100, 0x1611D), (0x16D40, 0x16D6C), (0x18CFF, 0x18CFF),
    (0x1B132, 0x1B132), (0x1B155, 0x1B155), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E4D0, 0x1E4EB),
    (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5F0), (0x2B739, 0x2B739), (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF),
)  # fmt: skip

# Inclusive code point ranges that the reference matches with \p{N}: Unicode 15.0-16.0 digits.
NEWER_NUMBERS: tuple[tuple[int, int], ...] = (
    (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x11F50, 0x11F59), (0x16130, 0x16139),
    (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1D2C0, 0x1D2D3), (0x1E4F0, 0x1E4F9), (0x1E5F1, 0x1E5FA),
)  # fmt: skip

# Unicode 16-17 capitals the reference lowercases: (first, last, lowercase of first), runs mapping
# each capital to the lowercase at the same offset.
_NEWER_CAPITAL_RUNS: tuple[tuple[int, int, int], ...] = (
    (0x1C89, 0x1C89, 0x1C8A), (0xA7CB, 0xA7CB, 0x0264), (0xA7CC, 0xA7CC, 0xA7CD), (0xA7CE, 0xA7CE, 0xA7CF),
    (0xA7D2, 0xA7D2, 0xA7D3), (0xA7D4, 0xA7D4, 0xA7D5), (0xA7DA, 0xA7DA, 0xA7DB), (0xA7DC, 0xA7DC, 0x019B),
    (0x10D50, 0x10D65, 0x10D70), (0x16EA0, 0x16EB8, 0x16EBB),
)  # fmt: skip

NEWER_LOWERCASE: dict[int, int] = {
    capital: lower + capital - first
    for first, last, lower in _NEWER_CAPITAL_RUNS
    for capital in range(first, last + 1)
}

# Canonical pairs the reference leaves uncomposed (Dives Akuru, Unicode 13: U+11935 U+11930 -> U+11938).
UNCOMPOSED_PAIRS: tuple[str, ...] = ("\U00011935\U00011930",)

__all__ = ["NEWER_LETTERS", "NEWER_LOWERCASE", "NEWER_NUMBERS", "UNCOMPOSED_PAIRS"]
