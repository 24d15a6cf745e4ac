"""Our CLIP tokenizer gives transformers' ids, on CLIP's real vocabulary, for every Stable Diffusion folder layout."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from clip_vocab import (  # pyright: ignore[reportMissingImports]
    BANG_PAD,
    END,
    END_PAD,
    MAX_LENGTH,
    START,
    VOCAB_SIZE,
    Layout,
    byte_alphabet,
    clip_vocab,
    write_clip_tokenizer,
)
from transformers import CLIPTokenizer as ReferenceTokenizer

from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.text_rules import byte_symbols, normalize, split_words
from zoo.foundationals.clip.tokenizer import CLIPTokenizer, bpe

VARIANTS = [
    (END_PAD, "legacy"),
    (BANG_PAD, "legacy"),
    (END_PAD, "decoder"),
    (BANG_PAD, "decoder"),
    (END_PAD, "saved"),
    (BANG_PAD, "saved"),
]
LONG_PROMPT = "a very detailed painting of a lighthouse on a cliff, stormy sea, " * 6

CORPUS = [
    "a photo of a cat",
    "An astronaut riding a horse on the Moon, trending on ArtStation!",
    "portrait, (masterpiece:1.2), [blurry], {best quality}; 4k/8k -- #hdr @night ~ 50% off?!",
    "1girl, 2 dogs, 300 cats, 3.14159, 1,000,000 years, 1990s, 24mm f/1.8",
    "don't stop, it's mine, we're here, they've gone, I'm fine, you'll see, he'd go, O'NEIL'S 'SUP ''s",
    "MiXeD CaSe WoRdS and ALLCAPS",
    "  leading spaces,\ttabs\t\tand\n\nnewlines\r\n  and   runs    of   spaces  ",
    "café crème brûlée, naïve façade, Ångström, Ωmega, ΟΔΟΣ Σ, İstanbul, STRASSE ß",
    "東京の夜景、桜の木 한국어 문장 中文提示词",
    "🐱 cat emoji 👩‍🚀 astronaut 🏳️‍🌈 flag ✨🔥",
    "مرحبا بالعالم، قطة جميلة",
    "x² + y³ = z⁴, H₂O, ½ cup, ① ② ③, Ⅻ, ٣٤٥",
    "e\u0301 vs é, n\u0303, a\u0308\u0304, \u0301 alone, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ",
    "\u00a0no-break\u2003em space\u3000ideographic\x1cfile separator\x85next line\u200bzero width",
    "",
    "   ",
    LONG_PROMPT,
    "special <|endoftext|> inside, <|startoftext|>start, <|ENDOFTEXT|>> and <|StartOfText|>",
    "wow!!! really! ! ?!",
]


@pytest.fixture(
    scope="module", params=VARIANTS, ids=lambda v: f"{v[1]}-pad{'!' if v[0] == BANG_PAD else 'end'}"
)
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pad_token, layout = request.param
    return write_clip_tokenizer(tmp_path_factory.mktemp("tokenizer"), pad_token=pad_token, layout=layout)


@pytest.fixture(scope="module")
def reference(folder: Path) -> ReferenceTokenizer:
    return ReferenceTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def ours(folder: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_folder(folder)


def reference_ids(reference: ReferenceTokenizer, texts: list[str]) -> torch.Tensor:
    """As diffusers' pipelines call it."""
    max_length = reference.model_max_length
    inputs = reference(
        texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    )
    return inputs.input_ids


def test_helper_writes_clips_vocabulary(ours: CLIPTokenizer, reference: ReferenceTokenizer) -> None:
    vocab = clip_vocab()
    assert len(vocab) == VOCAB_SIZE and vocab["!"] == 0 and vocab[START] == 49406 and vocab[END] == 49407
    # Ids any CLIP user knows: "a photo of a cat".
    assert reference("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ours.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]


def test_ids_equal_transformers_on_the_corpus(ours: CLIPTokenizer, reference: ReferenceTokenizer) -> None:
    expected = reference_ids(reference, CORPUS)
    actual = ours(CORPUS)
    assert actual.dtype == torch.int64 and actual.shape == (len(CORPUS), MAX_LENGTH)
    different = [
        text for text, row, want in zip(CORPUS, actual, expected, strict=True) if not torch.equal(row, want)
    ]
    assert not different


@pytest.mark.parametrize("text", CORPUS)
def test_encode_equals_transformers_without_special_tokens(
    ours: CLIPTokenizer, reference: ReferenceTokenizer, text: str
) -> None:
    assert ours.encode(text) == reference.encode(text, add_special_tokens=False)


def test_one_prompt_is_a_batch_of_one(ours: CLIPTokenizer, reference: ReferenceTokenizer) -> None:
    assert torch.equal(ours("a red apple"), reference_ids(reference, ["a red apple"]))
    assert ours([]).shape == (0, MAX_LENGTH)


def test_rows_are_start_ids_end_then_padding(ours: CLIPTokenizer) -> None:
    row = ours("a cat")[0].tolist()
    pad = clip_vocab()[ours.config.pad_token]
    assert row == [ours.bos_id, 320, 2368, ours.eos_id] + [pad] * (MAX_LENGTH - 4)


def test_a_long_prompt_is_truncated_to_max_length(ours: CLIPTokenizer, reference: ReferenceTokenizer) -> None:
    assert len(ours.encode(LONG_PROMPT)) > MAX_LENGTH
    row = ours(LONG_PROMPT)[0]
    assert row[-1] == ours.eos_id and ours.eos_id not in row[1:-1].tolist()
    assert torch.equal(row, reference_ids(reference, [LONG_PROMPT])[0])


def test_special_token_flags_equal_transformers(ours: CLIPTokenizer, reference: ReferenceTokenizer) -> None:
    expected = {token.content: token.normalized for token in reference.added_tokens_decoder.values()}
    assert {token.content: token.normalized for token in ours.config.special_tokens} == expected
    assert ours.config.pad_token == reference.pad_token and ours.pad_id == reference.pad_token_id


def test_sdxl_second_tokenizer_reads_bang_as_its_pad_token(tmp_path: Path) -> None:
    """`!` is a special token there: it keeps id 0 inside a prompt instead of the BPE id of `!</w>`."""
    bang = CLIPTokenizer.from_folder(write_clip_tokenizer(tmp_path / "bang", pad_token=BANG_PAD))
    end = CLIPTokenizer.from_folder(write_clip_tokenizer(tmp_path / "end", pad_token=END_PAD))
    assert bang.encode("wow!") == [clip_vocab()["wow</w>"], 0]
    assert end.encode("wow!") == [clip_vocab()["wow</w>"], clip_vocab()["!</w>"]]
    assert bang("wow")[0, -1] == 0 and end("wow")[0, -1] == clip_vocab()[END]


def drop_flags(token: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in token.items() if key not in ("normalized", "special")}


def edit_special_map_without_flags(folder: Path) -> None:
    """A map object without `normalized`: transformers marks it special, so matched in raw text."""
    path = folder / "special_tokens_map.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(
        json.dumps(
            {key: drop_flags(value) if isinstance(value, dict) else value for key, value in data.items()}
        )
    )


def edit_config_without_flags_and_no_map(folder: Path) -> None:
    """A config object without `normalized` nor `special`: matched in normalized text."""
    (folder / "special_tokens_map.json").unlink()
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(
        json.dumps(
            {key: drop_flags(value) if isinstance(value, dict) else value for key, value in data.items()}
        )
    )


def edit_decoder_without_flags(folder: Path) -> None:
    """Decoder entries without `normalized`: named ones are matched raw, others unless special."""
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = {key: drop_flags(value) for key, value in data["added_tokens_decoder"].items()}
    entries[str(clip_vocab()["cat"])] = {"content": "cat"}
    entries[str(clip_vocab()["cats"])] = {"content": "cats"}  # overlapping: the longest match wins
    entries[str(clip_vocab()["dog"])] = {"content": "dog", "special": True}
    path.write_text(json.dumps({**data, "added_tokens_decoder": entries}))


def edit_added_tokens_file(folder: Path) -> None:
    """The legacy added_tokens.json: named tokens take its entries (raw), the others normalized."""
    tokens = {START: clip_vocab()[START], END: clip_vocab()[END], "cat": clip_vocab()["cat"]}
    (folder / "added_tokens.json").write_text(json.dumps(tokens))


@pytest.mark.parametrize(
    ("layout", "edit"),
    [
        ("legacy", edit_special_map_without_flags),
        ("legacy", edit_config_without_flags_and_no_map),
        ("decoder", edit_decoder_without_flags),
        ("legacy", edit_added_tokens_file),
    ],
)
def test_special_token_rules_equal_transformers_when_flags_are_left_out(
    tmp_path: Path, layout: Layout, edit: Callable[[Path], None]
) -> None:
    folder = write_clip_tokenizer(tmp_path / "tokenizer", pad_token=BANG_PAD, layout=layout)
    edit(folder)
    ours, reference = CLIPTokenizer.from_folder(folder), ReferenceTokenizer.from_pretrained(folder)
    expected = {token.content: token.normalized for token in reference.added_tokens_decoder.values()}
    assert {token.content: token.normalized for token in ours.config.special_tokens} == expected
    text = "<|STARTOFTEXT|> a CAT<|ENDOFTEXT|>! cat <|endoftext|>x DOG dog catcats"
    assert ours.encode(text) == reference.encode(text, add_special_tokens=False)


def unicode_probe_points() -> list[int]:
    """Every code point up to CJK extension H and in plane 14, and a sample of the unassigned rest."""
    dense = [*range(0x323B0), *range(0xE0000, 0xE0200)]
    sparse = range(0x323B0, 0x110000, 97)
    return [code for code in [*dense, *sparse] if not 0xD800 <= code <= 0xDFFF]


def unicode_probe(char: str) -> str:
    """Text whose words tell letter, number, space and other apart, with the decomposed form if any."""
    decomposed = unicodedata.normalize("NFD", char)
    return f"a{char}{char}! " + (f"{decomposed}' " if decomposed != char else "")


@pytest.fixture(scope="module")
def one_reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceTokenizer:
    """Normalization and words do not depend on the folder's layout or pad token."""
    return ReferenceTokenizer.from_pretrained(write_clip_tokenizer(tmp_path_factory.mktemp("tokenizer")))


def test_normalization_and_words_equal_transformers_across_unicode(one_reference: ReferenceTokenizer) -> None:
    """Per code point: letter, number, space or other; lowercase; NFC of its decomposition."""
    backend = one_reference.backend_tokenizer
    assert backend.normalizer is not None and backend.pre_tokenizer is not None
    points = unicode_probe_points()
    chunk = 1 << 15
    for start in range(0, len(points), chunk):
        text = "".join(unicode_probe(chr(code)) for code in points[start : start + chunk])
        normalized = backend.normalizer.normalize_str(text)
        assert normalize(text) == normalized, f"normalization differs from U+{points[start]:04X} on"
        words = [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
        ours = [byte_symbols(word) for word in split_words(normalized)]
        assert ours == words, f"words differ from U+{points[start]:04X} on"


def test_bpe_merges_best_rank_first_everywhere() -> None:
    ranks = {("a", "a"): 0, ("aa", "aa"): 1, ("b", "aa"): 2}
    assert bpe(list("aaaa"), ranks) == ["aaaa"]
    assert bpe(list("baa"), ranks) == ["baa"]
    assert bpe(list("aaa"), ranks) == ["aa", "a"]
    assert bpe(["x"], ranks) == ["x"]


def random_prompts(count: int, seed: int = 0) -> list[str]:
    """Prompts of CLIP subwords, with random case, punctuation, digits, spaces and non-Latin characters."""
    rng = random.Random(seed)
    decode = {char: byte for byte, char in enumerate(byte_alphabet())}
    words = [
        bytes(decode[char] for char in token.removesuffix("</w>")).decode("utf-8", errors="ignore")
        for token in list(clip_vocab())[512:-2]
    ]
    extras = [
        ",",
        ".",
        "!",
        "?",
        "'s",
        "'",
        "(",
        ")",
        ":1.2",
        "42",
        "7",
        "é",
        "ß",
        "Σ",
        "日本",
        "🐱",
        "\n",
        "  ",
    ]
    return [
        " ".join(_random_word(rng, words, extras) for _ in range(rng.randint(0, 40))) for _ in range(count)
    ]


def _random_word(rng: random.Random, words: list[str], extras: list[str]) -> str:
    word = rng.choice(words) + (rng.choice(extras) if rng.random() < 0.3 else "")
    return word.upper() if rng.random() < 0.1 else word


def test_a_thousand_random_prompts_equal_transformers_and_timing(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fresh tokenizers each: the first call fills the word caches, the second reads them."""
    prompts = random_prompts(1000)
    ours, reference = CLIPTokenizer.from_folder(folder), ReferenceTokenizer.from_pretrained(folder)
    ours_seconds, actual = timed(lambda: ours(prompts))
    reference_seconds, expected = timed(lambda: reference_ids(reference, prompts))
    assert torch.equal(actual, expected)
    ours_warm, _ = timed(lambda: ours(prompts))
    reference_warm, _ = timed(lambda: reference_ids(reference, prompts))
    with capsys.disabled():
        print(
            f"\n1000 prompts, ours vs transformers: first call {ours_seconds * 1e3:.0f} vs "
            f"{reference_seconds * 1e3:.0f} ms ({ours_seconds / reference_seconds:.1f}x), second call "
            f"{ours_warm * 1e3:.0f} vs {reference_warm * 1e3:.0f} ms ({ours_warm / reference_warm:.1f}x)"
        )


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def test_runtime_needs_no_tokenizer_libraries() -> None:
    code = (
        "import sys; import zoo.foundationals.clip.tokenizer; "
        "print(sorted({'transformers', 'tokenizers', 'regex', 'ftfy'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    return write_clip_tokenizer(tmp_path / "tokenizer")


def edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


def test_missing_vocab_is_a_format_error_naming_it(good_folder: Path) -> None:
    (good_folder / "vocab.json").unlink()
    with pytest.raises(FormatError, match=r"no vocab\.json") as caught:
        CLIPTokenizer.from_folder(good_folder)
    assert caught.value.file == str(good_folder / "vocab.json")


def test_invalid_json_is_a_format_error_naming_the_file(good_folder: Path) -> None:
    (good_folder / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match=r"tokenizer_config\.json is not valid JSON") as caught:
        CLIPTokenizer.from_folder(good_folder)
    assert caught.value.file == str(good_folder / "tokenizer_config.json")


def test_merges_without_header_is_a_format_error(good_folder: Path) -> None:
    merges = good_folder / "merges.txt"
    merges.write_text(merges.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    with pytest.raises(FormatError, match=r"merges\.txt has no header") as caught:
        CLIPTokenizer.from_folder(good_folder)
    assert caught.value.file == str(merges) and "#version" in (caught.value.hint or "")


@pytest.mark.parametrize("bad_line", ["i n t", "in", "", "i  n"])
def test_a_malformed_merge_line_is_a_format_error_with_its_number(good_folder: Path, bad_line: str) -> None:
    merges = good_folder / "merges.txt"
    lines = merges.read_text(encoding="utf-8").split("\n")
    merges.write_text("\n".join([*lines[:3], bad_line, *lines[3:]]), encoding="utf-8")
    with pytest.raises(FormatError, match=r"merges\.txt line 4 is not two symbols"):
        CLIPTokenizer.from_folder(good_folder)


def test_a_merge_without_vocab_entry_is_a_format_error(good_folder: Path) -> None:
    merges = good_folder / "merges.txt"
    merges.write_text(merges.read_text(encoding="utf-8") + "q z\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"merge result\(s\) not in vocab\.json, e\.g\. 'qz'"):
        CLIPTokenizer.from_folder(good_folder)


def test_an_unknown_pad_token_is_a_format_error(good_folder: Path) -> None:
    edit_json(good_folder / "tokenizer_config.json", pad_token="<pad>")
    edit_json(good_folder / "special_tokens_map.json", pad_token="<pad>")
    with pytest.raises(FormatError, match=r"pad_token '<pad>' is not in vocab\.json"):
        CLIPTokenizer.from_folder(good_folder)


def test_a_missing_pad_token_is_a_format_error(good_folder: Path) -> None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((good_folder / name).read_text(encoding="utf-8"))
        (good_folder / name).write_text(json.dumps({k: v for k, v in data.items() if k != "pad_token"}))
    with pytest.raises(FormatError, match=r"tokenizer_config\.json names no pad_token"):
        CLIPTokenizer.from_folder(good_folder)


@pytest.mark.parametrize("length", [None, "77", 1])
def test_a_bad_max_length_is_a_format_error(good_folder: Path, length: object) -> None:
    edit_json(good_folder / "tokenizer_config.json", model_max_length=length)
    with pytest.raises(FormatError, match="model_max_length must be an integer >= 2"):
        CLIPTokenizer.from_folder(good_folder)


def test_max_length_comes_from_the_config(good_folder: Path) -> None:
    edit_json(good_folder / "tokenizer_config.json", model_max_length=8)
    tokenizer = CLIPTokenizer.from_folder(good_folder)
    assert tokenizer("one two three four five six seven").shape == (1, 8)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"do_lower_case": False}, "do_lower_case must be true"),
        ({"padding_side": "left"}, "padding_side 'left' is not supported"),
        ({"additional_special_tokens": ["<x>"]}, "additional_special_tokens is not supported"),
        (
            {"mask_token": {"content": "!", "single_word": True}},
            "single_word special tokens are not supported",
        ),
        ({"image_token": "<image>"}, "model-specific special token"),
    ],
)
def test_settings_we_cannot_honour_are_config_errors(
    good_folder: Path, changes: dict[str, object], message: str
) -> None:
    edit_json(good_folder / "tokenizer_config.json", **changes)
    with pytest.raises(ConfigError, match=message):
        CLIPTokenizer.from_folder(good_folder)


def test_a_non_string_prompt_is_a_type_error(good_folder: Path) -> None:
    with pytest.raises(TypeError, match="got a int"):
        CLIPTokenizer.from_folder(good_folder)(["a cat", 3])  # type: ignore[list-item]
