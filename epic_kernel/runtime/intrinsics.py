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

from ..lang.ir import Function, Var
from .context import register_builtin
from .graph import PENDING, CallNode, Cell, Closure, ErrorVal, PackVal, Poison, Template, Wait

__all__ = ["FALSE", "INTRINSICS", "STRUCTURAL", "TRUE", "Intrinsic", "church"]

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
            self.fn(ev, node)
            return
        conv = ev.host_args(node)
        if conv is None:
            return
        pos, kw = conv
        ev.n_delta += 1
        try:
            r = self.fn(*pos, **kw)
        except Exception as e:
            ev.fail(node, e)
            return
        ev.bind(node.out, r)


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
    if cls is Closure:
        ev.fail(node, TypeError("cannot iterate over a function"))
        return None
    try:
        return [Cell(x) for x in v]
    except TypeError as e:
        ev.fail(node, e)
        return None


def _emit_calls(ev: Any, node: Any, fn: Cell, arglists: list[list[Cell]]) -> list[Cell]:
    """One call of `fn` per argument list, threading the io token through them in order. The nodes
    are created lazily, a chunk per step, so a huge loop never stalls the event loop."""
    outs = [Cell() for _ in arglists]
    io0 = node.io_in
    io_last = None
    if io0 is not None and arglists:
        io_last = Cell()

    def nodes() -> Any:
        io = io0
        last = len(arglists) - 1
        for i, args in enumerate(arglists):
            io_next = None if io is None else (io_last if i == last else Cell())
            yield CallNode(fn, args, outs[i], io, io_next, node.site, node.origin)
            io = io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_last if io_last is not None else node.io_in)
        node.io_out = None
    return outs


def _done(ev: Any, node: Any, value: Any) -> None:
    ev.n_delta += 1
    if node.io_out is not None:
        ev.alias(node.io_out, node.io_in)
        node.io_out = None
    ev.bind(node.out, value)


# ------------------------------------------------------------------------------- structural ones
def _fold(ev: Any, node: Any) -> None:
    """`for x in xs` without early exit: s1 = step(s0, x0); s2 = step(s1, x1); ... all at once."""
    xs, s0, step = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # a stream: fold the head now, the tail later
        ev.n_delta += 1
        head, tail = v.items
        s1 = Cell()
        io_mid = Cell() if node.io_in is not None else None
        ev._push_many([CallNode(step, [s0, head], s1, node.io_in, io_mid, node.site, node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, s1, step], node.out, io_mid, node.io_out,
                                node.site, node.origin)])
        node.io_out = None
        return
    items = _elements(ev, node, xs)
    if items is None:
        return
    ev.n_delta += 1
    if not items:
        ev.alias(node.out, s0)
        if node.io_out is not None:
            ev.alias(node.io_out, node.io_in)
            node.io_out = None
        return
    final = Cell()
    io0 = node.io_in
    io_final = Cell() if io0 is not None else None

    def nodes() -> Any:
        cur, io, last = s0, io0, len(items) - 1
        for i, x in enumerate(items):
            nxt = final if i == last else Cell()
            io_next = None if io is None else (io_final if i == last else Cell())
            yield CallNode(step, [cur, x], nxt, io, io_next, node.site, node.origin)
            cur, io = nxt, io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_final)
        node.io_out = None
    ev.alias(node.out, final)


def _map(ev: Any, node: Any) -> None:
    xs, fn = node.args
    v, root = ev.whnf(xs)
    if v.__class__ is PackVal and v.kind == "cons":      # map a stream into a stream, chunk by chunk
        ev.n_delta += 1
        head, tail = v.items
        y, rest = Cell(), Cell()
        io_mid = Cell() if node.io_in is not None else None
        ev._push_many([CallNode(fn, [head], y, node.io_in, io_mid, node.site, node.origin),
                       CallNode(Cell(node.fn.root().val), [tail, fn], rest, io_mid, node.io_out, node.site, node.origin)])
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
    ev.n_delta += 1
    results = PackVal(tuple(_emit_calls(ev, node, fn, [[x] for x in items])), "list")
    if then is None:
        ev.bind(node.out, results)
    else:
        _chain(ev, node, then, results)


def _chain(ev: Any, node: Any, op: Intrinsic, arg: Any) -> None:
    """Continue with another structural step on a pack we just built."""
    ev._push(CallNode(Cell(op), [Cell(arg)], node.out, None, None, node.site, node.origin))


_NOT_READY = object()


def _ready(ev: Any, node: Any, cell: Cell) -> Any:
    """The cell's value (not looking inside packs), or _NOT_READY after parking the node on it or
    poisoning the node with its error."""
    v, root = ev.whnf(cell)
    if v is PENDING:
        ev.park(node, root)
        return _NOT_READY
    if v.__class__ is ErrorVal:
        ev.poison(node, v)
        return _NOT_READY
    return v


def _keep(ev: Any, node: Any) -> None:
    kept = []
    for p in node.args[0].val.items:
        pair = _ready(ev, node, p)
        if pair is _NOT_READY:
            return
        flag_cell, val_cell = pair.items
        flag = _ready(ev, node, flag_cell)
        if flag is _NOT_READY:
            return
        if flag:
            kept.append(val_cell)
    _done(ev, node, PackVal(tuple(kept), "list"))


def _concat(ev: Any, node: Any) -> None:
    parts = node.args[0].val.items
    cells: list[Cell] = []
    for p in parts:
        got = _elements(ev, node, p)
        if got is None:
            return
        cells += got
    _done(ev, node, PackVal(tuple(cells), "list"))


def _as_list_kind(v: Any) -> str:
    return "list" if isinstance(v, list) or getattr(v, "kind", "") == "list" else "tuple"


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


def _getitem(ev: Any, node: Any) -> None:
    """`xs[i]` on a pack projects the i-th component, pending or not; slices give a sub-pack."""
    obj, idx = node.args
    v, root = ev.whnf(obj)
    if v is PENDING:
        ev.park(node, root)
        return
    if v.__class__ is PackVal and v.kind != "cons":
        i, iroot = ev.whnf(idx)
        if i is PENDING:
            ev.park(node, iroot)
            return
        if isinstance(i, int | slice):
            try:
                got = v.items[i]
            except IndexError as e:
                ev.fail(node, IndexError(f"{v.kind} index out of range ({e})"))
                return
            ev.n_project += 1
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
    if cls is PackVal:
        _done(ev, node, TRUE if v.items else FALSE)
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
        cur = Cursor(_elements(ev, node, r) or [])
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
        ev._push(CallNode(Cell(_LINES), [v.items[1], Cell(parts[-1])], more, None, None, node.site, node.origin))
        out: Cell = more
        for line in reversed(parts[:-1]):
            out = Cell(PackVal((Cell(line), out), "cons"))
        _done(ev, node, out.val) if out is not more else ev.alias(node.out, more)
        return
    if cls is PackVal:                                   # a finished list of chunks
        text = buf + "".join(str(ev.to_host(c)) for c in v.items) if v.items else buf
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
    "fold": _fold, "map": _map, "mapfilter": _mapfilter, "flatmap": _flatmap, "append": _append,
    "extend": _extend, "add": _add, "getitem": _getitem, "bool": _bool, "iter": _iter, "next": _next,
    "print": _print, "lines": _lines,
}

INTRINSICS: dict[str, Intrinsic] = {name: Intrinsic(name, fn) for name, fn in _STRICT.items()}
_ADD_STRICT = INTRINSICS["add"]
_GETITEM_STRICT = INTRINSICS["getitem"]
_BOOL_STRICT = INTRINSICS["bool"]
INTRINSICS.update({name: Intrinsic(name, fn, structural=True) for name, fn in _STRUCTURAL.items()})
_KEEP = Intrinsic("keep", _keep, structural=True)
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
        ev.n_delta += 1
        ev.bind(node.out, fn(ev, node, v))
        return True

    return apply


def _enumerate(ev: Any, node: Any, v: PackVal) -> PackVal:
    return PackVal(tuple(Cell(PackVal((Cell(i), c), "tuple")) for i, c in enumerate(v.items)), "list")


STRUCTURAL: dict[int, Callable[[Any, Any], bool]] = {
    id(len): _structural_builtin(lambda ev, node, v: len(v.items)),
    id(list): _structural_builtin(lambda ev, node, v: PackVal(v.items, "list")),
    id(tuple): _structural_builtin(lambda ev, node, v: PackVal(v.items, "tuple")),
    id(reversed): _structural_builtin(lambda ev, node, v: PackVal(v.items[::-1], "list")),
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
    if not any(v.__class__ is PackVal for v in vals):
        return False
    cols = []
    for a in node.args:
        items = _elements(ev, node, a)
        if items is None:
            return True
        cols.append(items)
    ev.n_delta += 1
    rows = tuple(Cell(PackVal(tuple(r), "tuple")) for r in zip(*cols, strict=False))
    ev.bind(node.out, PackVal(rows, "list"))
    return True


STRUCTURAL[id(zip)] = _zip

register_builtin("lines", INTRINSICS["lines"])
