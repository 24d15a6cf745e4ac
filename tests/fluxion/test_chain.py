"""Chain structure: naming, navigation, editing, structural copies, context."""

from __future__ import annotations

import pytest
import torch

import zoo.fluxion as fl


def test_children_are_named_from_their_class_with_a_counter_when_repeated() -> None:
    model = fl.Chain(fl.Chain(), fl.Chain(), fl.Linear(2, 2))
    assert [name for name, _ in model.named_children()] == ["Chain_1", "Chain_2", "Linear"]
    assert model.Chain_2 is model[1]
    assert isinstance(model.Linear, fl.Linear)


def test_nested_attribute_access_and_layer_paths() -> None:
    model = fl.Chain(fl.Linear(2, 3), fl.Chain(fl.SiLU(), fl.Linear(3, 1)))
    assert model.Chain.Linear is model.layer("Chain.Linear", fl.Linear)
    assert model.layer([1, 1]) is model.Chain.Linear
    with pytest.raises(TypeError, match="not a Conv2d"):
        model.layer("Chain.Linear", fl.Conv2d)


def test_iteration_indexing_and_slicing_share_weights() -> None:
    model = fl.Chain(fl.Linear(2, 3), fl.SiLU(), fl.Linear(3, 1))
    assert len(model) == 3 and list(model)[1] is model[1] and model["SiLU"] is model[1]
    head = model[:2]
    assert isinstance(head, fl.Chain) and len(head) == 2
    assert head[0] is model[0]  # leaves are shared by the slice
    x = torch.randn(4, 2)
    assert torch.equal(head(x), model[1](model[0](x)))


def test_editing_renames_children_and_tracks_parents() -> None:
    model = fl.Chain(fl.Linear(2, 2))
    extra = fl.Linear(2, 2)
    model.append(extra)
    assert [n for n, _ in model.named_children()] == ["Linear_1", "Linear_2"] and extra.parent is model
    model.insert(0, fl.SiLU())
    model.insert_after_type(fl.SiLU, fl.Identity())
    assert [type(m).__name__ for m in model] == ["SiLU", "Identity", "Linear", "Linear"]
    model.remove(extra)
    assert extra.parent is None and [n for n, _ in model.named_children()] == ["SiLU", "Identity", "Linear"]
    popped = model.pop(0)
    assert isinstance(popped, fl.SiLU) and popped.parent is None
    relu = fl.ReLU()
    model.replace(model.Identity, relu)
    assert model[0] is relu and relu.parent is model
    assert bool(fl.Chain())  # an empty chain is not falsy


def test_walk_finds_matches_with_parents_and_can_recurse() -> None:
    inner = fl.Chain(fl.Linear(2, 2))
    model = fl.Chain(fl.Linear(2, 2), inner, fl.Chain(inner.Linear.structural_copy()))
    found = list(model.walk(fl.Linear))
    assert [parent for _, parent in found] == [model, inner, model.Chain_2]
    chains = list(model.walk(fl.Chain))
    assert len(chains) == 2
    assert len(list(model.walk(lambda m, _p: isinstance(m, fl.Chain), recurse=True))) == 2
    assert list(model.layers(fl.Linear)) == [model[0], inner.Linear, inner.Linear]
    assert model.find(fl.Conv2d) is None
    with pytest.raises(ValueError, match="no Conv2d"):
        model.ensure_find(fl.Conv2d)


def test_structural_copy_copies_chains_and_shares_leaves() -> None:
    model = fl.Chain(fl.Linear(2, 2), fl.Chain(fl.Linear(2, 2)))
    copy = model.structural_copy()
    assert copy is not model and copy.Chain is not model.Chain
    assert copy.Chain.parent is copy and model.Chain.parent is model
    assert copy.Linear is model.Linear
    assert copy.Chain.Linear.weight.data_ptr() == model.Chain.Linear.weight.data_ptr()
    copy.append(fl.SiLU())
    assert len(model) == 2  # editing the copy leaves the original


def test_combinators() -> None:
    x = torch.randn(3, 4)
    double = fl.Multiply(2.0)
    assert torch.equal(fl.Sum(fl.Identity(), fl.Identity())(x), 2 * x)
    assert torch.equal(fl.Residual(double)(x), 3 * x)
    assert torch.equal(fl.Passthrough(double)(x), x)
    assert all(torch.equal(o, x) for o in fl.Parallel(fl.Identity(), fl.Identity())(x))
    a, b = fl.Distribute(fl.Multiply(2.0), fl.Multiply(3.0))(x, x)
    assert torch.equal(a, 2 * x) and torch.equal(b, 3 * x)
    assert fl.Concatenate(fl.Identity(), fl.Identity(), dim=1)(x).shape == (3, 8)
    assert torch.equal(fl.Lambda(torch.neg)(x), -x)
    assert torch.equal(fl.Chain(fl.Chunk(2, dim=1), fl.GetArg(1))(x), x[:, 2:])


def test_errors_say_where_in_the_chain_they_happened() -> None:
    model = fl.Chain(fl.Chain(fl.Linear(2, 2)))
    with pytest.raises(RuntimeError) as caught:
        model(torch.randn(1, 3))
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "Chain.Linear" in notes


class Accumulate(fl.Chain):
    """Pushes intermediate values to a context list and sums them at the end."""

    def __init__(self) -> None:
        push = fl.SetContext("acc", "items", callback=lambda items, x: items.append(x))
        super().__init__(
            fl.Passthrough(push), fl.Multiply(2.0), fl.Passthrough(push), fl.UseContext("acc", "items")
        )

    def init_context(self) -> fl.Contexts:
        return {"acc": {"items": []}}


def test_context_is_read_deep_in_the_tree_and_reset_after_each_forward() -> None:
    model = fl.Chain(fl.Chain(fl.Multiply(1.0), fl.UseContext("cond", "shift")))
    model.set_context("cond", {"shift": torch.tensor(5.0)})
    assert model(torch.zeros(1)) == 5.0
    with pytest.raises(KeyError, match="shift"):
        model(torch.zeros(1))  # reset after the forward: nothing leaks into the next one

    accumulate = Accumulate()
    first = accumulate(torch.ones(1))
    assert len(first) == 2
    second = accumulate(torch.ones(1))
    assert len(second) == 2  # the default list was copied fresh, not shared across forwards


def test_context_defaults_follow_changes_of_the_tree() -> None:
    """Which chains give context defaults is cached per tree shape: a chain added, replaced or removed
    after a forward is seen by the next one."""
    model = fl.Chain(fl.Chain(fl.Multiply(1.0)))
    model(torch.ones(1))
    inner: fl.Chain = model[0]  # pyright: ignore[reportAssignmentType]
    inner.append(Accumulate())
    assert len(model(torch.ones(1))) == 2  # the new chain's default list is there
    inner.pop()
    assert torch.equal(model(torch.ones(1)), torch.ones(1))
    inner.append(fl.UseContext("acc", "items"))
    with pytest.raises(KeyError, match="acc"):
        model(torch.ones(1))  # and no longer its defaults


def test_state_dict_keys_are_stable_across_constructions(data_regression) -> None:
    def build() -> fl.Chain:
        return fl.Chain(
            fl.Conv2d(3, 4, 3, padding=1),
            fl.Residual(fl.GroupNorm(2, 4), fl.SiLU(), fl.Conv2d(4, 4, 3, padding=1)),
            fl.Flatten(1),
            fl.Chain(fl.LayerNorm(64), fl.SelfAttention(64, num_heads=2)),
        )

    keys = list(build().state_dict())
    assert keys == list(build().state_dict())
    data_regression.check({"keys": keys})
