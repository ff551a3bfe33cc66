"""Structural intrinsics: steps that work on partial data and return IR instead of waiting.

`%fold`/`%map` instantiate one call per element at once, whether or not the elements are known
yet (so every iteration's independent calls dispatch together); `%getitem` on a pack projects one
component without waiting for the others; `%append` builds a new pack around a pending element.
These are what make a plain `for` loop over LLM calls run in parallel. Each is a delta (or, for
`%getitem`, a projection) and says so through `ev.fired`.
"""

from __future__ import annotations

import io
import operator
from typing import Any

from .graph import (
    DELTA,
    ITERATOR_KINDS,
    NOT_READY,
    PENDING,
    PROJECT,
    CallNode,
    Cell,
    ErrorVal,
    PackVal,
    Reducer,
    demand,
)
from .lazy import LazySeq, truthy
from .stepkit import Intrinsic, church, count_mismatch, done, elements, emit_calls

__all__ = ["STRUCTURAL_INTRINSICS"]


# ------------------------------------------------------------------------------- structural ones
def _fold(ev: Reducer, node: CallNode) -> None:
    """`for x in xs` without early exit: s1 = step(s0, x0); s2 = step(s1, x1); ... all at once."""
    xs, s0, step = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # a stream: fold the head now, the tail later
        ev.fired = DELTA
        head, tail = v.items
        s1 = Cell()
        io_mid = Cell() if node.io_in is not None else None
        base = node.inner()
        ev.push_many([CallNode(step, [s0, head], s1, node.io_in, io_mid, node.site, node.sub(0, base), node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, s1, step], node.out, io_mid, node.io_out,
                                node.site, node.sub(1, base), node.origin)])
        node.io_out = None
        return
    if v.__class__ is LazySeq and v.lazy and v.full is None and node.io_in is not None:
        _fold_lazy(ev, node, v)
        return
    items = elements(ev, node, xs)
    if items is None:
        return
    ev.fired = DELTA
    if not items:
        ev.alias(node.out, s0)
        ev.pass_io(node)
        return
    final = Cell()
    io0 = node.io_in
    io_final = Cell() if io0 is not None else None

    base = node.inner()
    bp = base[2]

    def nodes() -> Any:
        cur, io, last = s0, io0, len(items) - 1
        site, origin = node.site, node.origin
        for i, x in enumerate(items):
            nxt = final if i == last else Cell()
            io_next = None if io is None else (io_final if i == last else Cell())
            # iteration i's frame (CallNode.sub, written out: this loop runs once per element)
            yield CallNode(step, [cur, x], nxt, io, io_next, site, (base, i, hash((bp, i))), origin)
            cur, io = nxt, io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_final)
        node.io_out = None
    ev.alias(node.out, final)


def _fold_lazy(ev: Reducer, node: CallNode, gen: LazySeq) -> None:
    """`for x in map(f, xs)` / a filter / a generator expression, without early exit: every element
    and every iteration at once, as for a list, but with the print token going element 0, body 0,
    element 1, body 1, ... as Python's lazy iteration prints. A filtered-out element's iteration
    passes the state on (`%step_if`)."""
    s0, step = node.args[1:]
    items = elements(ev, node, gen.xs)
    if items is None:
        return
    ev.fired = DELTA
    base = node.inner()
    io = node.io_in
    cur = s0
    nodes = []
    for i, x in enumerate(items):
        elem, io_mid, io_next, nxt = Cell(), Cell(), Cell(), Cell()
        at = node.sub(i, base)          # iteration i; its element is evaluated first, inside it
        nodes.append(CallNode(gen.fn, [x], elem, io, io_mid, gen.site, (at, -1, hash((gen.path, i))), gen.origin))
        if gen.op == "map":
            nodes.append(CallNode(step, [cur, elem], nxt, io_mid, io_next, node.site, at, node.origin))
        else:
            nodes.append(CallNode(Cell(_STEP_IF), [Cell(gen.op), elem, x, cur, step], nxt, io_mid, io_next, node.site,
                                  at, node.origin))
        cur, io = nxt, io_next
    ev.emit_lazily(iter(nodes))
    ev.alias(node.io_out, io)
    node.io_out = None
    ev.alias(node.out, cur)


def _step_if(ev: Reducer, node: CallNode) -> None:
    """One iteration of a loop over a filtered lazy sequence: the body if the element is kept, else
    the state (and the print token) pass through."""
    op, elem, x, cur, step = node.args
    if op.val == "filter":
        flag_cell, value = elem, x
    else:                                             # mapfilter: the element's call gave (keep, value)
        pair = demand(ev, node, elem)
        if pair is NOT_READY:
            return
        flag_cell, value = pair.items
    flag = demand(ev, node, flag_cell)
    if flag is NOT_READY:
        return
    if not truthy(flag):
        ev.fired = DELTA
        ev.pass_io(node)
        ev.alias(node.out, cur)
        return
    ev.push(CallNode(step, [cur, value], node.out, node.io_in, node.io_out, node.site, node.frame, node.origin))
    node.io_out = None


def _map(ev: Reducer, node: CallNode) -> None:
    xs, fn = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # map a stream into a stream, chunk by chunk
        ev.fired = DELTA
        head, tail = v.items
        y, rest = Cell(), Cell()
        io_mid = Cell() if node.io_in is not None else None
        base = node.inner()
        ev.push_many([CallNode(fn, [head], y, node.io_in, io_mid, node.site, node.sub(0, base), node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, fn], rest, io_mid, node.io_out, node.site,
                                node.sub(1, base), node.origin)])
        node.io_out = None
        ev.bind(node.out, PackVal((y, rest), "cons"))
        return
    _map_then(ev, node, None)


def _mapfilter(ev: Reducer, node: CallNode) -> None:
    """[f(x) for x in xs if p(x)]: each call returns (keep, value); the list waits only on the flags."""
    _map_then(ev, node, _KEEP)


def _flatmap(ev: Reducer, node: CallNode) -> None:
    """Nested generators: each call returns a list; the result is their concatenation."""
    _map_then(ev, node, _CONCAT)


def _map_then(ev: Reducer, node: CallNode, then: Intrinsic | None) -> None:
    """One call of fn per element, all at once; then (optionally) a structural step on the results."""
    xs, fn = node.args
    items = elements(ev, node, xs)
    if items is None:
        return
    ev.fired = DELTA
    results = PackVal(tuple(emit_calls(ev, node, fn, [[x] for x in items])), "list")
    if then is None:
        ev.bind(node.out, results)
    else:
        _chain(ev, node, then, results)


def _filter(ev: Reducer, node: CallNode) -> None:
    """`filter(f, xs)` of an epic function, consumed whole: every f(x) at once, then the kept xs."""
    xs, fn = node.args
    items = elements(ev, node, xs)
    if items is None:
        return
    ev.fired = DELTA
    flags = emit_calls(ev, node, fn, [[x] for x in items])
    pairs = PackVal(tuple(Cell(PackVal((f, x), "tuple")) for f, x in zip(flags, items, strict=True)), "list")
    _chain(ev, node, _KEEP, pairs)


def _chain(ev: Reducer, node: CallNode, op: Intrinsic, arg: Any) -> None:
    """Continue with another structural step on a pack we just built."""
    ev.push(CallNode(Cell(op), [Cell(arg), Cell(_Progress())], node.out, None, None, node.site, node.frame,
                      node.origin))


class _Progress:
    """How far a chained step got through its pack before it parked: it resumes there when woken,
    so waiting on n elements one after another costs O(n), not O(n^2)."""

    __slots__ = ("i", "out")

    def __init__(self) -> None:
        self.i = 0
        self.out: list[Cell] = []


def _keep(ev: Reducer, node: CallNode) -> None:
    pairs, st = node.args[0].val.items, node.args[1].val
    while st.i < len(pairs):
        pair = demand(ev, node, pairs[st.i])
        if pair is NOT_READY:
            return
        flag_cell, val_cell = pair.items
        flag = demand(ev, node, flag_cell)
        if flag is NOT_READY:
            return
        if truthy(flag):
            st.out.append(val_cell)
        st.i += 1
    done(ev, node, PackVal(tuple(st.out), "list"))


def _concat(ev: Reducer, node: CallNode) -> None:
    parts, st = node.args[0].val.items, node.args[1].val
    while st.i < len(parts):
        got = elements(ev, node, parts[st.i])
        if got is None:
            return
        st.out += got
        st.i += 1
    done(ev, node, PackVal(tuple(st.out), "list"))


def _as_list_kind(v: Any) -> str:
    """A stream is a list whose tail is still coming."""
    return "list" if isinstance(v, list) or getattr(v, "kind", "") in ("list", "cons") else "tuple"


def _append(ev: Reducer, node: CallNode) -> None:
    """`xs.append(v)` (a rebinding): a new list around a possibly pending element."""
    xs, item = node.args
    items = elements(ev, node, xs)
    if items is None:
        return
    done(ev, node, PackVal((*items, item), "list"))


def _extend(ev: Reducer, node: CallNode) -> None:
    xs, ys = node.args
    a = elements(ev, node, xs)
    if a is None:
        return
    b = elements(ev, node, ys)
    if b is None:
        return
    done(ev, node, PackVal((*a, *b), "list"))


def _add(ev: Reducer, node: CallNode) -> None:
    """`a + b`: list/tuple concatenation keeps pending elements pending; otherwise a delta."""
    a, b = node.args
    va, ra = ev.whnf(a)
    vb, rb = ev.whnf(b)
    if va.__class__ is PackVal or vb.__class__ is PackVal:
        if va is PENDING or vb is PENDING:
            ev.park(node, ra if va is PENDING else rb)
            return
        if getattr(va, "kind", "") in ITERATOR_KINDS or getattr(vb, "kind", "") in ITERATOR_KINDS:
            ev.fail(node, TypeError(f"unsupported operand type(s) for +: '{_type_name(va)}' and '{_type_name(vb)}'"))
            return
        if isinstance(va, PackVal | list | tuple) and isinstance(vb, PackVal | list | tuple):
            kind = _as_list_kind(va)
            if kind != _as_list_kind(vb):
                ev.fail(node, TypeError(f"can only concatenate {kind} (not \"{_as_list_kind(vb)}\") to {kind}"))
                return
            x = elements(ev, node, a)
            y = elements(ev, node, b) if x is not None else None
            if y is not None:
                done(ev, node, PackVal((*x, *y), kind))
            return
    _ADD_STRICT.apply(ev, node)


def _type_name(v: Any) -> str:
    """The Python type name of a value, packs included (for error messages)."""
    if v.__class__ is PackVal:
        return "list" if v.kind == "cons" else v.kind
    return type(v).__name__


def _getitem(ev: Reducer, node: CallNode) -> None:
    """`xs[i]` on a pack projects the i-th component, pending or not; slices give a sub-pack."""
    obj, idx = node.args
    v, root = ev.whnf(obj)
    if v is PENDING:
        ev.park(node, root)
        return
    if v.__class__ is PackVal and v.kind in ITERATOR_KINDS:
        ev.fail(node, TypeError(f"'{v.kind}' object is not subscriptable"))
        return
    if v.__class__ is PackVal and v.kind != "cons":
        i, iroot = ev.whnf(idx)
        if i is PENDING:
            ev.park(node, iroot)
            return
        if isinstance(i, int | slice):
            try:
                got = v.items[i]
            except IndexError:
                ev.fail(node, IndexError(f"{v.kind} index out of range"))
                return
            except (TypeError, ValueError) as e:     # a zero step, a non-integer bound
                ev.fail(node, e)
                return
            ev.fired = PROJECT
            if isinstance(i, slice):
                ev.bind(node.out, PackVal(got, v.kind))
            else:
                ev.alias(node.out, got)
            return
    _GETITEM_STRICT.apply(ev, node)


def _bool(ev: Reducer, node: CallNode) -> None:
    """A Church boolean from any value; a pack is truthy when non-empty, without waiting on its items."""
    v, root = ev.whnf(node.args[0])
    if v is PENDING:
        ev.park(node, root)
        return
    cls = v.__class__
    if cls is PackVal or cls is LazySeq:
        done(ev, node, church(truthy(v)))
        return
    if cls is ErrorVal:
        ev.poison(node, v)
        return
    _BOOL_STRICT.apply(ev, node)



def _print(ev: Reducer, node: CallNode) -> None:
    """print, ordered by the io token: it runs when its arguments are values and the previous
    print has happened; nothing else waits for it. A print after the failure that stops the run
    (in program order) never happens, as in Python."""
    if ev.stop is not None and ev.stop.after(node.frame, node.site.uid):
        return
    if node.io_in is not None:
        t, troot = ev.whnf(node.io_in)
        if t is PENDING:
            ev.park(node, troot)
            return
    conv = ev.host_args(node)
    if conv is None:
        return
    pos, kw = conv
    try:
        if kw.get("file") is not None:
            print(*pos, **kw)
        else:
            buf = io.StringIO()
            print(*pos, **kw, file=buf)
            ev.write(buf.getvalue())
    except Exception as e:
        ev.fail(node, e)
        return
    done(ev, node, None)


def _unpackable(ev: Reducer, node: CallNode) -> None:
    """`%unpackable(v, n)`, before `a, b = v` in a program that prints: fails as Python's unpack
    fails (in its place in the print token's order, so a print after a bad unpack never happens),
    else lets the token pass. The unpack itself projects without waiting, as before."""
    src, n = node.args
    v = demand(ev, node, src)
    if v is NOT_READY:
        return
    want = n.val
    if v.__class__ is PackVal or v.__class__ is LazySeq or isinstance(v, _SIZED):
        items = elements(ev, node, src)
        if items is None:
            return
        if len(items) != want:
            ev.fail(node, count_mismatch(len(items), want))
            return
    elif not hasattr(v, "__iter__"):
        ev.fail(node, TypeError(f"cannot unpack non-iterable {type(v).__name__} object"))
        return
    done(ev, node, None)                              # a host iterator: left for the unpack to consume


_SIZED = (list, tuple, str, dict, set, frozenset, range, bytes)


def _lines(ev: Reducer, node: CallNode) -> None:
    """`lines(s)`: the complete lines of a string, or of a stream as they complete (a line-by-line
    stream of a token stream: how streaming SoT starts a point's expansion before the skeleton ends)."""
    src = node.args[0]
    buf = node.args[1].val if len(node.args) > 1 else ""
    v = demand(ev, node, src)
    if v is NOT_READY:
        return
    cls = v.__class__
    if cls is PackVal and v.kind == "cons":
        h, hroot = ev.whnf(v.items[0])
        if h is PENDING:
            ev.park(node, hroot)
            return
        parts = (buf + str(h)).split("\n")
        more = Cell()
        ev.push(CallNode(Cell(_LINES), [v.items[1], Cell(parts[-1])], more, None, None, node.site,
                          node.sub(1), node.origin))
        out: Cell = more
        for line in reversed(parts[:-1]):
            out = Cell(PackVal((Cell(line), out), "cons"))
        done(ev, node, out.val) if out is not more else ev.alias(node.out, more)
        return
    if cls is PackVal:                                   # a finished list or tuple of chunks
        text = buf + "".join([str(ev.to_host(c)) for c in v.items])
    elif isinstance(v, str):
        text = buf + v
    else:
        ev.fail(node, TypeError(f"lines() needs a string or a stream, not {type(v).__name__}"))
        return
    done(ev, node, PackVal(tuple(Cell(x) for x in text.splitlines()), "list"))



_ADD_STRICT = Intrinsic("add", operator.add)
_GETITEM_STRICT = Intrinsic("getitem", operator.getitem)
_BOOL_STRICT = Intrinsic("bool", church)
_KEEP = Intrinsic("keep", _keep, structural=True)
_STEP_IF = Intrinsic("step_if", _step_if, structural=True)
_CONCAT = Intrinsic("concat_lists", _concat, structural=True)
_LINES = Intrinsic("lines", _lines, structural=True)

STRUCTURAL_INTRINSICS: dict[str, Intrinsic] = {
    "filter": Intrinsic("filter", _filter, structural=True), "fold": Intrinsic("fold", _fold, structural=True),
    "map": Intrinsic("map", _map, structural=True), "mapfilter": Intrinsic("mapfilter", _mapfilter, structural=True),
    "flatmap": Intrinsic("flatmap", _flatmap, structural=True), "append": Intrinsic("append", _append, structural=True),
    "extend": Intrinsic("extend", _extend, structural=True), "add": Intrinsic("add", _add, structural=True),
    "getitem": Intrinsic("getitem", _getitem, structural=True), "bool": Intrinsic("bool", _bool, structural=True),
    "print": Intrinsic("print", _print, structural=True), "lines": _LINES,
    "unpackable": Intrinsic("unpackable", _unpackable, structural=True),
}
