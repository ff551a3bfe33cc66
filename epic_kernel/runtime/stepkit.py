"""What every intrinsic step is made of: the `Intrinsic` value, the guard that turns a demand deep
inside a pack into park/poison, Church booleans, and the three moves most steps end with (take a
list's element cells, instantiate one call per element, finish with a value).

Intrinsics see the evaluator through `Reducer` (graph.py): the few operations a step may use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import unwrap
from ..lang.ir import BREAK, CONTINUE, NORMAL, RETURN, Function, Var  # completion kinds: the translator's
from .graph import DELTA, PENDING, CallNode, Cell, Closure, ErrorVal, PackVal, Poison, Reducer, Template, Wait
from .lazy import LazySeq, materialize

__all__ = ["FALSE", "NORMAL", "RETURN", "BREAK", "CONTINUE", "TRUE", "Intrinsic", "church", "done", "elements",
           "count_mismatch", "emit_calls", "guarded", "settle_io"]



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

    def apply(self, ev: Reducer, node: CallNode) -> None:
        if self.structural:
            guarded(self.fn, ev, node)
            if node.io_out is not None:
                settle_io(ev, node)
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
        if node.io_out is not None:
            ev.pass_io(node)                     # finished without failing: prints after it may go
        ev.bind(node.out, r)


def settle_io(ev: Reducer, node: CallNode) -> None:
    """After a structural step that kept the node's print token: if it finished (its output bound,
    or rewired to a component, and not to an error), the token passes; parked or failed, it waits
    (prints after a failure in program order never happen)."""
    out = node.out
    v = out.val
    if (v is not PENDING and v.__class__ is not ErrorVal) or out.fwd is not None:
        ev.pass_io(node)


def guarded(fn: Callable[[Any, Any], Any], ev: Reducer, node: CallNode) -> Any:
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
    return Closure(Template(fn, {}), (), (), None)


TRUE = _church("true", 0)
FALSE = _church("false", 1)


def church(b: Any) -> Closure:
    return TRUE if b else FALSE


# ------------------------------------------------------------------------------------------ helpers
def elements(ev: Reducer, node: CallNode, cell: Cell) -> list | None:
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
        return elements(ev, node, materialize(ev, v, node))
    if cls is Closure:
        ev.fail(node, TypeError("'function' object is not iterable"))
        return None
    try:
        return [Cell(x) for x in v]
    except Exception as e:                       # not iterable, or a host iterator that raised
        ev.fail(node, unwrap(e))
        return None


def emit_calls(ev: Reducer, node: CallNode, fn: Cell, arglists: list[list[Cell]], site: Any = None) -> list[Cell]:
    """One call of `fn` per argument list, threading the io token through them in order. The nodes
    are created lazily, a chunk per step, so a huge loop never stalls the event loop."""
    outs = [Cell() for _ in arglists]
    io0 = node.io_in
    io_last = None
    if io0 is not None and arglists:
        io_last = Cell()

    base = node.inner()
    bp = base[2]
    site = site or node.site
    origin = node.origin

    def nodes() -> Any:
        io = io0
        last = len(arglists) - 1
        for i, args in enumerate(arglists):
            io_next = None if io is None else (io_last if i == last else Cell())
            # the i-th call's frame (CallNode.sub, written out: this loop runs once per element)
            yield CallNode(fn, args, outs[i], io, io_next, site, (base, i, hash((bp, i))), origin)
            io = io_next

    ev.emit_lazily(nodes())
    if node.io_out is not None:
        ev.alias(node.io_out, io_last if io_last is not None else node.io_in)
        node.io_out = None
    return outs


def count_mismatch(got: int, want: int) -> ValueError:
    """Python's own words for an unpack of the wrong length."""
    if got > want:
        return ValueError(f"too many values to unpack (expected {want})")
    return ValueError(f"not enough values to unpack (expected {want}, got {got})")


def done(ev: Reducer, node: CallNode, value: Any) -> None:
    """The step is a delta that computed `value`: bind it; the print token passes (it printed nothing)."""
    ev.fired = DELTA
    ev.pass_io(node)
    ev.bind(node.out, value)


