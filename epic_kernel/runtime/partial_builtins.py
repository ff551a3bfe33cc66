"""Python builtins that understand partial data: `len`, `list`, `tuple`, `reversed`, `enumerate`,
`zip` (and, from loops.py and callbacks.py, `any`/`all`/`next`, `map`/`filter`, `sorted`/`min`/`max`)
applied to an epic list do not wait for its elements. `STRUCTURAL` maps the builtin's id to its
step, which returns False when the call is not one it handles (a plain host call then)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .graph import DELTA, ITERATOR_KINDS, PENDING, CallNode, Cell, ErrorVal, PackVal, Poison, Reducer
from .lazy import LazySeq
from .loops import CONSUMERS
from .stepkit import elements, emit_calls

__all__ = ["IO_AWARE", "STRUCTURAL"]


# ------------------------------------------------------ Python builtins that understand partial data
def _structural_builtin(fn: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any], bool]:
    """Wrap `fn(ev, node, pack)` so it applies only to a single positional epic-list argument."""

    def apply(ev: Reducer, node: CallNode) -> bool:
        if len(node.args) != 1 or node.site.kwnames:
            return False
        v, root = ev.whnf(node.args[0])
        if v is PENDING:
            ev.park(node, root)
            return True
        if v.__class__ is not PackVal or v.kind == "cons":
            return False
        r = fn(ev, node, v)
        ev.fired = DELTA
        ev.bind(node.out, r)
        return True

    return apply


def _enumerate(ev: Reducer, node: CallNode, v: PackVal) -> PackVal:
    return PackVal(tuple(Cell(PackVal((Cell(i), c), "tuple")) for i, c in enumerate(v.items)), "enumerate")


def _len(ev: Reducer, node: CallNode, v: PackVal) -> int:
    if v.kind in ITERATOR_KINDS:
        raise Poison(ErrorVal(TypeError(f"object of type '{v.kind}' has no len()")))
    return len(v.items)


def _reversed(ev: Reducer, node: CallNode, v: PackVal) -> PackVal:
    if v.kind in ITERATOR_KINDS:
        raise Poison(ErrorVal(TypeError(f"'{v.kind}' object is not reversible")))
    return PackVal(v.items[::-1], "list_reverseiterator" if v.kind == "list" else "reversed")


STRUCTURAL: dict[int, Callable[[Any, Any], bool]] = {
    id(len): _structural_builtin(_len),
    id(list): _structural_builtin(lambda ev, node, v: PackVal(v.items, "list")),
    id(tuple): _structural_builtin(lambda ev, node, v: PackVal(v.items, "tuple")),
    id(reversed): _structural_builtin(_reversed),
    id(enumerate): _structural_builtin(_enumerate),
}


def _zip(ev: Reducer, node: CallNode) -> bool:
    if node.site.kwnames or not node.args:
        return False
    vals = []
    for a in node.args:
        v, root = ev.whnf(a)
        if v is PENDING:
            ev.park(node, root)
            return True
        vals.append(v)
    if not any(v.__class__ is PackVal or v.__class__ is LazySeq for v in vals):
        return False
    cols = []
    for a, v in zip(node.args, vals, strict=True):
        walk = v.__class__ is LazySeq and v.op == "map" and v.full is None
        items = elements(ev, node, v.xs if walk else a)
        if items is None:
            return True
        cols.append((v, items) if walk else items)
    ev.fired = DELTA
    n = min(len(c[1] if isinstance(c, tuple) else c) for c in cols)
    cols = [_pulled(ev, node, c, j, n, cols) if isinstance(c, tuple) else c for j, c in enumerate(cols)]
    rows = tuple(Cell(PackVal(tuple(r), "tuple")) for r in zip(*cols, strict=False))
    ev.bind(node.out, PackVal(rows, "zip"))
    return True


def _pulled(ev: Reducer, node: CallNode, col: tuple, j: int, n: int, cols: list) -> list[Cell]:
    """The elements of a lazy `map(f, xs)` that Python's zip pulls: n rows, and one more when an
    argument to its right is the first to run out (zip asks each argument in turn)."""
    gen, items = col
    lengths = [len(c[1] if isinstance(c, tuple) else c) for c in cols]
    extra = 1 if len(items) > n and j < lengths.index(n) else 0
    return emit_calls(ev, node, gen.fn, [[x] for x in items[:n + extra]])[:n]


STRUCTURAL[id(zip)] = _zip
STRUCTURAL.update(CONSUMERS)

# builtins whose structural form threads the print token itself (callbacks they run may print)
IO_AWARE: set[int] = {id(any), id(all), id(next)}


