"""The term graph: variables are `Cell`s, statements are nodes that wait on them.

Why cells and not a dict of bindings: every rewrite must be O(1) whatever the program's size. A cell
*is* the edge of the term graph: `val` is what binds it (a host value for `prim`, a `Closure` for
`def`, a `PackVal` for `pack`, an `ErrorVal` for a failed call), `waiters` are the nodes that use it
and cannot step until it is bound, and `fwd` redirects every use to another cell (the rewiring done
by beta and projection). Binding a cell re-enqueues its waiters; forwarding moves them. So a step
touches only the nodes it rewrites, never the rest of the program.

`def`, `pack` and `prim` statements are values: they are stored in their cell at instantiation, and
the gc rule (delete a value with no uses) is Python's reference counting dropping the cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import EpicInternalError
from ..lang.ir import Call, Def, Function, Global, Op, Pack, Prim, Unbound, Unpack, Var

__all__ = ["BETA", "DELTA", "DISPATCH", "NOTHING", "PROJECT", "RESOLVE", "RULES", "ITERATOR_KINDS", "NOT_READY", "PENDING", "CallNode", "Cell", "Closure", "ErrorVal", "Frame", "PackVal", "Poison", "Reducer", "Template", "UnpackNode", "Wait",
           "demand", "root_frame", "template_of"]


# The rules of the calculus (docs/design.md) by number (rules.py has one function each). A step that fires one
# sets `Evaluator.fired` to its number; NOTHING: the node parked or took an error value.
NOTHING, BETA, DELTA, DISPATCH, RESOLVE, PROJECT = range(6)
RULES = ("beta", "delta", "dispatch", "resolve", "project")     # RULES[rule - 1] names a rule


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<pending>"


PENDING: Any = _Pending()


class Cell:
    """One variable of the running program (an edge of the term graph)."""

    __slots__ = ("val", "waiters", "fwd")

    def __init__(self, val: Any = PENDING):
        self.val = val
        self.waiters: list | None = None
        self.fwd: Cell | None = None

    def root(self) -> Cell:
        c = self
        while c.fwd is not None:
            c = c.fwd
        if c is not self and self.fwd is not c:
            self.fwd = c                     # path compression: the next read is one hop
        return c

    def __repr__(self) -> str:
        r = self.root()
        return f"Cell({r.val!r})"


class Closure:
    """A `def` value: a compiled body plus the cells it captured. `globals` is the namespace its free
    names resolve in (a notebook's user_ns, or a module's globals for an `@epic` function)."""

    __slots__ = ("tmpl", "captured", "defaults", "globals")

    def __init__(self, tmpl: Template, captured: tuple, defaults: tuple, globals: dict | None):
        self.tmpl = tmpl
        self.captured = captured
        self.defaults = defaults
        self.globals = globals

    def __repr__(self) -> str:
        return f"<epic function {self.tmpl.name}>"


# Packs that stand for Python iterators (`zip`, `enumerate`, `reversed`): iterable and unpackable like a
# list, but with no len(), no indexing and always true, as in Python. Values are immutable, so iterating
# one twice gives its items twice (README: "Where epic differs from Python").
ITERATOR_KINDS = frozenset({"zip", "enumerate", "list_reverseiterator", "reversed"})


class PackVal:
    """A `pack` value: a tuple or list whose components may still be pending (partial data).

    kind: "list", "tuple", "cons" (a stream: head and a pending tail) or one of ITERATOR_KINDS."""

    __slots__ = ("items", "kind")

    def __init__(self, items: tuple, kind: str = "tuple"):
        self.items = items
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind} of {len(self.items)}>"


@dataclass(slots=True, eq=False)
class ErrorVal:
    """The value of a failed call. It poisons only what depends on it; `origin` is the failure record."""

    error: BaseException
    origin: Any = None


# ------------------------------------------------------------------------------------------ templates
GLOBAL, DEF, PACK, UNPACK, CALL = range(5)


@dataclass(slots=True, frozen=True)
class Site:
    """Where a call is written: for records, errors and the trace."""

    line: int | None
    name: str
    kwnames: tuple[str, ...] = ()
    uid: int = 0              # the call's id in the compiled program (stable across runs and strategies)


class Template:
    """A Function compiled for fast instantiation: every variable is a slot in a frame list.

    Frame layout: [params..., io_in, captured..., prims..., other locals...]. Prim cells are created
    already bound, so instantiation of a body is: one list build, then one pass over `ops`.
    """

    __slots__ = ("fn", "name", "nparams", "param_names", "nslots", "prim_values", "nother", "ops",
                 "ret", "io_out", "line", "empty_ret_param", "unbound", "filename")

    def __init__(self, fn: Function, intrinsics: dict[str, Any]):
        self.fn = fn
        self.name = fn.name
        self.line = fn.line
        # the file of an `@epic` function (library code); None for the program being run
        self.filename: str | None = fn.filename
        self.nparams = len(fn.params)
        self.param_names = fn.param_names
        slots: dict[Var, int] = {}
        for v in (*fn.params, fn.io_in, *fn.free):
            slots.setdefault(v, len(slots))
        self._prims(fn, slots, intrinsics)
        first_other = len(slots)
        for s in fn.body:
            match s:
                case Global(out) | Pack(out) | Def(out):
                    slots[out] = len(slots)
                case Unpack(outs):
                    for o in outs:
                        slots[o] = len(slots)
                case Call(out, io_out=io_out):
                    slots[out] = len(slots)
                    if io_out is not None:
                        slots[io_out] = len(slots)
        self.nother = len(slots) - first_other
        self.nslots = len(slots)
        self.ops = tuple(op for s in fn.body if (op := self._op(s, slots, intrinsics)) is not None)
        self.ret = slots[fn.ret]
        self.io_out = slots[fn.io_out]
        # `lambda a, b: a` (a Church boolean): beta is a pure rewiring, no frame needed
        self.empty_ret_param = self.ret if (not fn.body and self.ret < self.nparams) else None

    def _prims(self, fn: Function, slots: dict[Var, int], intrinsics: dict[str, Any]) -> None:
        """Constants get the slots after the captured ones, and their values once, here: an `Op`
        becomes the runtime's intrinsic; an `Unbound` a slot that gets a fresh error per call."""
        prims: list[Any] = []
        unbound: list[tuple[int, str]] = []
        for s in fn.body:
            if isinstance(s, Prim):
                slots[s.out] = len(slots)
                value = s.value
                if isinstance(value, Unbound):
                    unbound.append((slots[s.out], value))
                if isinstance(value, Op):
                    if value.name not in intrinsics:
                        raise EpicInternalError(f"the translator named an unknown intrinsic %{value.name}")
                    value = intrinsics[value.name]
                prims.append(value)
        self.prim_values = tuple(prims)
        self.unbound = tuple(unbound)            # slots that get a fresh UnboundLocalError per call

    def _op(self, s: Any, slots: dict[Var, int], intrinsics: dict[str, Any]) -> tuple | None:
        """One statement as the tuple beta reads (slot numbers instead of variables); None for prims."""
        match s:
            case Prim():
                return None
            case Global(out, name, line):
                return (GLOBAL, slots[out], name, line, s.soft, out.id)
            case Def(out, inner, defaults):
                inner_t = template_of(inner, intrinsics)
                if inner_t.filename is None:           # nested defs and loop bodies: the same file
                    inner_t.filename = self.filename
                return (DEF, slots[out], inner_t, tuple(slots[v] for v in inner.free),
                        tuple(slots[v] for v in defaults))
            case Pack(out, items, kind):
                return (PACK, slots[out], tuple(slots[v] for v in items), kind)
            case Unpack(outs, src, line):
                return (UNPACK, tuple(slots[o] for o in outs), slots[src], line, outs[0].id if outs else 0)
            case Call(out, f, args, kwnames, io_in, io_out, line, name):
                return (CALL, slots[out], slots[f], tuple(slots[a] for a in args),
                        None if io_in is None else slots[io_in],
                        None if io_out is None else slots[io_out], Site(line, name, kwnames, out.id))
        raise EpicInternalError(f"the translator produced an unknown statement {type(s).__name__}")

    def __repr__(self) -> str:
        return f"<template {self.name}: {self.nslots} slots, {len(self.ops)} ops>"


def template_of(fn: Function, intrinsics: dict[str, Any]) -> Template:
    """The compiled template of `fn`, built once and cached on the Function."""
    t = fn.compiled
    if t is None:
        t = fn.compiled = Template(fn, intrinsics)
    return t


# ---------------------------------------------------------------------------------------- nodes
# A *frame* is where a body sits in the program's unfolding: `(up, key, path)`, a plain tuple so
# that making one per instantiated body costs what the old path hash cost. `up` is the enclosing
# frame (None at the root), `key` orders it among its siblings (the uid of the call that made it, or
# an iteration's index), `path` is the schedule-independent number that names samples (`identity`).
# A node's place in program order is its frame's keys from the root, then its `site.uid`: Var ids
# grow in the order the translator emits statements, which is Python's evaluation order
# (runtime/order.py compares two places).
Frame = tuple


def root_frame(path: int = 0) -> Frame:
    return (None, 0, path)


class CallNode:
    """`out, io_out := fn(args; io_in)` waiting to step.

    `frame` says where the node sits in the program's unfolding (which call instantiated its body,
    which loop iteration emitted it): its path, with `site.uid`, names the call independently of the
    schedule, which is what numbers identical sampled requests (see `identity`); its keys give the
    node's place in program order (where a failing run stops). `origin`: inside library code, the
    line of the run's own code that led here."""

    __slots__ = ("fn", "args", "out", "io_in", "io_out", "site", "frame", "origin")

    def __init__(self, fn: Cell, args: list, out: Cell, io_in: Cell | None, io_out: Cell | None, site: Site,
                 frame: Frame = (None, 0, 0), origin: int | None = None):
        self.fn = fn
        self.args = args
        self.out = out
        self.io_in = io_in
        self.io_out = io_out
        self.site = site
        self.frame = frame
        self.origin = origin

    @property
    def path(self) -> int:
        return self.frame[2]

    def identity(self) -> int:
        """A number for this call that is the same under every strategy (the path of the body it
        instantiates, or of the iterations it emits)."""
        return hash((self.frame[2], self.site.uid))

    def inner(self) -> Frame:
        """The frame of what this node's step makes (a body, or the iterations it emits)."""
        f = self.frame
        uid = self.site.uid
        return (f, uid, hash((f[2], uid)))

    def sub(self, i: int, inner: Frame | None = None) -> Frame:
        """The frame of the i-th thing this node's step emits (an iteration, an element's call)."""
        base = inner or self.inner()
        return (base, i, hash((base[2], i)))


class UnpackNode:
    """`(outs...) := src` whose src is not yet a pack. `pos`: its place in program order
    (frame, uid), where a failed unpack stops the run."""

    __slots__ = ("outs", "src", "line", "pos")

    def __init__(self, outs: list, src: Cell, line: int | None, pos: tuple | None = None):
        self.outs = outs
        self.src = src
        self.line = line
        self.pos = pos


class Wait(Exception):
    """Control flow inside argument conversion: this cell is still pending."""

    __slots__ = ("cell",)

    def __init__(self, cell: Cell):
        self.cell = cell


class Poison(Exception):
    """Control flow inside argument conversion: an argument is an error value."""

    __slots__ = ("err",)

    def __init__(self, err: ErrorVal):
        self.err = err


NOT_READY: Any = object()


def demand(ev: Any, node: Any, cell: Cell) -> Any:
    """The cell's value (not looking inside packs), or NOT_READY after parking `node` on it (pending)
    or giving `node` its error (failed). A step that demands before it rewrites anything can simply
    run again when it is woken."""
    v, root = ev.whnf(cell)
    if v is PENDING:
        ev.park(node, root)
        return NOT_READY
    if v.__class__ is ErrorVal:
        ev.poison(node, v)
        return NOT_READY
    return v


class Reducer(Protocol):
    """What a step (a rule, an intrinsic) may do to the run: the evaluator as intrinsics see it.

    Look at a value (`whnf`, or `demand`: value, or park/poison and NOT_READY), wait (`park`), fail
    (`fail` records a new error at the node's line; `poison` passes an existing one on), rewrite
    (`bind` a value, `alias` one cell to another), add work (`push`, `push_many`, `emit_lazily`),
    say which rule fired (`fired`), and hand values to host code (`to_host`, `host_args`)."""

    fired: int
    filename: str
    stop: Any           # the failure that stops the run (order.StopPoint), or None


    def whnf(self, cell: Cell) -> tuple[Any, Cell]: ...
    def park(self, node: Any, cell: Cell) -> None: ...
    def bind(self, cell: Cell, v: Any) -> None: ...
    def alias(self, a: Cell, b: Cell) -> None: ...
    def fail(self, node: CallNode, exc: BaseException, rec: Any = None) -> ErrorVal: ...
    def poison(self, node: CallNode, err: ErrorVal) -> None: ...
    def pass_io(self, node: CallNode) -> None: ...
    def push(self, node: Any) -> None: ...
    def push_many(self, nodes: list) -> None: ...
    def emit_lazily(self, nodes: Iterable[CallNode]) -> None: ...
    def to_host(self, cell: Cell) -> Any: ...
    def host_args(self, node: CallNode) -> tuple[list, dict] | None: ...
    def stream_cells(self, v: PackVal) -> list[Cell]: ...
    def write(self, text: str) -> None: ...
