"""The key map data model: transforms, lazy application, JSON round trip and digest."""

from __future__ import annotations

import json

import pytest
import torch

from converters._tracing import (
    IDENTITY,
    Concat,
    Coverage,
    KeyMap,
    MapEntry,
    Reshape,
    Split,
    Transpose,
    transform_from_dict,
)
from zoo.errors import ConfigError, CoverageError, FormatError

QKV = ("attn.q.weight", "attn.k.weight", "attn.v.weight")


def example_map() -> KeyMap:
    """One entry of each transform, with shapes and a coverage summary."""
    entries = (
        MapEntry(("in_proj_weight",), QKV, Split(0)),
        MapEntry(("proj_in.weight",), ("proj.weight",), Reshape((4, 2))),
        MapEntry(("text_projection",), ("projection.weight",), Transpose()),
        MapEntry(("to_q.bias", "to_k.bias"), ("qk.bias",), Concat(0)),
        MapEntry(("norm.weight",), ("ln.weight",)),
    )
    sources = {
        "in_proj_weight": (6, 2),
        "proj_in.weight": (4, 2, 1, 1),
        "text_projection": (3, 2),
        "to_q.bias": (2,),
        "to_k.bias": (2,),
        "norm.weight": (5,),
        "position_ids": (1, 5),
    }
    targets = {key: (2, 2) for key in QKV} | {
        "proj.weight": (4, 2),
        "projection.weight": (2, 3),
        "qk.bias": (4,),
        "ln.weight": (5,),
    }
    coverage = Coverage(
        source_tensors=7,
        target_tensors=7,
        mapped_sources=6,
        produced_targets=7,
        aligned_modules=2,
        override_entries=3,
        ignored_source={"position_ids": "recomputed"},
        transforms={"concat": 1, "identity": 1, "reshape": 1, "split": 1, "transpose": 1},
    )
    return KeyMap(entries, sources, targets, coverage)


def source_tensors() -> dict[str, torch.Tensor]:
    """Real tensors with distinct values for every source key of :func:`example_map`."""
    shapes = example_map().source_shapes
    start = 0
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        size = int(torch.Size(shape).numel())
        tensors[key] = torch.arange(start, start + size, dtype=torch.float32).reshape(shape)
        start += size
    return tensors


# --- transforms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transform", "sources", "targets", "expected"),
    [
        (IDENTITY, [(3, 4)], 1, [(3, 4)]),
        (Reshape((8, 4)), [(8, 4, 1, 1)], 1, [(8, 4)]),
        (Reshape((8, 4, 1, 1)), [(8, 4)], 1, [(8, 4, 1, 1)]),
        (Transpose(), [(3, 5)], 1, [(5, 3)]),
        (Split(0), [(24, 8)], 3, [(8, 8)] * 3),
        (Split(-1), [(2, 6)], 2, [(2, 3)] * 2),
        (Concat(0), [(8, 8), (8, 8), (8, 8)], 1, [(24, 8)]),
        (Concat(1), [(2, 1), (2, 3)], 1, [(2, 4)]),
    ],
)
def test_output_shapes(
    transform: Reshape, sources: list[tuple[int, ...]], targets: int, expected: list[tuple[int, ...]]
) -> None:
    assert list(transform.output_shapes(sources, targets)) == expected


@pytest.mark.parametrize(
    ("transform", "sources", "targets", "message"),
    [
        (Reshape((8, 5)), [(8, 4)], 1, "cannot reshape"),
        (Transpose(), [(2, 3, 4)], 1, "2-D"),
        (Split(0), [(10, 2)], 3, "equal parts"),
        (Split(2), [(10, 2)], 2, "out of range"),
        (Concat(0), [(2, 3), (2, 4)], 1, "cannot concatenate"),
    ],
)
def test_invalid_shapes(transform: Split, sources: list[tuple[int, ...]], targets: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transform.output_shapes(sources, targets)


@pytest.mark.parametrize(
    ("sources", "targets", "transform"),
    [
        (("a", "b"), ("c",), IDENTITY),
        (("a",), ("b", "c"), Transpose()),
        (("a",), ("b",), Split(0)),
        (("a",), ("b",), Concat(0)),
    ],
)
def test_entry_checks_arity(sources: tuple[str, ...], targets: tuple[str, ...], transform: Split) -> None:
    with pytest.raises(ValueError, match="takes"):
        MapEntry(sources, targets, transform)


def test_entry_accepts_lists_but_stores_tuples() -> None:
    entry = MapEntry(["a"], ["b"])  # type: ignore[arg-type]
    assert entry.sources == ("a",) and hash(entry) == hash(MapEntry(("a",), ("b",)))


# --- apply -------------------------------------------------------------------------------------


def test_apply_produces_each_target() -> None:
    key_map, tensors = example_map(), source_tensors()
    get = tensors.__getitem__
    fused = tensors["in_proj_weight"]
    for index, key in enumerate(QKV):
        assert torch.equal(key_map.apply(get, key), fused[2 * index : 2 * index + 2])
    assert torch.equal(key_map.apply(get, "proj.weight"), tensors["proj_in.weight"].reshape(4, 2))
    projection = key_map.apply(get, "projection.weight")
    assert torch.equal(projection, tensors["text_projection"].t()) and projection.is_contiguous()
    expected = torch.cat([tensors["to_q.bias"], tensors["to_k.bias"]])
    assert torch.equal(key_map.apply(get, "qk.bias"), expected)
    assert key_map.apply(get, "ln.weight") is tensors["norm.weight"]


def test_apply_fetches_only_what_the_target_needs() -> None:
    tensors, fetched = source_tensors(), []

    def get(key: str) -> torch.Tensor:
        fetched.append(key)
        return tensors[key]

    example_map().apply(get, "qk.bias")
    assert fetched == ["to_q.bias", "to_k.bias"]


def test_apply_works_on_meta() -> None:
    shapes = example_map().source_shapes
    out = example_map().apply(lambda key: torch.empty(shapes[key], device="meta"), "attn.v.weight")
    assert out.device.type == "meta" and out.shape == (2, 2)


def test_apply_rejects_unknown_target_and_wrong_source_shape() -> None:
    key_map, tensors = example_map(), source_tensors()
    with pytest.raises(CoverageError) as error:
        key_map.apply(tensors.__getitem__, "nope.weight")
    assert error.value.tensor == "nope.weight"
    tensors["norm.weight"] = torch.zeros(6)
    with pytest.raises(ConfigError, match=r"shape \(6,\) differs from \(5,\)") as error:
        key_map.apply(tensors.__getitem__, "ln.weight")
    assert error.value.tensor == "norm.weight" and error.value.hint


def test_keys_are_sorted() -> None:
    key_map = example_map()
    assert key_map.target_keys() == tuple(sorted(key_map.target_keys()))
    assert len(key_map.target_keys()) == 7
    assert key_map.source_keys() == tuple(sorted(set(key_map.source_keys())))
    assert "position_ids" not in key_map.source_keys()


# --- JSON and digest ---------------------------------------------------------------------------


def test_json_round_trip() -> None:
    key_map = example_map()
    text = key_map.to_json()
    back = KeyMap.from_json(text)
    assert back == key_map.sorted()
    assert back.to_json() == text
    assert back.coverage == key_map.coverage
    assert json.loads(text)["format"] == "zoo.keymap/1"
    for entry in key_map.entries:
        assert transform_from_dict(entry.transform.to_dict()) == entry.transform


def test_json_puts_one_tensor_per_line() -> None:
    lines = example_map().to_json().splitlines()
    assert '  "in_proj_weight": [6, 2],' in lines
    assert sum(line.lstrip().startswith('{"sources"') for line in lines) == 5


def test_digest_is_stable() -> None:
    key_map = example_map()
    shuffled = KeyMap(key_map.entries[::-1], key_map.source_shapes, key_map.target_shapes, key_map.coverage)
    assert shuffled.digest() == key_map.digest() == KeyMap.from_json(key_map.to_json()).digest()
    # Pinned: a change here changes every cached key map, so it must be on purpose.
    assert key_map.digest() == "68095c7d36152123d486d557b8dfd3928d8c1951d681ac18ca8065e05b7801c9"


def test_digest_sees_every_change() -> None:
    key_map = example_map()
    changed = (*key_map.entries[:-1], MapEntry(("norm.weight",), ("ln.bias",)))
    variants = [
        KeyMap(changed, key_map.source_shapes, key_map.target_shapes, key_map.coverage),
        KeyMap(key_map.entries, {**key_map.source_shapes, "norm.weight": (6,)}, key_map.target_shapes),
        KeyMap(key_map.entries, key_map.source_shapes, key_map.target_shapes, None),
    ]
    assert len({key_map.digest(), *(variant.digest() for variant in variants)}) == 4


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"format": "zoo.keymap/0", "entries": []}',
        '{"format": "zoo.keymap/1"}',
        '{"format": "zoo.keymap/1", "entries": [{"sources": ["a"], "targets": ["b"], "transform": {"kind": "x"}}]}',
    ],
)
def test_from_json_rejects_bad_input(text: str) -> None:
    with pytest.raises(FormatError):
        KeyMap.from_json(text)


def test_from_json_rejects_a_target_produced_twice() -> None:
    data = json.loads(example_map().to_json())
    data["entries"].append(data["entries"][-1])
    with pytest.raises(FormatError, match="produced twice"):
        KeyMap.from_json(json.dumps(data))
