"""Generator expressions: lazy where Python is lazy.

A list comprehension is a `%map`: every element is instantiated at once, so their calls dispatch
together. A generator expression is that too when something consumes all of it (`sum(...)`,
`"".join(...)`, `sorted(...)`, a `for` loop without `break`): it becomes the same `%map` the first
time it is demanded. But `any`, `all`, `next` and a loop that can `break` stop early, and Python
never evaluates the elements after the stop: their calls are never made and their errors never
raised (`any(10 // x > 1 for x in [1, 0])` is True). For those the generator is walked element
by element, each element's calls dispatched only once the previous element has been looked at,
like the early-exit loop encoding.
"""

from __future__ import annotations

from typing import Any

from .graph import (
    DELTA,
    ITERATOR_KINDS,
    NOT_READY,
    CallNode,
    Cell,
    Closure,
    ErrorVal,
    PackVal,
    Poison,
    demand,
)

__all__ = ["MATERIALIZE_WITH", "GenCursor", "LazySeq", "advance", "genexp", "materialize", "truthy"]

# The structural intrinsic that evaluates a generator of each kind whole (`%map`, `%filter`,
# `%mapfilter`): intrinsics.py, which builds on this module, fills it in.
MATERIALIZE_WITH: dict[str, Any] = {}


class LazySeq:
    """The value of a generator expression (or of `map`/`filter` of an epic function): its first
    iterable, its per-element function (`op` says what that returns: "map" the element, "mapfilter"
    (keep, element), "filter" whether to keep the input element, "flatmap" a list of elements), and,
    once something demanded all of it, the cell of the full list."""

    __slots__ = ("xs", "fn", "op", "frame", "site", "origin", "full")

    def __init__(self, xs: Cell, fn: Cell, op: str, frame: tuple, site: Any, origin: int | None = None):
        self.xs = xs
        self.fn = fn
        self.op = op
        self.frame = frame              # where it was made (graph.Frame); its path names samples
        self.site = site
        self.origin = origin            # inside library code: the run's own line that led here
        self.full: Cell | None = None

    @property
    def path(self) -> int:
        return self.frame[2]

    @property
    def lazy(self) -> bool:
        """Can it be walked element by element? (Several `for` clauses: evaluated whole.)"""
        return self.op != "flatmap"

    def __repr__(self) -> str:
        return "<generator>"


class GenCursor:
    """A position in a generator walked element by element: the iterable's cells, the next index,
    the element being evaluated (its call's output) while a filter flag is awaited, and the print
    token threaded through the elements' calls (what they print comes out in Python's order)."""

    __slots__ = ("gen", "items", "i", "pending", "io")

    def __init__(self, gen: LazySeq, items: list, io: Cell | None = None):
        self.gen = gen
        self.items = items
        self.i = 0
        self.pending: Cell | None = None
        self.io = io            # the print token the next element's call takes (None: not ordered)


def genexp(ev: Any, node: Any) -> None:
    """`%genexp(xs, fn, op)`: a generator value; nothing is evaluated until it is consumed."""
    xs, fn, op = node.args
    ev.fired = DELTA
    ev.pass_io(node)
    ev.bind(node.out, LazySeq(xs, fn, op.val, node.inner(), node.site, node.origin))


def materialize(ev: Any, gen: LazySeq, consumer: Any = None) -> Cell:
    """The cell of the whole generator as a list (started on first demand, shared afterwards).

    The first consumer's print token runs through the elements' calls, so what they print comes
    out where Python prints it: when the consumer consumes, after the prints before it."""
    if gen.full is None:
        gen.full = Cell()
        io_in = io_out = None
        frame = gen.frame
        if consumer is not None and getattr(consumer, "io_out", None) is not None:
            io_in, io_out = consumer.io_in, Cell()
            consumer.io_in = io_out
        if consumer is not None and getattr(consumer, "frame", None) is not None:
            frame = (consumer.inner(), -1, gen.path)       # evaluated where it is consumed, before the consumer
        ev.push(CallNode(Cell(MATERIALIZE_WITH[gen.op]), [gen.xs, gen.fn], gen.full, io_in, io_out, gen.site, frame,
                          gen.origin))
    return gen.full


def advance(ev: Any, node: Any, cur: GenCursor) -> Any:
    """The cell of the generator's next element (its evaluation started), None at the end, or
    NOT_READY after parking `node` on what the filter waits for (`node` runs again later)."""
    gen = cur.gen
    while True:
        if cur.pending is None:
            if cur.i >= len(cur.items):
                return None
            out = Cell()
            io_next = None if cur.io is None else Cell()
            at = (node.inner(), cur.i, hash((gen.path, cur.i)))    # evaluated where it is consumed
            ev.push(CallNode(gen.fn, [cur.items[cur.i]], out, cur.io, io_next, gen.site, at, gen.origin))
            cur.pending, cur.io = out, io_next
        if gen.op == "map":
            cell, cur.pending = cur.pending, None
            cur.i += 1
            return cell
        if gen.op == "filter":                          # filter(f, xs): f(x) is the flag, x the element
            flag_cell, value = cur.pending, cur.items[cur.i]
        else:                                           # mapfilter: the call returns (keep, element)
            pair = demand(ev, node, cur.pending)
            if pair is NOT_READY:
                return NOT_READY
            flag_cell, value = pair.items
        keep = demand(ev, node, flag_cell)
        if keep is NOT_READY:
            return NOT_READY
        cur.pending = None
        cur.i += 1
        if truthy(keep):
            return value


def truthy(v: Any) -> bool:
    """Python's truth value of an epic value (a pack without looking at its elements)."""
    cls = v.__class__
    if cls is PackVal:
        return bool(v.items) or v.kind in ITERATOR_KINDS or v.kind == "cons"
    if cls is LazySeq or cls is Closure:
        return True
    if cls is ErrorVal:
        raise Poison(v)
    return bool(v)
