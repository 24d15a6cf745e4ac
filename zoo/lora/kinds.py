"""The kinds of layer update zoo's LoRA format holds, told apart by their tensors' names, and the shape
rules of each (run-time loading and the converters check the same rules).

A layer's tensors are `<layer path>.<role>`; the roles say the kind:

    lora   lora_down.weight, lora_up.weight (+ lora_mid.weight: a Tucker core)
    loha   hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b (+ hada_t1, hada_t2: Tucker cores)
    lokr   lokr_w1 or lokr_w1_a + lokr_w1_b; lokr_w2 or lokr_w2_a + lokr_w2_b (+ lokr_t2)
    full   diff (+ diff_b)
    norm   w_norm (+ b_norm)

and `lora`, `loha`, `lokr` may carry one DoRA magnitude: `dora_scale` (LyCORIS's rule for the scale) or
`lora_magnitude_vector` (peft's), see `zoo.fluxion.adapters.dora`. Shapes are given as tuples, so the
converters check what they will write before writing it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Literal

from zoo.fluxion import LayerOp
from zoo.fluxion.adapters.dora import DoraRule

Kind = Literal["lora", "loha", "lokr", "full", "norm"]
Shapes = Mapping[str, tuple[int, ...]]

ROLES: dict[Kind, tuple[str, ...]] = {
    "lora": ("lora_down.weight", "lora_up.weight", "lora_mid.weight"),
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "lokr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
    "full": ("diff", "diff_b"),
    "norm": ("w_norm", "b_norm"),
}
DORA_ROLES: dict[str, DoraRule] = {"dora_scale": "lycoris", "lora_magnitude_vector": "peft"}
KIND_OF_ROLE: dict[str, Kind] = {role: kind for kind, roles in ROLES.items() for role in roles}
KIND_NAMES: dict[Kind, str] = {"lora": "LoRA", "loha": "LoHa", "lokr": "LoKr", "full": "full", "norm": "norm"}
WEIGHTED_OPS = ("linear", "conv2d")  # what lora, loha, lokr and full updates go on
NORM_OPS = ("layer_norm", "group_norm")


def kind_of(roles: Collection[str]) -> Kind | None:
    """The one kind the roles belong to; None when they name no kind, or several."""
    kinds: set[Kind] = {KIND_OF_ROLE[role] for role in roles if role in KIND_OF_ROLE}
    return kinds.pop() if len(kinds) == 1 else None


def roles_problem(roles: Collection[str]) -> str | None:
    """What is wrong with one layer's set of roles (unknown, mixed kinds, a missing part), or None."""
    unknown = sorted(set(roles) - set(KIND_OF_ROLE) - set(DORA_ROLES))
    if unknown:
        return f"unknown tensor role(s) {', '.join(unknown)}"
    kinds = sorted({KIND_NAMES[KIND_OF_ROLE[role]] for role in roles if role in KIND_OF_ROLE})
    if len(kinds) != 1:
        return f"mixes {' and '.join(kinds)} tensors" if kinds else "has no update tensors"
    kind = kind_of(roles)
    assert kind is not None
    return _missing(kind, set(roles)) or _dora_problem(kind, roles)


def _missing(kind: Kind, roles: set[str]) -> str | None:
    if kind == "lora":
        lacking = _lacks(roles, "lora_down.weight", "lora_up.weight")
        return lacking and f"{lacking}: the down or up half of a LoRA is missing"
    if kind == "loha":
        lacking = _lacks(roles, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        return lacking or _together(roles, "hada_t1", "hada_t2")
    if kind == "lokr":
        lacking = _either(roles, "lokr_w1") or _either(roles, "lokr_w2")
        core = "lokr_t2" in roles and "lokr_w2_a" not in roles
        return lacking or ("has lokr_t2 without lokr_w2_a / lokr_w2_b" if core else None)
    return _lacks(roles, "diff" if kind == "full" else "w_norm")


def _lacks(roles: set[str], *needed: str) -> str | None:
    missing = [role for role in needed if role not in roles]
    return f"lacks {', '.join(missing)}" if missing else None


def _together(roles: set[str], first: str, second: str) -> str | None:
    return None if (first in roles) == (second in roles) else f"has only one of {first}, {second}"


def _either(roles: set[str], whole: str) -> str | None:
    """`whole`, or `whole_a` and `whole_b`: exactly one form."""
    pair = {f"{whole}_a", f"{whole}_b"} & roles
    if (whole in roles) == bool(pair) or len(pair) == 1:
        return (
            f"needs {whole}, or {whole}_a and {whole}_b (has {', '.join(sorted(pair | ({whole} & roles)))})"
        )
    return None


def _dora_problem(kind: Kind, roles: Collection[str]) -> str | None:
    magnitudes = [role for role in roles if role in DORA_ROLES]
    if len(magnitudes) > 1:
        return f"has two DoRA magnitudes ({', '.join(sorted(magnitudes))})"
    if magnitudes and kind not in ("lora", "loha", "lokr"):
        return f"a {KIND_NAMES[kind]} update cannot have a DoRA magnitude"
    return None


# -- shapes -------------------------------------------------------------------------------------------


def shapes_problem(kind: Kind, shapes: Shapes) -> str | None:
    """What is inconsistent in one update's own shapes (before any layer is known), or None."""
    if kind == "lora":
        return _lora_problem(shapes)
    if kind == "loha":
        return _loha_problem(shapes)
    if kind == "lokr":
        return _lokr_problem(shapes)
    if kind == "norm":
        weight, bias = shapes["w_norm"], shapes.get("b_norm")
        if len(weight) != 1 or (bias is not None and bias != weight):
            return f"w_norm {weight} / b_norm {bias}: expected two vectors of one size"
    return None


def _lora_problem(shapes: Shapes) -> str | None:
    down, up, mid = shapes["lora_down.weight"], shapes["lora_up.weight"], shapes.get("lora_mid.weight")
    if len(down) not in (2, 4) or len(up) not in (2, 4):
        return f"down {down} / up {up}: expected 2-D (Linear) or 4-D (Conv2d)"
    if mid is None and down[0] != up[1]:
        return f"rank mismatch: lora_down has rank {down[0]}, lora_up has rank {up[1]}"
    if len(up) == 4 and up[2:] != (1, 1):
        return f"lora_up has a {up[2:]} kernel; only 1×1 is supported"
    if mid is not None and (len(mid) != 4 or mid[:2] != (down[0], up[1]) or len(down) != 4):
        return f"Tucker LoRA: down {down}, mid {mid}, up {up} do not chain (mid is (rank, rank, kh, kw))"
    return None


def _loha_problem(shapes: Shapes) -> str | None:
    halves = [_loha_half(shapes, "1"), _loha_half(shapes, "2")]
    if None in halves or halves[0] != halves[1]:
        return f"LoHa: {_listed(shapes)} do not make two changes of one shape"
    return None


def _loha_half(shapes: Shapes, half: str) -> tuple[int, ...] | None:
    """The shape of one product (`hada_w{half}_a` @ `_b`, through `hada_t{half}`), or None if they do not chain."""
    a, b, core = shapes[f"hada_w{half}_a"], shapes[f"hada_w{half}_b"], shapes.get(f"hada_t{half}")
    if core is None:
        return (a[0], _size(b)) if len(a) == 2 and len(b) >= 2 and a[1] == b[0] else None
    chained = len(core) == 4 and len(a) == len(b) == 2 and core[:2] == (a[0], b[0])
    return (a[1], b[1], *core[2:]) if chained else None


def _lokr_problem(shapes: Shapes) -> str | None:
    if "lokr_w1_a" in shapes and (
        len(shapes["lokr_w1_a"]) != 2 or shapes["lokr_w1_a"][1] != shapes["lokr_w1_b"][0]
    ):
        return f"LoKr: lokr_w1_a {shapes['lokr_w1_a']} and lokr_w1_b {shapes['lokr_w1_b']} do not multiply"
    if "lokr_w1" in shapes and len(shapes["lokr_w1"]) != 2:
        return f"LoKr: lokr_w1 {shapes['lokr_w1']} is not a matrix"
    if "lokr_t2" in shapes:
        t2, a, b = shapes["lokr_t2"], shapes["lokr_w2_a"], shapes["lokr_w2_b"]
        if len(t2) != 4 or t2[:2] != (a[0], b[0]) or len(a) != 2 or len(b) != 2:
            return f"Tucker LoKr: lokr_t2 {t2}, lokr_w2_a {a}, lokr_w2_b {b} do not chain"
    elif "lokr_w2_a" in shapes and shapes["lokr_w2_a"][-1] != shapes["lokr_w2_b"][0]:
        return f"LoKr: lokr_w2_a {shapes['lokr_w2_a']} and lokr_w2_b {shapes['lokr_w2_b']} do not multiply"
    return None


def delta_shape(kind: Kind, shapes: Shapes) -> tuple[int, ...]:
    """The shape of the weight change an update makes (flattened convolutions are (out, in·kh·kw))."""
    if kind == "lora":
        down, up, mid = shapes["lora_down.weight"], shapes["lora_up.weight"], shapes.get("lora_mid.weight")
        return (up[0], down[1], *(down[2:] if mid is None else mid[2:]))
    if kind == "loha":
        change = _loha_half(shapes, "1")
        assert change is not None, "shapes_problem first"
        return change
    if kind == "lokr":
        (a, c), second = _lokr_first(shapes), _lokr_second(shapes)
        return (a * second[0], c * second[1], *second[2:])
    return shapes["diff" if kind == "full" else "w_norm"]


def _lokr_first(shapes: Shapes) -> tuple[int, int]:
    if "lokr_w1" in shapes:
        return shapes["lokr_w1"][0], shapes["lokr_w1"][1]
    return shapes["lokr_w1_a"][0], shapes["lokr_w1_b"][1]


def _lokr_second(shapes: Shapes) -> tuple[int, ...]:
    if "lokr_w2" in shapes:
        return shapes["lokr_w2"]
    if "lokr_t2" in shapes:
        return (shapes["lokr_w2_a"][1], shapes["lokr_w2_b"][1], *shapes["lokr_t2"][2:])
    return (shapes["lokr_w2_a"][0], _size(shapes["lokr_w2_b"]))


def rank_of(kind: Kind, shapes: Shapes) -> int | None:
    """The update's rank; None for updates without one (full, norm, LoKr with two whole factors)."""
    if kind == "lora":
        return shapes["lora_down.weight"][0]
    if kind == "loha":
        return shapes["hada_w1_b"][0]
    low_rank = shapes.get("lokr_w1_b") or shapes.get("lokr_w2_b")
    return low_rank[0] if kind == "lokr" and low_rank else None


def _size(shape: tuple[int, ...]) -> int:
    """Values per row: a flattened convolution factor (rank, in·kh·kw) or (rank, in, kh, kw)."""
    return math.prod(shape[1:])


def _listed(shapes: Shapes) -> str:
    return ", ".join(f"{role} {shape}" for role, shape in sorted(shapes.items()))


# -- fitting a layer ----------------------------------------------------------------------------------


def fit_problem(kind: Kind, shapes: Shapes, op: LayerOp) -> str | None:
    """What keeps an update (in zoo's format, shapes exact) off a layer, or None."""
    wanted = NORM_OPS if kind == "norm" else WEIGHTED_OPS
    if op.kind not in wanted:
        return f"a {KIND_NAMES[kind]} update does not go on a {op.kind} layer"
    if op.groups != 1 or op.dilation != (1, 1):
        return "only convolutions without groups or dilation take updates"
    problem = _lora_fit(shapes, op) if kind == "lora" else _change_fit(kind, shapes, op)
    return problem or _bias_fit(shapes, op) or _magnitude_fit(shapes, op)


def _lora_fit(shapes: Shapes, op: LayerOp) -> str | None:
    mid = shapes.get("lora_mid.weight")
    out, inputs, kernel = op.weight_shape[0], op.weight_shape[1], op.weight_shape[2:]
    rank = shapes["lora_down.weight"][0]
    if op.kind == "linear" and mid is None:
        expected = {"lora_down.weight": (rank, inputs), "lora_up.weight": (out, rank)}
    elif mid is None:
        expected = {"lora_down.weight": (rank, inputs, *kernel), "lora_up.weight": (out, rank, 1, 1)}
    else:
        expected = {"lora_down.weight": (rank, inputs, 1, 1), "lora_mid.weight": (rank, rank, *kernel)}
        expected["lora_up.weight"] = (out, rank, 1, 1)
    if any(shapes.get(role) != shape for role, shape in expected.items()) or set(shapes) - set(
        expected
    ) - set(DORA_ROLES):
        got = ", ".join(f"{role.removesuffix('.weight')} {shape}" for role, shape in sorted(shapes.items()))
        want = ", ".join(
            f"{role.removesuffix('.weight')} {shape}" for role, shape in sorted(expected.items())
        )
        return f"{got} do not fit the layer (expected {want})"
    return None


def _change_fit(kind: Kind, shapes: Shapes, op: LayerOp) -> str | None:
    change, weight = delta_shape(kind, shapes), op.weight_shape
    # LoHa and LoKr factors of a convolution may be flattened to (out, in·kh·kw): reshaped at run time
    flattened = kind in ("loha", "lokr") and len(change) == 2 < len(weight)
    fits = change == weight or (flattened and change == (weight[0], _size(weight)))
    return None if fits else f"a {change} {KIND_NAMES[kind]} change does not fit a {weight} weight"


def _bias_fit(shapes: Shapes, op: LayerOp) -> str | None:
    bias = shapes.get("diff_b") or shapes.get("b_norm")
    if bias is None or bias == op.bias_shape:
        return None
    if op.bias_shape is None:
        return "a bias change for a layer without a bias"
    return f"a {bias} bias change for a {op.bias_shape} bias"


def _magnitude_fit(shapes: Shapes, op: LayerOp) -> str | None:
    if not set(shapes) & set(DORA_ROLES):
        return None
    ones = (1,) * (len(op.weight_shape) - 1)
    allowed = {"dora_scale": [(op.weight_shape[0], *ones), (1, op.weight_shape[1], *ones[1:])]}
    allowed["lora_magnitude_vector"] = [(op.weight_shape[0], *ones)]
    for role, shapes_allowed in allowed.items():
        if role in shapes and shapes[role] not in shapes_allowed:
            return (
                f"{role} {shapes[role]} does not fit a {op.weight_shape} weight (expected {shapes_allowed})"
            )
    return None


__all__ = [
    "DORA_ROLES",
    "KIND_NAMES",
    "KIND_OF_ROLE",
    "ROLES",
    "Kind",
    "Shapes",
    "delta_shape",
    "fit_problem",
    "kind_of",
    "rank_of",
    "roles_problem",
    "shapes_problem",
]
