"""The evaluator's built-in operations (`%add`, `%fold`, `%getitem`, ...), which the translator names.

Two kinds:
- *strict* intrinsics are delta rules: they wait until every argument is a value, then compute a
  host value (`%add`, `%format`, `%dict`, ...);
- *structural* intrinsics work on partial data and return IR: `%fold`/`%map` instantiate one call
  per element at once, whether or not the elements are known yet (so every iteration's independent
  calls dispatch together); `%getitem` on a pack projects one component without waiting for the
  others; `%append` builds a new pack around a pending element. These are what make a plain `for`
  loop over LLM calls run in parallel.

`STRUCTURAL` gives the same partial-data behaviour to a few Python builtins (`len`, `enumerate`,
`zip`, `list`, `tuple`, `reversed`) when their argument is an epic list.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable
from typing import Any

from ..errors import unwrap
from ..lang.ir import Function, Var
from .context import register_builtin
from .graph import (
    DELTA,
    ITERATOR_KINDS,
    NOT_READY,
    PENDING,
    PROJECT,
    CallNode,
    Cell,
    Closure,
    ErrorVal,
    PackVal,
    Poison,
    Template,
    Wait,
    demand,
    template_of,
)
from .lazy import MATERIALIZE_WITH, GenCursor, LazySeq, advance, genexp, materialize, truthy

__all__ = ["FALSE", "INTRINSICS", "IO_AWARE", "STRUCTURAL", "TRUE", "Intrinsic", "church", "make_closure"]

NORMAL, RETURN, BREAK, CONTINUE = 0, 1, 2, 3


class Intrinsic:
    __slots__ = ("name", "fn", "structural")

    def __init__(self, name: str, fn: Callable, structural: bool = False):
        self.name = name
        self.fn = fn
        self.structural = structural

    @property
    def epic_name(self) -> str:
        return f"%{self.name}"

    def __repr__(self) -> str:
        return f"%{self.name}"

    def apply(self, ev: Any, node: Any) -> None:
        if self.structural:
            guarded(self.fn, ev, node)
            return
        conv = ev.host_args(node)
        if conv is None:
            return
        pos, kw = conv
        ev.fired = DELTA
        try:
            r = self.fn(*pos, **kw)
        except Exception as e:
            ev.fail(node, unwrap(e))
            return
        ev.bind(node.out, r)


def guarded(fn: Callable[[Any, Any], Any], ev: Any, node: Any) -> Any:
    """Run a structural step; a value it demanded deep inside a pack is pending (park the node on it)
    or failed (the node's value is that error). Steps demand before they rewrite anything, so a
    parked step simply runs again when the value arrives."""
    try:
        return fn(ev, node)
    except Wait as w:
        ev.park(node, w.cell)
    except Poison as p:
        ev.poison(node, p.err)
    return True


# ---------------------------------------------------------------------------------- Church booleans

def _church(name: str, which: int) -> Closure:
    a, b, io = Var(-1, "a"), Var(-2, "b"), Var(-3, "%io")
    fn = Function(name, (a, b), [], (a, b)[which], io, io)
    fn.param_names = ("a", "b")
    return Closure(Template(fn, {}), (), (), None)


TRUE = _church("true", 0)
FALSE = _church("false", 1)


def church(b: Any) -> Closure:
    return TRUE if b else FALSE


# ------------------------------------------------------------------------------------------ helpers
def _elements(ev: Any, node: Any, cell: Cell) -> list | None:
    """The element cells of an iterable argument, or None after parking/poisoning the node."""
    v, root = ev.whnf(cell)
    if v is PENDING:
        ev.park(node, root)
        return None
    cls = v.__class__
    if cls is PackVal:
        if v.kind != "cons":
            return list(v.items)
        try:                                     # a stream used as a whole: wait for its end
            return ev.stream_cells(v)
        except Wait as w:
            ev.park(node, w.cell)
        except Poison as p:
            ev.poison(node, p.err)
        return None
    if cls is ErrorVal:
        ev.poison(node, v)
        return None
    if cls is LazySeq:                           # a generator consumed whole: evaluate it as a list
        return _elements(ev, node, materialize(ev, v, node))
    if cls is Closure:
        ev.fail(node, TypeError("'function' object is not iterable"))
        return None
    try:
        return [Cell(x) for x in v]
    except Exception as e:                       # not iterable, or a host iterator that raised
        ev.fail(node, unwrap(e))
        return None


def _emit_calls(ev: Any, node: Any, fn: Cell, arglists: list[list[Cell]], site: Any = None) -> list[Cell]:
    """One call of `fn` per argument list, threading the io token through them in order. The nodes
    are created lazily, a chunk per step, so a huge loop never stalls the event loop."""
    outs = [Cell() for _ in arglists]
    io0 = node.io_in
    io_last = None
    if io0 is not None and arglists:
        io_last = Cell()

    base = node.identity()
    site = site or node.site

    def nodes() -> Any:
        io = io0
        last = len(arglists) - 1
        for i, args in enumerate(arglists):
            io_next = None if io is None else (io_last if i == last else Cell())
            yield CallNode(fn, args, outs[i], io, io_next, site, hash((base, i)), node.origin)
            io = io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_last if io_last is not None else node.io_in)
        node.io_out = None
    return outs


def _done(ev: Any, node: Any, value: Any) -> None:
    ev.fired = DELTA
    ev.pass_io(node)
    ev.bind(node.out, value)


# ------------------------------------------------------------------------------- structural ones
def _fold(ev: Any, node: Any) -> None:
    """`for x in xs` without early exit: s1 = step(s0, x0); s2 = step(s1, x1); ... all at once."""
    xs, s0, step = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # a stream: fold the head now, the tail later
        ev.fired = DELTA
        head, tail = v.items
        s1 = Cell()
        io_mid = Cell() if node.io_in is not None else None
        base = node.identity()
        ev.push_many([CallNode(step, [s0, head], s1, node.io_in, io_mid, node.site, hash((base, 0)), node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, s1, step], node.out, io_mid, node.io_out,
                                node.site, hash((base, 1)), node.origin)])
        node.io_out = None
        return
    if v.__class__ is LazySeq and v.lazy and v.full is None and node.io_in is not None:
        _fold_lazy(ev, node, v)
        return
    items = _elements(ev, node, xs)
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

    base = node.identity()

    def nodes() -> Any:
        cur, io, last = s0, io0, len(items) - 1
        for i, x in enumerate(items):
            nxt = final if i == last else Cell()
            io_next = None if io is None else (io_final if i == last else Cell())
            yield CallNode(step, [cur, x], nxt, io, io_next, node.site, hash((base, i)), node.origin)
            cur, io = nxt, io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_final)
        node.io_out = None
    ev.alias(node.out, final)


def _fold_lazy(ev: Any, node: Any, gen: LazySeq) -> None:
    """`for x in map(f, xs)` / a filter / a generator expression, without early exit: every element
    and every iteration at once, as for a list, but with the print token going element 0, body 0,
    element 1, body 1, ... as Python's lazy iteration prints. A filtered-out element's iteration
    passes the state on (`%step_if`)."""
    s0, step = node.args[1:]
    items = _elements(ev, node, gen.xs)
    if items is None:
        return
    ev.fired = DELTA
    base = node.identity()
    io = node.io_in
    cur = s0
    nodes = []
    for i, x in enumerate(items):
        elem, io_mid, io_next, nxt = Cell(), Cell(), Cell(), Cell()
        nodes.append(CallNode(gen.fn, [x], elem, io, io_mid, gen.site, hash((gen.path, i)), gen.origin))
        if gen.op == "map":
            nodes.append(CallNode(step, [cur, elem], nxt, io_mid, io_next, node.site, hash((base, i)), node.origin))
        else:
            nodes.append(CallNode(Cell(_STEP_IF), [Cell(gen.op), elem, x, cur, step], nxt, io_mid, io_next, node.site,
                                  hash((base, i)), node.origin))
        cur, io = nxt, io_next
    ev.emit_lazily(iter(nodes))
    ev.alias(node.io_out, io)
    node.io_out = None
    ev.alias(node.out, cur)


def _step_if(ev: Any, node: Any) -> None:
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
    ev.push(CallNode(step, [cur, value], node.out, node.io_in, node.io_out, node.site, node.path, node.origin))
    node.io_out = None


def _map(ev: Any, node: Any) -> None:
    xs, fn = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # map a stream into a stream, chunk by chunk
        ev.fired = DELTA
        head, tail = v.items
        y, rest = Cell(), Cell()
        io_mid = Cell() if node.io_in is not None else None
        base = node.identity()
        ev.push_many([CallNode(fn, [head], y, node.io_in, io_mid, node.site, hash((base, 0)), node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, fn], rest, io_mid, node.io_out, node.site,
                                hash((base, 1)), node.origin)])
        node.io_out = None
        ev.bind(node.out, PackVal((y, rest), "cons"))
        return
    _map_then(ev, node, None)


def _mapfilter(ev: Any, node: Any) -> None:
    """[f(x) for x in xs if p(x)]: each call returns (keep, value); the list waits only on the flags."""
    _map_then(ev, node, _KEEP)


def _flatmap(ev: Any, node: Any) -> None:
    """Nested generators: each call returns a list; the result is their concatenation."""
    _map_then(ev, node, _CONCAT)


def _map_then(ev: Any, node: Any, then: Intrinsic | None) -> None:
    """One call of fn per element, all at once; then (optionally) a structural step on the results."""
    xs, fn = node.args
    items = _elements(ev, node, xs)
    if items is None:
        return
    ev.fired = DELTA
    results = PackVal(tuple(_emit_calls(ev, node, fn, [[x] for x in items])), "list")
    if then is None:
        ev.bind(node.out, results)
    else:
        _chain(ev, node, then, results)


def _filter(ev: Any, node: Any) -> None:
    """`filter(f, xs)` of an epic function, consumed whole: every f(x) at once, then the kept xs."""
    xs, fn = node.args
    items = _elements(ev, node, xs)
    if items is None:
        return
    ev.fired = DELTA
    flags = _emit_calls(ev, node, fn, [[x] for x in items])
    pairs = PackVal(tuple(Cell(PackVal((f, x), "tuple")) for f, x in zip(flags, items, strict=True)), "list")
    _chain(ev, node, _KEEP, pairs)


def _chain(ev: Any, node: Any, op: Intrinsic, arg: Any) -> None:
    """Continue with another structural step on a pack we just built."""
    ev.push(CallNode(Cell(op), [Cell(arg), Cell(_Progress())], node.out, None, None, node.site, node.path,
                      node.origin))


class _Progress:
    """How far a chained step got through its pack before it parked: it resumes there when woken,
    so waiting on n elements one after another costs O(n), not O(n^2)."""

    __slots__ = ("i", "out")

    def __init__(self) -> None:
        self.i = 0
        self.out: list[Cell] = []


def _keep(ev: Any, node: Any) -> None:
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
    _done(ev, node, PackVal(tuple(st.out), "list"))


def _concat(ev: Any, node: Any) -> None:
    parts, st = node.args[0].val.items, node.args[1].val
    while st.i < len(parts):
        got = _elements(ev, node, parts[st.i])
        if got is None:
            return
        st.out += got
        st.i += 1
    _done(ev, node, PackVal(tuple(st.out), "list"))


def _as_list_kind(v: Any) -> str:
    """A stream is a list whose tail is still coming."""
    return "list" if isinstance(v, list) or getattr(v, "kind", "") in ("list", "cons") else "tuple"


def _append(ev: Any, node: Any) -> None:
    """`xs.append(v)` (a rebinding): a new list around a possibly pending element."""
    xs, item = node.args
    items = _elements(ev, node, xs)
    if items is None:
        return
    _done(ev, node, PackVal((*items, item), "list"))


def _extend(ev: Any, node: Any) -> None:
    xs, ys = node.args
    a = _elements(ev, node, xs)
    if a is None:
        return
    b = _elements(ev, node, ys)
    if b is None:
        return
    _done(ev, node, PackVal((*a, *b), "list"))


def _add(ev: Any, node: Any) -> None:
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
            x = _elements(ev, node, a)
            y = _elements(ev, node, b) if x is not None else None
            if y is not None:
                _done(ev, node, PackVal((*x, *y), kind))
            return
    _ADD_STRICT.apply(ev, node)


def _type_name(v: Any) -> str:
    """The Python type name of a value, packs included (for error messages)."""
    if v.__class__ is PackVal:
        return "list" if v.kind == "cons" else v.kind
    return type(v).__name__


def _getitem(ev: Any, node: Any) -> None:
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


def _bool(ev: Any, node: Any) -> None:
    """A Church boolean from any value; a pack is truthy when non-empty, without waiting on its items."""
    v, root = ev.whnf(node.args[0])
    if v is PENDING:
        ev.park(node, root)
        return
    cls = v.__class__
    if cls is PackVal or cls is LazySeq:
        _done(ev, node, church(truthy(v)))
        return
    if cls is ErrorVal:
        ev.poison(node, v)
        return
    _BOOL_STRICT.apply(ev, node)


class Cursor:
    """The state of an early-exit `for` loop: the element cells and the next index."""

    __slots__ = ("items", "i")

    def __init__(self, items: list, i: int = 0):
        self.items = items
        self.i = i

    def __repr__(self) -> str:
        return f"<cursor {self.i}/{len(self.items)}>"


class StreamCursor:
    """An early-exit loop's position in a stream: the cell of the rest of the stream."""

    __slots__ = ("cell",)

    def __init__(self, cell: Cell):
        self.cell = cell


def _iter(ev: Any, node: Any) -> None:
    v, root = ev.whnf(node.args[0])
    if v.__class__ is PackVal and v.kind == "cons":
        _done(ev, node, StreamCursor(root))
        return
    if v.__class__ is LazySeq and v.lazy:               # a loop that may break: one element at a time
        items = _elements(ev, node, v.xs)
        if items is not None:
            _done(ev, node, GenCursor(v, items))
        return
    items = _elements(ev, node, node.args[0])
    if items is None:
        return
    _done(ev, node, Cursor(items))


def _next(ev: Any, node: Any) -> None:
    """(has, x, rest) for the early-exit loop; x may still be pending."""
    cur, root = ev.whnf(node.args[0])
    if cur is PENDING:
        ev.park(node, root)
        return
    if cur.__class__ is ErrorVal:
        ev.poison(node, cur)
        return
    if cur.__class__ is StreamCursor:
        v, r = ev.whnf(cur.cell)
        if v is PENDING:
            ev.park(node, r)
            return
        if v.__class__ is ErrorVal:
            ev.poison(node, v)
            return
        if v.__class__ is PackVal and v.kind == "cons":
            _done(ev, node, PackVal((Cell(True), v.items[0], Cell(StreamCursor(v.items[1]))), "tuple"))
            return
        items = _elements(ev, node, r)
        if items is None:
            return
        cur = Cursor(items)
    if cur.__class__ is GenCursor:                       # the cursor is this loop's alone: advance it
        if cur.pending is None and node.io_out is not None:
            cur.io = node.io_in                          # the element's prints after this iteration's start
        x = advance(ev, node, cur)
        if x is not NOT_READY:
            _hand_io(ev, node, cur)
            _done(ev, node, PackVal((Cell(x is not None), x or Cell(None), Cell(cur)), "tuple"))
        return
    if cur.i < len(cur.items):
        _done(ev, node, PackVal((Cell(True), cur.items[cur.i], Cell(Cursor(cur.items, cur.i + 1))), "tuple"))
    else:
        _done(ev, node, PackVal((Cell(False), Cell(None), Cell(cur)), "tuple"))


def _print(ev: Any, node: Any) -> None:
    """print, ordered by the io token: it runs when its arguments are values and the previous
    print has happened; nothing else waits for it."""
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
    _done(ev, node, None)


def _lines(ev: Any, node: Any) -> None:
    """`lines(s)`: the complete lines of a string, or of a stream as they complete (a line-by-line
    stream of a token stream: how streaming SoT starts a point's expansion before the skeleton ends)."""
    src = node.args[0]
    buf = node.args[1].val if len(node.args) > 1 else ""
    v, root = ev.whnf(src)
    if v is PENDING:
        ev.park(node, root)
        return
    cls = v.__class__
    if cls is ErrorVal:
        ev.poison(node, v)
        return
    if cls is PackVal and v.kind == "cons":
        h, hroot = ev.whnf(v.items[0])
        if h is PENDING:
            ev.park(node, hroot)
            return
        parts = (buf + str(h)).split("\n")
        more = Cell()
        ev.push(CallNode(Cell(_LINES), [v.items[1], Cell(parts[-1])], more, None, None, node.site,
                          hash((node.identity(), 1)), node.origin))
        out: Cell = more
        for line in reversed(parts[:-1]):
            out = Cell(PackVal((Cell(line), out), "cons"))
        _done(ev, node, out.val) if out is not more else ev.alias(node.out, more)
        return
    if cls is PackVal:                                   # a finished list or tuple of chunks
        text = buf + "".join([str(ev.to_host(c)) for c in v.items])
    elif isinstance(v, str):
        text = buf + v
    else:
        ev.fail(node, TypeError(f"lines() needs a string or a stream, not {type(v).__name__}"))
        return
    _done(ev, node, PackVal(tuple(Cell(x) for x in text.splitlines()), "list"))


# ------------------------------------------------------------------------------------ strict ones
def _contains(a: Any, b: Any) -> bool:
    return a in b


def _not_contains(a: Any, b: Any) -> bool:
    return a not in b


def _assert(test: Any, msg: Any, line: int | None) -> None:
    if not test:
        raise AssertionError(msg if msg is not None else f"assertion failed at line {line}")


def _format(v: Any, conv: str | None, spec: str) -> str:
    if conv == "r":
        v = repr(v)
    elif conv == "s":
        v = str(v)
    elif conv == "a":
        v = ascii(v)
    return format(v, spec)


def _dict(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _is_normal(kind: int) -> Closure:
    return church(kind == NORMAL)


def _loop_again(kind: int) -> Closure:
    return church(kind == NORMAL or kind == CONTINUE)


def _loop_exit(kind: int) -> int:
    return RETURN if kind == RETURN else NORMAL


_STRICT: dict[str, Callable] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and_": operator.and_, "or_": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
    "rshift": operator.rshift,
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge, "contains": _contains, "not_contains": _not_contains, "is_": operator.is_,
    "is_not": operator.is_not,
    "neg": operator.neg, "pos": operator.pos, "invert": operator.invert, "not_": operator.not_,
    "getattr": getattr, "getitem": operator.getitem, "slice": slice, "set": set,
    "dict": _dict, "dict_from_pairs": dict, "dict_merge": lambda a, b: {**a, **b},
    "format": _format, "str_": str, "concat": "".join, "assert_": _assert,
    "is_normal": _is_normal, "loop_again": _loop_again, "loop_exit": _loop_exit, "bool": church,
}
_STRUCTURAL: dict[str, Callable] = {
    "genexp": genexp, "filter": _filter, "fold": _fold, "map": _map, "mapfilter": _mapfilter, "flatmap": _flatmap, "append": _append,
    "extend": _extend, "add": _add, "getitem": _getitem, "bool": _bool, "iter": _iter, "next": _next,
    "print": _print, "lines": _lines,
}

INTRINSICS: dict[str, Intrinsic] = {name: Intrinsic(name, fn) for name, fn in _STRICT.items()}
_ADD_STRICT = INTRINSICS["add"]
_GETITEM_STRICT = INTRINSICS["getitem"]
_BOOL_STRICT = INTRINSICS["bool"]
INTRINSICS.update({name: Intrinsic(name, fn, structural=True) for name, fn in _STRUCTURAL.items()})
_KEEP = Intrinsic("keep", _keep, structural=True)
_STEP_IF = Intrinsic("step_if", _step_if, structural=True)
_CONCAT = Intrinsic("concat_lists", _concat, structural=True)
_LINES = INTRINSICS["lines"]


# ------------------------------------------------------ Python builtins that understand partial data
def _structural_builtin(fn: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any], bool]:
    """Wrap `fn(ev, node, pack)` so it applies only to a single positional epic-list argument."""

    def apply(ev: Any, node: Any) -> bool:
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


def _enumerate(ev: Any, node: Any, v: PackVal) -> PackVal:
    return PackVal(tuple(Cell(PackVal((Cell(i), c), "tuple")) for i, c in enumerate(v.items)), "enumerate")


def _len(ev: Any, node: Any, v: PackVal) -> int:
    if v.kind in ITERATOR_KINDS:
        raise Poison(ErrorVal(TypeError(f"object of type '{v.kind}' has no len()")))
    return len(v.items)


def _reversed(ev: Any, node: Any, v: PackVal) -> PackVal:
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


def _zip(ev: Any, node: Any) -> bool:
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
        items = _elements(ev, node, v.xs if walk else a)
        if items is None:
            return True
        cols.append((v, items) if walk else items)
    ev.fired = DELTA
    n = min(len(c[1] if isinstance(c, tuple) else c) for c in cols)
    cols = [_pulled(ev, node, c, j, n, cols) if isinstance(c, tuple) else c for j, c in enumerate(cols)]
    rows = tuple(Cell(PackVal(tuple(r), "tuple")) for r in zip(*cols, strict=False))
    ev.bind(node.out, PackVal(rows, "zip"))
    return True


def _pulled(ev: Any, node: Any, col: tuple, j: int, n: int, cols: list) -> list[Cell]:
    """The elements of a lazy `map(f, xs)` that Python's zip pulls: n rows, and one more when an
    argument to its right is the first to run out (zip asks each argument in turn)."""
    gen, items = col
    lengths = [len(c[1] if isinstance(c, tuple) else c) for c in cols]
    extra = 1 if len(items) > n and j < lengths.index(n) else 0
    return _emit_calls(ev, node, gen.fn, [[x] for x in items[:n + extra]])[:n]


STRUCTURAL[id(zip)] = _zip


# -------------------------------------------- any / all / next stop early on a generator expression
class _Consumer:
    """`any`/`all`/`next` walking a generator: the cursor, and the element whose value it awaits."""

    __slots__ = ("mode", "cur", "elem", "default")

    def __init__(self, mode: str, cur: GenCursor, default: Cell | None):
        self.mode = mode
        self.cur = cur
        self.elem: Cell | None = None
        self.default = default


def _hand_io(ev: Any, node: Any, cur: GenCursor) -> None:
    """The node's print token continues after the elements' calls it started."""
    if node.io_out is not None and cur.io is not None:
        ev.alias(node.io_out, cur.io)
        node.io_out = None


def _consuming(mode: str) -> Callable[[Any, Any], bool]:
    def apply(ev: Any, node: Any) -> bool:
        nargs = len(node.args)
        if node.site.kwnames or not (nargs == 1 or (mode == "next" and nargs == 2)):
            return False
        v, root = ev.whnf(node.args[0])
        if v is PENDING:
            ev.park(node, root)
            return True
        if v.__class__ is not LazySeq or not v.lazy:
            return False
        items = _elements(ev, node, v.xs)
        if items is not None:                            # the walk takes over the print token
            state = _Consumer(mode, GenCursor(v, items, node.io_in), node.args[1] if nargs == 2 else None)
            ev.push(CallNode(Cell(_CONSUME), [Cell(state)], node.out, node.io_in, node.io_out, node.site,
                              node.path, node.origin))
            node.io_out = None
        return True

    return apply


def _consume(ev: Any, node: Any) -> None:
    st: _Consumer = node.args[0].val
    while True:
        if st.elem is None:
            x = advance(ev, node, st.cur)
            if x is NOT_READY:
                return
            if x is None or st.mode == "next":
                _hand_io(ev, node, st.cur)
            if x is None:                                  # the generator ended
                if st.mode == "next":
                    if st.default is None:
                        ev.fail(node, StopIteration())
                    else:
                        ev.fired = DELTA
                        ev.alias(node.out, st.default)
                    return
                _done(ev, node, st.mode == "all")
                return
            if st.mode == "next":
                ev.fired = DELTA
                ev.alias(node.out, x)
                return
            st.elem = x
        v = demand(ev, node, st.elem)
        if v is NOT_READY:
            return
        try:
            t = truthy(v)
        except Exception as e:
            ev.fail(node, e)
            return
        st.elem = None
        if t == (st.mode == "any"):                         # any: the first true; all: the first false
            _hand_io(ev, node, st.cur)
            _done(ev, node, t)
            return


_CONSUME = Intrinsic("consume", _consume, structural=True)
for _f in (any, all, next):
    STRUCTURAL[id(_f)] = _consuming(_f.__name__)

# builtins whose structural form threads the print token itself (callbacks they run may print)
IO_AWARE: set[int] = {id(any), id(all), id(next)}

register_builtin("lines", INTRINSICS["lines"])


def make_closure(fn: Function, globals: dict | None, defaults: tuple = ()) -> Closure:
    """A top-level closure for `fn` (a program or an `@epic` function), with host default values;
    the intrinsics its body names are resolved once, into its template."""
    return Closure(template_of(fn, INTRINSICS), (), tuple(Cell(d) for d in defaults), globals)


MATERIALIZE_WITH.update({op: INTRINSICS[op] for op in ("map", "filter", "mapfilter", "flatmap")})
