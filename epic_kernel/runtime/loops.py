"""Loops that may stop early: the cursor an early-exit `for` walks one element at a time (`%iter`,
`%next`), and `any`/`all`/`next` walking a generator expression, which start no call and raise no
error past the element that decides (as Python's lazy iteration does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .graph import DELTA, NOT_READY, PENDING, CallNode, Cell, PackVal, Reducer, demand
from .lazy import GenCursor, LazySeq, advance, truthy
from .stepkit import Intrinsic, done, elements

__all__ = ["CONSUMERS", "LOOP_INTRINSICS", "Cursor", "StreamCursor"]


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


def _iter(ev: Reducer, node: CallNode) -> None:
    v, root = ev.whnf(node.args[0])
    if v.__class__ is PackVal and v.kind == "cons":
        done(ev, node, StreamCursor(root))
        return
    if v.__class__ is LazySeq and v.lazy:               # a loop that may break: one element at a time
        items = elements(ev, node, v.xs)
        if items is not None:
            done(ev, node, GenCursor(v, items))
        return
    items = elements(ev, node, node.args[0])
    if items is None:
        return
    done(ev, node, Cursor(items))


def _next(ev: Reducer, node: CallNode) -> None:
    """(has, x, rest) for the early-exit loop; x may still be pending."""
    cur = demand(ev, node, node.args[0])
    if cur is NOT_READY:
        return
    if cur.__class__ is StreamCursor:
        v = demand(ev, node, cur.cell)
        if v is NOT_READY:
            return
        if v.__class__ is PackVal and v.kind == "cons":
            done(ev, node, PackVal((Cell(True), v.items[0], Cell(StreamCursor(v.items[1]))), "tuple"))
            return
        items = elements(ev, node, cur.cell)
        if items is None:
            return
        cur = Cursor(items)
    if cur.__class__ is GenCursor:                       # the cursor is this loop's alone: advance it
        if cur.pending is None and node.io_out is not None:
            cur.io = node.io_in                          # the element's prints after this iteration's start
        x = advance(ev, node, cur)
        if x is not NOT_READY:
            _hand_io(ev, node, cur)
            done(ev, node, PackVal((Cell(x is not None), x or Cell(None), Cell(cur)), "tuple"))
        return
    if cur.i < len(cur.items):
        done(ev, node, PackVal((Cell(True), cur.items[cur.i], Cell(Cursor(cur.items, cur.i + 1))), "tuple"))
    else:
        done(ev, node, PackVal((Cell(False), Cell(None), Cell(cur)), "tuple"))



# -------------------------------------------- any / all / next stop early on a generator expression
class _Consumer:
    """`any`/`all`/`next` walking a generator: the cursor, and the element whose value it awaits."""

    __slots__ = ("mode", "cur", "elem", "default")

    def __init__(self, mode: str, cur: GenCursor, default: Cell | None):
        self.mode = mode
        self.cur = cur
        self.elem: Cell | None = None
        self.default = default


def _hand_io(ev: Reducer, node: CallNode, cur: GenCursor) -> None:
    """The node's print token continues after the elements' calls it started."""
    if node.io_out is not None and cur.io is not None:
        ev.alias(node.io_out, cur.io)
        node.io_out = None


def _consuming(mode: str) -> Callable[[Any, Any], bool]:
    def apply(ev: Reducer, node: CallNode) -> bool:
        nargs = len(node.args)
        if node.site.kwnames or not (nargs == 1 or (mode == "next" and nargs == 2)):
            return False
        v, root = ev.whnf(node.args[0])
        if v is PENDING:
            ev.park(node, root)
            return True
        if v.__class__ is not LazySeq or not v.lazy:
            return False
        items = elements(ev, node, v.xs)
        if items is not None:                            # the walk takes over the print token
            state = _Consumer(mode, GenCursor(v, items, node.io_in), node.args[1] if nargs == 2 else None)
            ev.push(CallNode(Cell(_CONSUME), [Cell(state)], node.out, node.io_in, node.io_out, node.site,
                              node.frame, node.origin))
            node.io_out = None
        return True

    return apply


def _consume(ev: Reducer, node: CallNode) -> None:
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
                done(ev, node, st.mode == "all")
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
            done(ev, node, t)
            return


_CONSUME = Intrinsic("consume", _consume, structural=True)
CONSUMERS: dict[int, Callable[[Any, Any], bool]] = {id(f): _consuming(f.__name__) for f in (any, all, next)}
LOOP_INTRINSICS = {"iter": Intrinsic("iter", _iter, structural=True), "next": Intrinsic("next", _next, structural=True)}

