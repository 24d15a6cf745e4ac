"""Write CLIP's real tokenizer folder, in the Hub's layout, from the vocabulary open-clip ships offline.

CLIP's vocabulary (49408 entries) is built from its merges file (`bpe_simple_vocab_16e6.txt.gz`): the 256
byte symbols of GPT-2's byte alphabet, the same 256 ending a word (`</w>`), one entry per merge (the
first 48894 merges, in order), then `<|startoftext|>` and `<|endoftext|>`. `merges.txt` holds those
merges under a `#version` header.

Two layouts of the JSON files, both as Stable Diffusion repositories hold them:
- `legacy` (saved before transformers 4.34, as SD 1.5 and SDXL were uploaded): AddedToken objects in
  `tokenizer_config.json` and `special_tokens_map.json`;
- `decoder` (saved by later transformers): an `added_tokens_decoder` in `tokenizer_config.json` and plain
  strings elsewhere.
And two pad tokens: the end token (SD 1.5, SDXL's `tokenizer/`) or `!` (SDXL's `tokenizer_2/`).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any, Literal

VOCAB_SIZE = 49408
BYTE_VALUES = 256
START = "<|startoftext|>"
END = "<|endoftext|>"
END_PAD = END  # SD 1.5 and SDXL's first tokenizer pad with the end token
BANG_PAD = "!"  # SDXL's tokenizer_2 pads with "!" (id 0)
MAX_LENGTH = 77
MERGES_HEADER = "#version: 0.2"
Layout = Literal["legacy", "decoder", "saved"]


def byte_alphabet() -> list[str]:
    """GPT-2's stand-in for each byte value, in byte order.

    Bytes that print as a visible Latin-1 character stand for themselves; the others (controls, spaces,
    the soft hyphen) take U+0100, U+0101, ... in byte order. Written apart from zoo's own, as a check.
    """
    visible = [chr(byte).isprintable() and not chr(byte).isspace() for byte in range(BYTE_VALUES)]
    hidden_rank = {byte: rank for rank, byte in enumerate(b for b in range(BYTE_VALUES) if not visible[b])}
    return [
        chr(byte) if visible[byte] else chr(BYTE_VALUES + hidden_rank[byte]) for byte in range(BYTE_VALUES)
    ]


def merges_file() -> Path:
    """open-clip's gzipped merges file, found without importing open-clip (which imports timm and more)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open-clip-torch is not installed: it ships CLIP's vocabulary")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


@functools.cache
def clip_merges() -> tuple[str, ...]:
    """CLIP's merges, `left right` per line, best first."""
    lines = gzip.decompress(merges_file().read_bytes()).decode("utf-8").split("\n")
    count = VOCAB_SIZE - 2 * BYTE_VALUES - 2  # the rest of the vocabulary: bytes, bytes + </w>, markers
    return tuple(lines[1 : 1 + count])  # line 0 is the file's own header


@functools.cache
def clip_vocab() -> dict[str, int]:
    """CLIP's vocabulary: token -> id."""
    symbols = sorted(byte_alphabet())  # visible bytes first: CLIP's order
    tokens = [*symbols, *(symbol + "</w>" for symbol in symbols)]
    tokens += [merge.replace(" ", "") for merge in clip_merges()] + [START, END]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_tokenizer(folder: Path, *, pad_token: str = END_PAD, layout: Layout = "legacy") -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `folder`.

    With layout `saved`: what transformers' own `save_pretrained` writes from such a folder
    (tokenizer.json and tokenizer_config.json, as pipelines saved with transformers 5 hold).
    """
    if layout == "saved":
        return _saved_by_transformers(folder, pad_token)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join([MERGES_HEADER, *clip_merges()]) + "\n", encoding="utf-8")
    config, special_map = (_legacy if layout == "legacy" else _decoder)(pad_token)
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", special_map)
    return folder


def _saved_by_transformers(folder: Path, pad_token: str) -> Path:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as legacy:
        write_clip_tokenizer(Path(legacy), pad_token=pad_token)
        CLIPTokenizer.from_pretrained(legacy).save_pretrained(folder)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _added_token(content: str, *, normalized: bool = True) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": False,
        "normalized": normalized,
        "rstrip": False,
        "single_word": False,
    }


def _common_config(pad_token: str) -> dict[str, Any]:
    return {
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
    }


def _legacy(pad_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    typed = {name: {"__type": "AddedToken", **_added_token(content)} for name, content in _named().items()}
    special_map = {name: _added_token(content) for name, content in _named().items()}
    return {**_common_config(pad_token), **typed}, {**special_map, "pad_token": pad_token}


def _decoder(pad_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    entries = {START: True, END: False} | ({pad_token: False} if pad_token != END else {})
    decoder = {
        str(clip_vocab()[content]): {**_added_token(content, normalized=normalized), "special": True}
        for content, normalized in sorted(entries.items(), key=lambda item: clip_vocab()[item[0]])
    }
    named = {**_named(), "pad_token": pad_token}
    return {**_common_config(pad_token), "added_tokens_decoder": decoder, **named}, named


def _named() -> dict[str, str]:
    return {"bos_token": START, "eos_token": END, "unk_token": END}


__all__ = [
    "BANG_PAD",
    "END",
    "END_PAD",
    "MAX_LENGTH",
    "START",
    "VOCAB_SIZE",
    "Layout",
    "byte_alphabet",
    "clip_merges",
    "clip_vocab",
    "merges_file",
    "write_clip_tokenizer",
]
