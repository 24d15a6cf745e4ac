"""Tracing, alignment and coverage on tiny models written here, and on a tiny diffusers UNet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from converters._tracing import (
    KeyMap,
    MapEntry,
    Overrides,
    Reshape,
    Split,
    Trace,
    build_key_map,
    state_shapes,
    trace,
    trace_key_map,
)
from converters._tracing.report import MARKER
from zoo.errors import CoverageError

Run = Callable[[nn.Module], object]


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Seed torch for each test and give the global RNG state back afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def runs_on(*shape: int, device: str = "cpu") -> Run:
    """A ``run`` that calls the model on one zero tensor of ``shape``."""
    return lambda model: model(torch.zeros(*shape, device=device))


def load_through(key_map: KeyMap, source: nn.Module, target: nn.Module) -> None:
    """Fill ``target`` from ``source`` through the key map, strictly."""
    tensors = source.state_dict()
    produced = {key: key_map.apply(tensors.__getitem__, key) for key in key_map.target_keys()}
    target.load_state_dict(produced, strict=True)


def marked_row(error: pytest.ExceptionInfo[CoverageError]) -> str:
    """The row of the side-by-side report marked as the divergence."""
    return next(line for line in error.value.message.splitlines() if line.startswith(MARKER))


# --- tiny models ------------------------------------------------------------------------------


class MLP(nn.Module):
    """Upstream-style naming."""

    def __init__(self, bias: bool = True, hidden: int = 8, extra_norm: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(4, hidden, bias=bias)
        self.norm = nn.LayerNorm(hidden)
        self.extra = nn.LayerNorm(hidden) if extra_norm else nn.Identity()
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extra(self.norm(self.embed(x))))


class ChainMLP(nn.Module):
    """The same computation with our naming."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(4, hidden), nn.LayerNorm(hidden))
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(x))


class NormFirst(ChainMLP):
    """ChainMLP's tensors, but its norm runs before its first linear: a reordered trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear, norm = self.blocks
        gate = norm(torch.ones(x.shape[0], 8, device=x.device))
        return self.out(linear(x) * gate)


class ConvHead(nn.Module):
    """A 1x1 conv over channels, as SD 1.5's ``proj_in``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(4, 8, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_in(x)


class LinearHead(nn.Module):
    """The same projection as a Linear over channels-last pixels, as SDXL's ``proj_in``."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FusedAttention(nn.Module):
    """OpenCLIP-style attention: a fused ``in_proj_weight``; ``out_proj`` is used functionally."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


class SplitAttentionBlock(nn.Module):
    """Separate q, k, v and output projections."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (p(x).view(batch, length, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, dim)
        return self.out(mixed)


class SplitAttention(nn.Module):
    """Our naming around :class:`SplitAttentionBlock`."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = SplitAttentionBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class TextEmbeddings(nn.Module):
    """CLIP-style embeddings: a persistent ``position_ids`` buffer held by the parent module."""

    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Embedding(10, 8)
        self.position = nn.Embedding(5, 8)
        self.position_ids: torch.Tensor
        self.register_buffer("position_ids", torch.arange(5)[None])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token(tokens) + self.position(self.position_ids[:, : tokens.shape[1]])


class OurEmbeddings(nn.Module):
    """The same embeddings; positions computed on the fly, a non-persistent buffer for scale."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(10, 8)
        self.positions = nn.Embedding(5, 8)
        self.register_buffer("scale", torch.ones(1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)[None]
        return self.tokens(tokens) + self.positions(positions) * self.scale


class FunctionalProjection(nn.Module):
    """A child Linear whose weight the parent passes to ``F.linear``: it never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(x), self.proj.weight)


class CalledProjection(nn.Module):
    """The same computation with the projection called as a module."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.projection = nn.Linear(8, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.ln(x))


class Shared(nn.Module):
    """A block called twice, a root parameter and an unused module."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.block = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.block(x)) * self.scale


class TiedLM(nn.Module):
    """An output projection that reuses the embedding matrix functionally (one stored tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(self.embed(tokens), self.embed.weight)


class UntiedLM(nn.Module):
    """The same model with its own output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(10, 8)
        self.out = nn.Linear(8, 10, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.tokens(tokens))


# --- trace ------------------------------------------------------------------------------------


def test_trace_records_first_call_order_once() -> None:
    result = trace(Shared(), runs_on(1, 4))
    assert [module.name for module in result.modules] == ["", "block"]
    assert result.keys() == ("scale", "block.weight", "block.bias")
    assert result.not_run_keys() == ("unused.weight", "unused.bias")


def test_trace_lists_params_then_persistent_buffers_only() -> None:
    traced = trace(TextEmbeddings(), lambda model: model(torch.zeros(1, 3, dtype=torch.long)))
    assert traced.keys() == ("position_ids", "token.weight", "position.weight")
    assert traced.modules[0].tensors[0].shape == (1, 5)
    ours = trace(OurEmbeddings(), lambda model: model(torch.zeros(1, 3, dtype=torch.long)))
    assert ours.keys() == ("tokens.weight", "positions.weight")


def test_trace_removes_hooks_even_when_run_fails() -> None:
    model = MLP()

    def boom(module: nn.Module) -> object:
        module(torch.zeros(1, 4))
        raise RuntimeError("example inputs are wrong")

    with pytest.raises(RuntimeError, match="example inputs"):
        trace(model, boom)
    assert all(not module._forward_pre_hooks for module in model.modules())
    trace(model, runs_on(1, 4))
    assert all(not module._forward_pre_hooks for module in model.modules())


def test_trace_on_meta_needs_no_weights() -> None:
    with torch.device("meta"):
        model = MLP(hidden=4096)
    traced = trace(model, runs_on(2, 4, device="meta"))
    assert traced.modules[0].tensors[0].shape == (4096, 4)
    assert set(traced.keys()) == set(state_shapes(model))


def test_trace_runs_without_grad() -> None:
    seen: list[bool] = []
    trace(MLP(), lambda model: seen.append(torch.is_grad_enabled()))
    assert seen == [False]


# --- alignment --------------------------------------------------------------------------------


def test_identical_structure_with_different_names() -> None:
    source, target = MLP(), ChainMLP()
    key_map = trace_key_map(source, target, runs_on(1, 4), runs_on(1, 4))
    assert {entry.sources[0]: entry.targets[0] for entry in key_map.entries} == {
        "embed.weight": "blocks.0.weight",
        "embed.bias": "blocks.0.bias",
        "norm.weight": "blocks.1.weight",
        "norm.bias": "blocks.1.bias",
        "head.weight": "out.weight",
        "head.bias": "out.bias",
    }
    assert {entry.transform.kind for entry in key_map.entries} == {"identity"}
    load_through(key_map, source, target)
    x = torch.randn(3, 4)
    torch.testing.assert_close(target(x), source(x), rtol=1e-5, atol=0)
    assert key_map.coverage is not None and key_map.coverage.aligned_modules == 3


def test_linear_and_1x1_conv_pair_through_reshape() -> None:
    source, target = ConvHead(), LinearHead()
    key_map = trace_key_map(source, target, runs_on(1, 4, 2, 2), runs_on(1, 4, 2, 2))
    entry = next(entry for entry in key_map.entries if entry.targets == ("projection.weight",))
    assert entry.sources == ("proj_in.weight",) and entry.transform == Reshape((8, 4))
    load_through(key_map, source, target)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(target(x), source(x), rtol=1e-5, atol=1e-6)
    back = trace_key_map(target, source, runs_on(1, 4, 2, 2), runs_on(1, 4, 2, 2))
    assert Reshape((8, 4, 1, 1)) in {entry.transform for entry in back.entries}


def qkv_overrides(prefix: str = "attn.", out: str = "attention.") -> Overrides:
    """Split the fused projection; pair ``out_proj``, which MultiheadAttention never calls."""
    qkv = tuple(f"{out}{name}" for name in "qkv")
    return Overrides(
        pairs=(
            MapEntry((f"{prefix}in_proj_weight",), tuple(f"{key}.weight" for key in qkv), Split(0)),
            MapEntry((f"{prefix}in_proj_bias",), tuple(f"{key}.bias" for key in qkv), Split(0)),
            MapEntry((f"{prefix}out_proj.weight",), (f"{out}out.weight",)),
            MapEntry((f"{prefix}out_proj.bias",), (f"{out}out.bias",)),
        )
    )


def test_fused_qkv_split_by_override() -> None:
    source, target = FusedAttention(), SplitAttention()
    run = runs_on(1, 3, 8)
    key_map = trace_key_map(source, target, run, run, qkv_overrides())
    fused = source.attn.in_proj_weight.detach()
    get = source.state_dict().__getitem__
    for index, name in enumerate("qkv"):
        expected = fused[8 * index : 8 * (index + 1)]
        assert torch.equal(key_map.apply(get, f"attention.{name}.weight"), expected)
    load_through(key_map, source, target)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(target(x), source(x), rtol=1e-5, atol=1e-6)
    assert key_map.coverage is not None and key_map.coverage.transforms == {"identity": 2, "split": 2}


def test_ignored_buffer_is_reported_with_its_reason() -> None:
    reason = "recomputed from the sequence length"
    run: Run = lambda model: model(torch.zeros(1, 3, dtype=torch.long))  # noqa: E731
    source, target = TextEmbeddings(), OurEmbeddings()
    key_map = trace_key_map(source, target, run, run, Overrides(ignore_source={"*position_ids": reason}))
    coverage = key_map.coverage
    assert coverage is not None
    assert coverage.ignored_source == {"position_ids": reason}
    assert f"ignored source position_ids: {reason}" in coverage.summary()
    assert "position_ids" not in key_map.source_keys()
    assert coverage.unused_overrides == ()
    with pytest.raises(CoverageError) as error:
        trace_key_map(source, target, run, run)
    assert "position_ids" in error.value.message


def test_override_pair_for_a_module_that_never_runs() -> None:
    source, target = FunctionalProjection(), CalledProjection()
    run = runs_on(2, 8)
    with pytest.raises(CoverageError) as error:
        trace_key_map(source, target, run, run)
    assert "proj.weight  (module never ran)" in error.value.message
    assert "projection.weight" in error.value.message
    pair = MapEntry(("proj.weight",), ("projection.weight",))
    key_map = trace_key_map(source, target, run, run, Overrides(pairs=(pair,)))
    assert pair in key_map.entries
    load_through(key_map, source, target)
    x = torch.randn(2, 8)
    torch.testing.assert_close(target(x), source(x), rtol=1e-5, atol=0)


class OneRunsOneDoesNot(nn.Module):
    """Two Linear layers; only the one named ``runs`` is called as a module."""

    def __init__(self, runs: str) -> None:
        super().__init__()
        self.runs = runs
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        called, functional = (self.a, self.b) if self.runs == "a" else (self.b, self.a)
        return F.linear(called(x), functional.weight, functional.bias)


def test_overrides_claim_keys_on_their_own_side() -> None:
    source, target = OneRunsOneDoesNot(runs="a"), OneRunsOneDoesNot(runs="b")
    pairs = tuple(MapEntry((f"b.{name}",), (f"a.{name}",)) for name in ("weight", "bias"))
    key_map = trace_key_map(source, target, runs_on(1, 4), runs_on(1, 4), Overrides(pairs=pairs))
    assert {entry.sources[0]: entry.targets[0] for entry in key_map.entries} == {
        "a.weight": "b.weight",
        "a.bias": "b.bias",
        "b.weight": "a.weight",
        "b.bias": "a.bias",
    }


def test_stale_override_is_listed() -> None:
    overrides = Overrides(ignore_source={"*.position_ids": "not in this model"})
    key_map = trace_key_map(MLP(), ChainMLP(), runs_on(1, 4), runs_on(1, 4), overrides)
    assert key_map.coverage is not None
    assert key_map.coverage.unused_overrides == ("ignore_source *.position_ids",)


def test_tied_source_needs_a_declared_reuse() -> None:
    source, target = TiedLM(), UntiedLM()
    run: Run = lambda model: model(torch.zeros(1, 3, dtype=torch.long))  # noqa: E731
    pairs = (MapEntry(("embed.weight",), ("tokens.weight",)), MapEntry(("embed.weight",), ("out.weight",)))
    with pytest.raises(CoverageError, match=r"'embed\.weight' is used 2 times"):
        trace_key_map(source, target, run, run, Overrides(pairs=pairs))
    reuse = {"embed.weight": "upstream ties the output projection to the embedding"}
    key_map = trace_key_map(source, target, run, run, Overrides(pairs=pairs, reuse_source=reuse))
    assert key_map.coverage is not None and key_map.coverage.reused_source == reuse
    load_through(key_map, source, target)
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(target(tokens), source(tokens), rtol=1e-5, atol=0)


# --- coverage failures ------------------------------------------------------------------------


def fail(source: nn.Module, target: nn.Module, overrides: Overrides | None = None) -> pytest.ExceptionInfo:
    """Build a key map that must fail, and return the error."""
    with pytest.raises(CoverageError) as error:
        trace_key_map(source, target, runs_on(1, 4), runs_on(1, 4), overrides)
    return error


def test_missing_target_tensor() -> None:
    error = fail(MLP(bias=False), ChainMLP())
    row = marked_row(error)
    assert "embed  Linear  [8x4]" in row and "blocks.0  Linear  [8x4, 8]" in row
    assert row.startswith(f"{MARKER} 0 ")
    report = error.value.message
    assert "unproduced target tensors (6):\n  blocks.0.weight  (traced at #0, not aligned)" in report
    assert error.value.hint and error.value.tensor == "embed.weight"


def test_unused_source_tensor() -> None:
    error = fail(MLP(extra_norm=True), ChainMLP())
    row = marked_row(error)
    assert "extra  LayerNorm" in row and "out  Linear" in row
    assert "source 'extra' has no counterpart here" in error.value.message
    assert "unmapped source tensors (4):\n  extra.weight" in error.value.message


def test_shape_mismatch() -> None:
    error = fail(MLP(hidden=8), ChainMLP(hidden=9))
    row = marked_row(error)
    assert "embed  Linear  [8x4, 8]" in row and "blocks.0  Linear  [9x4, 9]" in row
    assert "tensor shapes differ" in error.value.message


def test_reordered_module() -> None:
    error = fail(MLP(), NormFirst())
    row = marked_row(error)
    assert "embed  Linear" in row and "blocks.1  LayerNorm" in row
    assert "look swapped" in error.value.message


def test_report_shows_context_rows_and_both_key_lists() -> None:
    report = fail(MLP(extra_norm=True), ChainMLP()).value.message
    table = report[report.index("  #  source") :].split("\n\n")[0].splitlines()
    assert [line.split()[0 if i else 1] for i, line in enumerate(table[1:], start=1)] == ["0", "1", ">>", "3"]
    assert "(end of trace)" in table[-1]


def test_failure_outside_the_traced_modules() -> None:
    source, target = FunctionalProjection(), CalledProjection()
    pair = MapEntry(("proj.weight",), ("projection.weight",))
    with pytest.raises(CoverageError) as error:
        trace_key_map(source, target, runs_on(1, 8), runs_on(1, 8), Overrides(pairs=(pair, pair)))
    report = error.value.message
    assert "target 'projection.weight' is produced 2 times" in report
    assert "the traces agree over all 1 modules" in report and MARKER not in report


def test_override_with_wrong_split_or_unknown_key() -> None:
    with pytest.raises(ValueError, match="identity takes 1 source"):
        MapEntry(("attn.in_proj_weight",), ("attention.q.weight", "attention.k.weight"))
    wrong_split = qkv_overrides()
    entries = list(wrong_split.pairs)
    entries[0] = MapEntry(entries[0].sources, entries[0].targets, Split(1))
    run = runs_on(1, 3, 8)
    with pytest.raises(CoverageError, match=r"split gives shape \(24, 8\)|cannot split"):
        trace_key_map(FusedAttention(), SplitAttention(), run, run, Overrides(pairs=tuple(entries)))
    entries[0] = MapEntry(("attn.in_proj_weights",), wrong_split.pairs[0].targets, Split(0))
    with pytest.raises(CoverageError, match=r"'attn\.in_proj_weights' .* not a source state-dict key"):
        trace_key_map(FusedAttention(), SplitAttention(), run, run, Overrides(pairs=tuple(entries)))


# --- a real diffusers model on meta -----------------------------------------------------------


def tiny_unet_trace() -> tuple[Trace, dict[str, tuple[int, ...]], float]:
    """A tiny SD-style UNet built and traced on ``meta``; returns the trace, shapes and seconds."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    start = time.perf_counter()
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
    sample, context = torch.zeros(2, 4, 8, 8, device="meta"), torch.zeros(2, 7, 32, device="meta")
    timestep = torch.tensor(10, device="meta")
    traced = trace(unet, lambda model: model(sample, timestep, context))
    return traced, state_shapes(unet), time.perf_counter() - start


def test_meta_trace_of_a_diffusers_unet() -> None:
    traced, shapes, seconds = tiny_unet_trace()
    keys = traced.keys()
    print(
        f"\ntiny UNet2DConditionModel on meta: {len(traced.modules)} modules, {len(keys)} tensors traced, "
        f"{len(traced.not_run)} never ran, build + trace {seconds:.3f} s"
    )
    assert len(keys) == len(set(keys))
    assert set(keys) <= set(shapes)
    assert set(keys) | set(traced.not_run_keys()) == set(shapes)
    assert traced.modules[0].name == "time_embedding.linear_1"
    assert traced.modules[-1].name == "conv_out"
    assert all(
        key_shape == shapes[module.key(tensor.local_name)]
        for module in traced.modules
        for tensor in module.tensors
        for key_shape in [tensor.shape]
    )


def test_unet_maps_onto_itself() -> None:
    traced, shapes, _ = tiny_unet_trace()
    key_map = build_key_map(traced, traced, shapes, shapes)
    assert all(entry.sources == entry.targets for entry in key_map.entries)
    assert key_map.coverage is not None and key_map.coverage.produced_targets == len(shapes)
