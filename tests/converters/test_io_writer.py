"""The streaming safetensors writer: exact, deterministic, atomic, strict on values."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from converters._checkpoints import (
    TensorPlan,
    WriteSummary,
    open_checkpoint,
    output_stream,
    write_safetensors,
)
from converters._checkpoints.stages import STAGES
from zoo.errors import CoverageError, FormatError, TensorValueError

REPO_ROOT = Path(__file__).resolve().parents[2]


def plan_of(name: str, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> TensorPlan:
    return TensorPlan(name, tuple(tensor.shape), dtype or tensor.dtype, lambda: tensor)


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


def header_of(path: Path) -> tuple[int, bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return length, raw[8 : 8 + length]


def assert_nothing_written(folder: Path) -> None:
    assert sorted(path.name for path in folder.iterdir()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_is_bit_exact(tmp_path: Path, dtype: torch.dtype) -> None:
    source = {
        "w": seeded(5, 7).to(dtype),
        "b": seeded(7, seed=1).to(dtype),
        "scalar": torch.tensor(3.5, dtype=dtype),
    }
    path = tmp_path / "out.safetensors"
    write_safetensors(path, [plan_of(name, tensor) for name, tensor in source.items()])
    loaded = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        for name, tensor in source.items():
            assert loaded[name].dtype == dtype
            assert torch.equal(bits(loaded[name]), bits(tensor))
            assert torch.equal(bits(handle.get_tensor(name)), bits(tensor))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_casts_to_the_planned_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    source = seeded(4, 4)
    path = tmp_path / "out.safetensors"
    write_safetensors(path, [plan_of("w", source, dtype)])
    assert torch.equal(bits(load_file(path)["w"]), bits(source.to(dtype)))


def test_writes_other_dtypes_and_empty_tensors(tmp_path: Path) -> None:
    source = {
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.tensor([0, 255], dtype=torch.uint8),
        "empty": torch.zeros(0, 4),
        "f8": torch.tensor([0.5, -2.0]).to(torch.float8_e4m3fn),
    }
    path = tmp_path / "out.safetensors"
    write_safetensors(path, [plan_of(name, tensor) for name, tensor in source.items()])
    loaded = load_file(path)
    assert all(torch.equal(bits(loaded[name]), bits(tensor)) for name, tensor in source.items())
    assert loaded["empty"].shape == (0, 4)


def test_header_is_sorted_compact_and_aligned(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    plans = [plan_of(name, torch.ones(3)) for name in ["z", "b.weight", "a", "b.bias"]]
    write_safetensors(path, plans, {"zeta": "1", "alpha": "2"})
    length, raw = header_of(path)
    assert (8 + length) % 8 == 0
    text = raw.decode()
    assert text.rstrip(" ") == json.dumps(json.loads(text), separators=(",", ":"))
    header = json.loads(text)
    assert list(header) == ["__metadata__", "a", "b.bias", "b.weight", "z"]
    assert list(header["__metadata__"]) == ["alpha", "zeta"]
    offsets = [header[name]["data_offsets"] for name in ["a", "b.bias", "b.weight", "z"]]
    assert offsets == [[0, 12], [12, 24], [24, 36], [36, 48]]
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"alpha": "2", "zeta": "1"}


def test_produces_each_tensor_once_in_sorted_order(tmp_path: Path) -> None:
    calls: list[str] = []

    def recording(name: str) -> TensorPlan:
        return TensorPlan(name, (2,), torch.float32, lambda: calls.append(name) or torch.ones(2))

    written: list[int] = []
    write_safetensors(
        tmp_path / "out.safetensors", [recording(name) for name in "cab"], progress=written.append
    )
    assert calls == ["a", "b", "c"]
    assert written == [8, 8, 8]


def test_summary_matches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    plans = [
        plan_of("w", seeded(3, 4)),
        plan_of("h", seeded(2, seed=1), torch.float16),
        plan_of("k", seeded(5)),
    ]
    summary = write_safetensors(path, plans, {"format": "pt"})
    content = path.read_bytes()
    assert summary == WriteSummary(
        path=path,
        tensor_count=3,
        byte_count=len(content),
        param_count=12 + 2 + 5,
        sha256=hashlib.sha256(content).hexdigest(),
        dtypes={"F16": 1, "F32": 2},
    )


DETERMINISM_SCRIPT = """
import sys, torch
from converters._checkpoints import TensorPlan, write_safetensors

def plan(name, shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return TensorPlan(name, shape, dtype, lambda: torch.randn(*shape, generator=generator))

plans = [plan("up.weight", (8, 4), torch.float16, 1), plan("down.weight", (4, 8), torch.bfloat16, 2),
         plan("norm", (8,), torch.float32, 3)]
print(write_safetensors(sys.argv[1], plans, {"format": "pt", "zoo": "test"}).sha256)
"""


def test_bytes_are_identical_across_processes(tmp_path: Path) -> None:
    script = tmp_path / "write.py"
    script.write_text(textwrap.dedent(DETERMINISM_SCRIPT))
    digests = []
    for run, hash_seed in enumerate(["1", "2"]):  # different str hashing, different process
        output = tmp_path / f"run{run}" / "model.safetensors"
        output.parent.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, str(script), str(output)], env=env, capture_output=True, text=True, check=True
        )
        digests.append(result.stdout.strip())
        assert digests[-1] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert digests[0] == digests[1]
    assert (tmp_path / "run0/model.safetensors").read_bytes() == (
        tmp_path / "run1/model.safetensors"
    ).read_bytes()


# --- Atomicity ----------------------------------------------------------------------------------


def failing_plans() -> list[TensorPlan]:
    def explode() -> torch.Tensor:
        raise RuntimeError("source disappeared")

    return [
        plan_of("a", torch.ones(4)),
        TensorPlan("b", (4,), torch.float32, explode),
        plan_of("c", torch.ones(4)),
    ]


def test_a_failure_mid_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="source disappeared"):
        write_safetensors(tmp_path / "out.safetensors", failing_plans())
    assert_nothing_written(tmp_path)


def test_a_failure_mid_write_leaves_an_existing_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    write_safetensors(path, [plan_of("old", torch.zeros(2))])
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="source disappeared"):
        write_safetensors(path, failing_plans())
    assert [entry.name for entry in tmp_path.iterdir()] == ["out.safetensors"]
    assert path.read_bytes() == before


def test_replaces_an_existing_file_on_success(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    write_safetensors(path, [plan_of("old", torch.zeros(2))])
    write_safetensors(path, [plan_of("new", torch.ones(2))])
    assert list(load_file(path)) == ["new"]
    assert [entry.name for entry in tmp_path.iterdir()] == ["out.safetensors"]


# --- Values and plans -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_refuses_nonfinite_values(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "out.safetensors"
    tensor = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(TensorValueError, match="holds 1 NaN/Inf values") as caught:
        write_safetensors(path, [plan_of("ok", torch.ones(2)), plan_of("blocks.0.norm.weight", tensor)])
    assert (caught.value.tensor, caught.value.file) == ("blocks.0.norm.weight", str(path))
    assert_nothing_written(tmp_path)


def test_writes_nonfinite_values_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    tensor = torch.tensor([1.0, float("nan"), float("-inf"), 3.0])
    write_safetensors(path, [plan_of("mask", tensor, torch.float16)], allow_nonfinite=True)
    assert torch.equal(bits(load_file(path)["mask"]), bits(tensor.to(torch.float16)))


def test_refuses_values_that_overflow_the_target_dtype(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    tensor = torch.tensor([1.0, -70000.0, 65504.0])
    with pytest.raises(
        TensorValueError, match=r"value -70000 \(max \|x\| 70000\) does not fit torch.float16"
    ) as caught:
        write_safetensors(path, [plan_of("time_embedding.linear_1.weight", tensor, torch.float16)])
    assert (caught.value.tensor, caught.value.file) == ("time_embedding.linear_1.weight", str(path))
    assert_nothing_written(tmp_path)


def test_accepts_the_largest_float16_and_wider_targets(tmp_path: Path) -> None:
    path = tmp_path / "out.safetensors"
    edge, wide = torch.tensor([65504.0, -65504.0]), torch.tensor([70000.0])
    write_safetensors(path, [plan_of("edge", edge, torch.float16), plan_of("wide", wide, torch.bfloat16)])
    assert torch.equal(load_file(path)["edge"], edge.to(torch.float16))


def test_refuses_overflow_into_integer_dtypes(tmp_path: Path) -> None:
    with pytest.raises(TensorValueError, match=r"value 300 .* does not fit torch.uint8"):
        write_safetensors(tmp_path / "out.safetensors", [plan_of("ids", torch.tensor([1, 300]), torch.uint8)])


def test_refuses_a_tensor_of_the_wrong_shape(tmp_path: Path) -> None:
    plan = TensorPlan("conv.weight", (4, 3), torch.float32, lambda: torch.ones(3, 4))
    with pytest.raises(FormatError, match=r"produced shape \(3, 4\) but the plan says \(4, 3\)") as caught:
        write_safetensors(tmp_path / "out.safetensors", [plan])
    assert caught.value.tensor == "conv.weight"
    assert_nothing_written(tmp_path)


def test_refuses_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(CoverageError, match="share this name") as caught:
        write_safetensors(
            tmp_path / "out.safetensors", [plan_of("a", torch.ones(1)), plan_of("a", torch.zeros(1))]
        )
    assert caught.value.tensor == "a"
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("plan", "metadata", "match"),
    [
        (plan_of("__metadata__", torch.ones(1)), None, "reserved"),
        (plan_of("q", torch.ones(1), torch.float8_e4m3fnuz), None, "cannot hold dtype"),
        (plan_of("a", torch.ones(1)), {"epoch": 3}, "not str → str"),
    ],
    ids=["reserved-name", "unsupported-dtype", "metadata-not-str"],
)
def test_refuses_what_safetensors_cannot_hold(
    tmp_path: Path, plan: TensorPlan, metadata: dict[str, object] | None, match: str
) -> None:
    with pytest.raises(FormatError, match=match):
        write_safetensors(tmp_path / "out.safetensors", [plan], metadata)  # type: ignore[arg-type]
    assert_nothing_written(tmp_path)


# --- rewriting a file ------------------------------------------------------------------------------


def test_rewriting_a_file_of_ours_reproduces_its_bytes(tmp_path: Path) -> None:
    source = {"b": seeded(3, 2).to(torch.float16), "a": seeded(4, seed=1), "c": seeded(2, seed=2)}
    first = write_safetensors(tmp_path / "src.safetensors", [plan_of(n, t) for n, t in source.items()])
    with open_checkpoint(tmp_path / "src.safetensors") as reader:
        plans = [TensorPlan(k, reader.shape(k), reader.dtype(k), _getter(reader, k)) for k in reader.keys()]
        again = write_safetensors(tmp_path / "dst.safetensors", plans)
    assert again.sha256 == first.sha256
    assert first.sha256 == hashlib.sha256((tmp_path / "src.safetensors").read_bytes()).hexdigest()


def _getter(reader: Any, key: str) -> Any:
    return lambda: reader.get(key)


# --- one pass: tensors copied from their source file, in chunks ----------------------------------


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    """A checkpoint whose tensors span several 64-byte chunks (the chunk size the tests below force)."""
    generator = torch.Generator().manual_seed(3)
    path = tmp_path / "source.safetensors"
    save_file(
        {
            "big": torch.randn(10, 9, generator=generator),  # 360 bytes: 6 chunks, the last one short
            "half": torch.randn(7, 5, generator=generator).to(torch.float16),
            "qkv": torch.randn(6, 4, generator=generator),
        },
        path,
    )
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("converters._checkpoints.writer.CHUNK_BYTES", 64)


def reader_plans(reader: Any, dtype: torch.dtype | None = None) -> list[TensorPlan]:
    """Each tensor as it is, a reshaped view, and one of three chunks: all views of the file."""
    return [
        TensorPlan("big", (90,), dtype or torch.float32, lambda: reader.get("big").reshape(90)),
        TensorPlan("half", (7, 5), dtype or torch.float16, lambda: reader.get("half")),
        TensorPlan("k", (2, 4), dtype or torch.float32, lambda: reader.get("qkv").chunk(3)[1]),
    ]


def in_memory_plans(reader: Any, dtype: torch.dtype | None = None) -> list[TensorPlan]:
    """The same tensors, copied out of the file first: the writer cannot tell where they came from."""
    return [TensorPlan(p.name, p.shape, p.dtype, _cloned(p.produce)) for p in reader_plans(reader, dtype)]


def _cloned(produce: Any) -> Any:
    return lambda: produce().clone()


@pytest.mark.parametrize("dtype", [None, torch.float16, torch.bfloat16], ids=["kept", "float16", "bfloat16"])
@pytest.mark.usefixtures("small_chunks")
def test_views_of_a_file_are_copied_in_chunks_to_the_same_bytes(
    tmp_path: Path, source_file: Path, dtype: torch.dtype | None
) -> None:
    with open_checkpoint(source_file) as reader:
        copied = write_safetensors(tmp_path / "copied.safetensors", reader_plans(reader, dtype))
        made = write_safetensors(tmp_path / "made.safetensors", in_memory_plans(reader, dtype))
    assert (copied.copied_tensors, made.copied_tensors) == (3, 0)
    assert (tmp_path / "copied.safetensors").read_bytes() == (tmp_path / "made.safetensors").read_bytes()
    assert (
        copied.sha256
        == made.sha256
        == hashlib.sha256((tmp_path / "made.safetensors").read_bytes()).hexdigest()
    )


@pytest.mark.usefixtures("small_chunks")
def test_a_copied_tensor_is_written_without_the_kernel_copy_too(
    tmp_path: Path, source_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_checkpoint(source_file) as reader:
        expected = write_safetensors(tmp_path / "kernel.safetensors", reader_plans(reader)).sha256

        def cross_device(*_: Any) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", cross_device)
        assert write_safetensors(tmp_path / "fallback.safetensors", reader_plans(reader)).sha256 == expected
        monkeypatch.delattr(os, "copy_file_range")
        assert write_safetensors(tmp_path / "none.safetensors", reader_plans(reader)).sha256 == expected


@pytest.mark.usefixtures("small_chunks")
def test_nonfinite_values_of_a_copied_tensor_are_counted_over_every_chunk(tmp_path: Path) -> None:
    values = torch.ones(40)
    values[[0, 17, 39]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    save_file({"x": values}, tmp_path / "bad.safetensors")
    (tmp_path / "out").mkdir()
    with open_checkpoint(tmp_path / "bad.safetensors") as reader:
        plan = TensorPlan("x", (40,), torch.float32, lambda: reader.get("x"))
        with pytest.raises(TensorValueError, match="holds 3 NaN/Inf values") as caught:
            write_safetensors(tmp_path / "out" / "x.safetensors", [plan])
        assert caught.value.tensor == "x"
        assert_nothing_written(tmp_path / "out")
        (tmp_path / "allowed").mkdir()
        write_safetensors(tmp_path / "allowed" / "x.safetensors", [plan], allow_nonfinite=True)
    assert torch.equal(bits(load_file(tmp_path / "allowed" / "x.safetensors")["x"]), bits(values))


@pytest.mark.usefixtures("small_chunks")
def test_a_chunked_cast_refuses_a_value_the_target_cannot_hold(tmp_path: Path) -> None:
    values = torch.zeros(40)
    values[33] = 70000.0  # in the third chunk: fits float32, not float16
    save_file({"x": values}, tmp_path / "wide.safetensors")
    (tmp_path / "out").mkdir()
    with open_checkpoint(tmp_path / "wide.safetensors") as reader:
        plan = TensorPlan("x", (40,), torch.float16, lambda: reader.get("x"))
        with pytest.raises(TensorValueError, match=r"value 70000 .* does not fit torch.float16"):
            write_safetensors(tmp_path / "out" / "x.safetensors", [plan])
    assert_nothing_written(tmp_path / "out")


def test_the_summary_says_where_the_time_went(tmp_path: Path, source_file: Path) -> None:
    with open_checkpoint(source_file) as reader:
        summary = write_safetensors(tmp_path / "out.safetensors", reader_plans(reader))
    assert set(summary.seconds) == {*STAGES, "wall"}
    assert all(seconds >= 0 for seconds in summary.seconds.values())


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "default"])
def test_a_durable_write_is_flushed_while_writing_and_fsynced(
    tmp_path: Path, source_file: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    monkeypatch.setattr("converters._checkpoints.output_stream.FLUSH_EVERY", 100)
    synced: list[int] = []
    sync, fsync = output_stream._SYNC_DATA, os.fsync
    monkeypatch.setattr(output_stream, "_SYNC_DATA", lambda fd: synced.append(fd) or sync(fd))
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    with open_checkpoint(source_file) as reader:
        first = write_safetensors(tmp_path / "out.safetensors", reader_plans(reader), durable=durable)
    assert bool(synced) == durable, "durable writes sync while writing and at the end; others never"
    with open_checkpoint(source_file) as reader:
        other = write_safetensors(tmp_path / "other.safetensors", reader_plans(reader), durable=not durable)
    assert first.sha256 == other.sha256  # the same bytes either way
