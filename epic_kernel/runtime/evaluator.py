"""The opportunistic evaluator: reduce the term graph, dispatch every external call as soon as its
arguments are values, splice results back in when they resolve.

One engine runs every strategy, so comparisons are like for like; only the order in which ready
nodes are taken and whether a dispatched call blocks differ:

    opportunistic       FIFO ready queue (breadth first); calls run concurrently   (the default)
    opportunistic-dfs   LIFO ready queue (a body's statements first);  concurrently
    random              a seeded random ready node each step;          concurrently
    sequential          LIFO, and each dispatched call is awaited before anything else steps:
                        what plain Python does, the baseline

Rules (DESIGN section 4) and where they live: beta `_beta`, delta `_host_call`/intrinsics, dispatch
`_dispatch`, resolve `_drain`, project `_unpack`; gc is reference counting (see graph.py).

A node that cannot step parks on the one cell it waits for and is re-enqueued when that cell is
bound, so the queue only ever holds nodes that may step: no polling, O(1) per rewrite.
"""

from __future__ import annotations

import asyncio
import builtins as _py_builtins
import contextvars
import gc
import inspect
import itertools
import random
import reprlib
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import EpicInternalError, unwrap
from ..lang.ir import Function
from . import context as _ctx
from .events import CallRecord, Event, clock
from .graph import (
    CALL,
    DEF,
    PACK,
    PENDING,
    UNPACK,
    CallNode,
    Cell,
    Closure,
    ErrorVal,
    PackVal,
    Poison,
    Site,
    UnpackNode,
    Wait,
    template_of,
)
from .interop import ASYNC, TOOL, EpicFunction, call_kind

__all__ = ["STRATEGIES", "CallNode", "Evaluator", "make_closure"]

STRATEGIES = ("opportunistic", "opportunistic-dfs", "random", "sequential")
RULES = ("beta", "delta", "dispatch", "resolve", "project")

_TOKEN = Cell(None)               # the io token of a call that carries none (never aliased into)
_POOL: ThreadPoolExecutor | None = None
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


_GC = {"depth": 0, "saved": None}


def _gc_relax(delta: int) -> None:
    """While any run reduces, collect young objects less often. A reduction allocates millions of
    short-lived cells that reference counting frees; at the default threshold (700) the cyclic
    collector ran thousands of times per 10^6 steps, found nothing, and made large runs up to 2x
    slower per step. Cycles are still collected, at a 100x larger threshold."""
    _GC["depth"] += delta
    if delta > 0 and _GC["depth"] == 1:
        _GC["saved"] = gc.get_threshold()
        g0, g1, g2 = _GC["saved"]
        gc.set_threshold(max(g0, 70_000), g1, g2)
    elif delta < 0 and _GC["depth"] == 0 and _GC["saved"] is not None:
        gc.set_threshold(*_GC["saved"])
        _GC["saved"] = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="epic-tool")
    return _POOL


def make_closure(fn: Function, globals: dict | None, defaults: tuple = ()) -> Closure:
    """A top-level closure for `fn` (a program or an `@epic` function), with host default values."""
    from .intrinsics import INTRINSICS
    return Closure(template_of(fn, INTRINSICS), (), tuple(Cell(d) for d in defaults), globals)


class Evaluator:
    """One run of one program. Create, then `await ev.call(closure, args)` (see api.py)."""

    def __init__(self, *, strategy: str = "opportunistic", seed: int = 0, namespace: dict | None = None,
                 trace: bool | str = True, filename: str = "<epic>", observers: list[Callable] | None = None,
                 backend: Any = None, options: dict | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.sequential = strategy == "sequential"
        self.namespace = namespace
        self.filename = filename
        self.first_line = 1
        self.result_cell: Cell | None = None        # the program's value (set by api._execute)
        self.exports: list[str] | None = None       # its top-level names, in the value pack's order
        self.backend_spec = backend
        self.options = options or {}
        self.trace_on = bool(trace)
        self.full_trace = trace == "full"
        self.trace: list[Event] = []
        self.observers = list(observers or ())
        if strategy == "opportunistic":
            q: Any = deque()
            self._pop = q.popleft
            self._push_many = q.extend
        else:
            q = []
            self._pop = q.pop if strategy != "random" else self._pop_random
            self._push_many = (lambda nodes: q.extend(reversed(nodes))) if strategy != "random" else q.extend
            self._rng = random.Random(seed)
        self.queue = q
        self._push = q.append
        # counters (attributes, not a dict: this is the hot path)
        self.n_beta = self.n_delta = self.n_dispatch = self.n_resolve = self.n_project = 0
        self.calls: list[CallRecord] = []
        self.failures: list[CallRecord] = []
        self.inflight: dict[asyncio.Task, tuple[CallNode, CallRecord]] = {}
        self._done: list[tuple[asyncio.Task, CallNode, CallRecord]] = []
        self._blocking = False
        self._wakeup: asyncio.Future | None = None
        self._busy = True
        self._feeders: list[Any] = []
        self._backend: Any = None
        self._backend_task: asyncio.Task | None = None
        self._loading_since = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.start = self.end = 0.0
        self.state = "created"
        self._last_steps_event = 0.0
        self._observer_errors = 0
        self.handed_closures = 0                    # closures converted for host code (see _host_call)
        self._host_node: CallNode | None = None
        self.recorder: Any = None                   # a runtime.recorder.Recorder (`%%epic --step`)

    # ------------------------------------------------------------------------------------ counters
    @property
    def steps(self) -> int:
        return self.n_beta + self.n_delta + self.n_dispatch + self.n_resolve + self.n_project

    def rule_counts(self) -> dict[str, int]:
        return {"beta": self.n_beta, "delta": self.n_delta, "dispatch": self.n_dispatch,
                "resolve": self.n_resolve, "project": self.n_project}

    # ------------------------------------------------------------------------------------- events
    def emit(self, kind: str, call: CallRecord | None = None, **data: Any) -> None:
        if not (self.trace_on or self.observers):
            return
        ev = Event(kind, clock(), call, data)
        if self.trace_on:
            self.trace.append(ev)
        for cb in self.observers:
            try:
                cb(ev)
            except Exception:                  # an observer must never break the run
                self._observer_errors += 1

    def write(self, text: str) -> None:
        """Program output (print): to stdout now, and to the trace for views that replay it."""
        sys.stdout.write(text)
        self.emit("print", text=text)

    # ------------------------------------------------------------------------------------ backends
    async def backend(self) -> Any:
        """The run's LLM backend, resolved on first use (a program that never calls `llm()` never
        loads a model) in a worker thread (loading weights takes seconds and must not freeze the
        loop, which in a notebook is the kernel's), once per run however many calls wait for it; a
        failure to load is kept and given to every call instead of being retried per call. Joins
        the backend's feeders so its batcher hears about quiescence."""
        if self._backend is not None:
            return self._backend
        if self._backend_task is None:
            from ..llm.registry import resolve_backend  # runtime does not import llm at module level
            ready = resolve_backend(self.backend_spec, self.options, construct=False)
            if ready is not None:                    # an instance, or one this process already loaded
                self._backend = ready
                self.join_feeders(ready)
                return ready
            self._backend_task = self.loop.create_task(
                asyncio.to_thread(resolve_backend, self.backend_spec, self.options))
            self._loading_since = clock()
            self.emit("backend.loading", label=self._backend_label())
            self._backend_task.add_done_callback(self._backend_loaded)
        # the calls waiting for the model are queued, and their latency starts once it is loaded
        rec = _ctx._CALL.get()
        if rec is not None:
            rec.state = "queued"
        backend = await asyncio.shield(self._backend_task)
        if rec is not None and rec.state == "queued":
            rec.state = "running"
            rec.start = clock()
        if self._backend is None:
            self._backend = backend
            self.join_feeders(backend)
        return backend

    def _backend_label(self) -> str:
        try:
            from ..llm.registry import describe_spec
            return describe_spec(self.backend_spec, self.options.get("model"))
        except Exception:                        # a label must never break the run
            return str(self.backend_spec or "the default model")

    def _backend_loaded(self, task: asyncio.Task) -> None:
        seconds = clock() - self._loading_since
        if task.cancelled() or task.exception() is not None:
            self.emit("backend.failed", seconds=seconds)
        else:
            self.emit("backend.ready", seconds=seconds, label=self._backend_label())

    def join_feeders(self, backend: Any) -> None:
        feeders = getattr(backend, "feeders", None)
        if feeders is None:
            return
        f = feeders.join()
        if not self._busy:
            f.quiescent()
        self._feeders.append(f)

    def _set_busy(self, busy: bool) -> None:
        if busy == self._busy:
            return
        self._busy = busy
        if busy:
            for f in self._feeders:
                f.busy()
        elif self._feeders and self.loop is not None:
            # after the tasks just dispatched have run their first step (and so submitted their
            # requests): a flush before that would start a batch with only the first arrivals
            self.loop.call_soon(self._notify_quiescent)

    def _notify_quiescent(self) -> None:
        if not self._busy:
            for f in self._feeders:
                f.quiescent()

    # ----------------------------------------------------------------------------- cell plumbing
    def bind(self, cell: Cell, v: Any) -> None:
        cell.val = v
        ws = cell.waiters
        if ws:
            cell.waiters = None
            self._push_many(ws) if len(ws) > 1 else self._push(ws[0])

    def alias(self, a: Cell, b: Cell) -> None:
        """Rewire every use of `a` (a fresh output) to `b`: the O(1) rewrite behind beta/project."""
        while b.fwd is not None:
            b = b.fwd
        v = b.val
        if v is not PENDING:
            self.bind(a, v)
            return
        if a is b:
            return
        a.fwd = b
        ws = a.waiters
        if ws:
            a.waiters = None
            if b.waiters is None:
                b.waiters = ws
            else:
                b.waiters.extend(ws)

    @staticmethod
    def park(node: Any, cell: Cell) -> None:
        while cell.fwd is not None:
            cell = cell.fwd
        if cell.waiters is None:
            cell.waiters = [node]
        else:
            cell.waiters.append(node)

    @staticmethod
    def whnf(cell: Cell) -> tuple[Any, Cell]:
        """The cell's value without looking inside packs: (value or PENDING, the root cell)."""
        v = cell.val
        if v is PENDING:
            while cell.fwd is not None:
                cell = cell.fwd
            v = cell.val
        return v, cell

    def to_host(self, cell: Cell) -> Any:
        """A fully evaluated Python value (packs become lists/tuples, closures EpicFunctions).
        Raises Wait(cell) if some part is pending, Poison(err) if some part failed."""
        v = cell.val
        if v is PENDING:
            while cell.fwd is not None:
                cell = cell.fwd
            v = cell.val
            if v is PENDING:
                raise Wait(cell)
        cls = v.__class__
        if cls is PackVal:
            if v.kind == "cons":                         # a stream: all of it, once it has ended
                return [self.to_host(c) for c in self.stream_cells(v)]
            items = [self.to_host(c) for c in v.items]
            kind = v.kind
            if kind == "list":
                return items
            return tuple(items) if kind == "tuple" else iter(items)      # an iterator: one pass, no len()
        if cls is ErrorVal:
            raise Poison(v)
        if cls is Closure:
            self._require_captures(v)
            self.handed_closures += 1
            at = self._host_node
            return EpicFunction(v, backend=self.backend_spec, strategy=self.strategy, parent=self,
                                path=at.identity() if at is not None else 0)
        if cls is LazySeq:                              # host code consumes a generator whole
            return (x for x in self.to_host(materialize(self, v)))
        return v

    def _require_captures(self, clo: Closure) -> None:
        """Raise Wait until every value `clo` captured (through packs and other closures) is there.

        Host code calls the Python callable it gets synchronously, in a nested run that cannot wait
        for this run's pending cells: handed over early, a callback would see `None` where a captured
        value was still being computed (`map(lambda q: q * k, xs)` while `k` is pending). Errors are
        values here: the callback fails only if it uses one, as in Python."""
        seen = {id(clo)}
        stack = [*clo.captured, *clo.defaults]
        while stack:
            v, root = self.whnf(stack.pop())
            if v is PENDING:
                raise Wait(root)
            cls = v.__class__
            if (cls is PackVal or cls is Closure) and id(v) not in seen:
                seen.add(id(v))
                if cls is PackVal:
                    stack.extend(v.items)
                else:
                    stack.extend(v.captured)
                    stack.extend(v.defaults)

    def stream_cells(self, v: PackVal) -> list[Cell]:
        """The element cells of a finished stream; raises Wait on the first pending tail."""
        out = []
        while v.kind == "cons":
            head, tail = v.items
            out.append(head)
            v, root = self.whnf(tail)
            if v is PENDING:
                raise Wait(root)
            if v.__class__ is ErrorVal:
                raise Poison(v)
        out.extend(v.items)
        return out

    def host_args(self, node: CallNode) -> tuple[list, dict] | None:
        """Converted arguments, or None after parking/poisoning the node."""
        to_host = self.to_host
        self._host_node = node                       # where an epic function handed to host code came from
        try:
            vals = [to_host(a) for a in node.args]
        except Wait as w:
            self.park(node, w.cell)
            return None
        except Poison as p:
            self.poison(node, p.err)
            return None
        kw = node.site.kwnames
        if kw:
            k = len(kw)
            return vals[:-k], dict(zip(kw, vals[-k:], strict=True))
        return vals, {}

    def emit_lazily(self, nodes: Any) -> None:
        """Queue the calls a structural step produces (one per loop iteration) a chunk at a time:
        a 10^6-iteration loop must not build all its nodes in one step and stall the event loop."""
        self._emit_chunk(_Emitter(nodes))

    def _emit_chunk(self, em: _Emitter) -> None:
        chunk = list(itertools.islice(em.nodes, _EMIT_CHUNK))
        if len(chunk) == _EMIT_CHUNK:
            if self.strategy == "opportunistic":
                self._push_many(chunk)
                self._push(em)
            else:                                  # LIFO: the emitter goes under this chunk
                self._push(em)
                self._push_many(chunk)
        elif chunk:
            self._push_many(chunk)

    def adopt(self, calls: list[CallRecord]) -> None:
        """Calls made by a nested run (an epic callback that host code called) belong to this run's
        record too: renumbered after this run's own."""
        for rec in calls:
            rec.id = len(self.calls) + 1
            self.calls.append(rec)

    # ------------------------------------------------------------------------------------- errors
    def fail(self, node: CallNode, exc: BaseException, rec: CallRecord | None = None) -> ErrorVal:
        """Record a failure at the node's source line; the node's output becomes the error value."""
        err = ErrorVal(exc, self._failure(node, exc, rec))
        self.poison(node, err)
        return err

    def _failure(self, node: CallNode, exc: BaseException, rec: CallRecord | None = None) -> CallRecord:
        if rec is None:
            now = clock()
            rec = CallRecord(id=0, fn=node.site.name or "call", site_line=node.site.line, start=now, end=now)
        rec.error = exc
        rec.state = "failed"
        rec.site = f"{self.filename}:{node.site.line}" if node.site.line else self.filename
        rec.result_preview = f"{type(exc).__name__}: {exc}"[:200]
        self.failures.append(rec)
        return rec

    def poison(self, node: CallNode, err: ErrorVal) -> None:
        """The node depends on a failed value: its output is that error; its io token passes on.

        A latent error (a missing global, an unbound local: no origin yet) becomes a failure where it
        is first used, as Python reports a NameError at the use, not at the definition."""
        if err.origin is None:
            err.origin = self._failure(node, err.error)
        self.pass_io(node)
        self.bind(node.out, err)

    # --------------------------------------------------------------------------------- the rules
    def step_call(self, node: CallNode) -> None:
        f = node.fn
        v = f.val
        if v is PENDING:
            while f.fwd is not None:
                f = f.fwd
            v = f.val
            if v is PENDING:
                self.park(node, f)
                return
        cls = v.__class__
        if cls is Closure:
            self._beta(v, node)
        elif cls is Intrinsic:
            v.apply(self, node)
        elif cls is EpicFunction:
            self._beta(v.closure, node)
        elif cls is ErrorVal:
            self.poison(node, v)
        else:
            self._host_call(v, node)

    def _beta(self, clo: Closure, node: CallNode) -> None:
        t = clo.tmpl
        self.n_beta += 1
        args = node.args
        if node.site.kwnames or len(args) != t.nparams:
            try:
                args = self._match_args(clo, node)
            except TypeError as e:
                self.n_beta -= 1
                self.fail(node, e)
                return
        r = t.empty_ret_param
        if r is not None:                              # Church booleans and identities: pure rewiring
            self.alias(node.out, args[r])
            if node.io_out is not None:
                self.alias(node.io_out, node.io_in)
            return
        # calls inside library code (an `@epic` function from another file) remember the line of
        # the run's own code that led to them: what the view's "line" column shows
        origin = node.origin
        if origin is None and t.filename is not None and t.filename != self.filename:
            origin = node.site.line
        cells = list(args)
        cells.append(_TOKEN if node.io_in is None else node.io_in)
        cells += clo.captured
        cells += [Cell(v) for v in t.prim_values]
        if t.unbound:                                  # names read before assignment: fresh latent errors
            for i, u in t.unbound:
                cells[i] = Cell(ErrorVal(_unbound_error(u)))
        cells += [Cell() for _ in range(t.nother)]
        new = []
        path = hash((node.path, node.site.uid))
        for op in t.ops:
            code = op[0]
            if code == CALL:
                ii = op[4]
                io = op[5]
                new.append(CallNode(cells[op[2]], [cells[i] for i in op[3]], cells[op[1]],
                                    None if ii is None else cells[ii], None if io is None else cells[io], op[6],
                                    path, origin))
            elif code == DEF:
                cells[op[1]].val = Closure(op[2], tuple([cells[i] for i in op[3]]),
                                           tuple([cells[i] for i in op[4]]), clo.globals)
            elif code == PACK:
                cells[op[1]].val = PackVal(tuple([cells[i] for i in op[2]]), op[3])
            elif code == UNPACK:
                self._unpack([cells[i] for i in op[1]], cells[op[2]], op[3])
            else:
                cells[op[1]].val = self._global(op[2], op[3], clo.globals, op[4])
        if new:
            self._push_many(new)
        self.alias(node.out, cells[t.ret])
        if node.io_out is not None:
            self.alias(node.io_out, cells[t.io_out])

    def _match_args(self, clo: Closure, node: CallNode) -> list:
        t = clo.tmpl
        n = t.nparams
        kw = node.site.kwnames
        args = node.args
        npos = len(args) - len(kw)
        if npos > n:
            raise TypeError(f"{t.name}() takes {n} positional argument{'s' * (n != 1)} but {npos} were given")
        out: list = list(args[:npos]) + [None] * (n - npos)
        for k, c in zip(kw, args[npos:], strict=True):
            try:
                i = t.param_names.index(k)
            except ValueError:
                raise TypeError(f"{t.name}() got an unexpected keyword argument {k!r}") from None
            if out[i] is not None:
                raise TypeError(f"{t.name}() got multiple values for argument {k!r}")
            out[i] = c
        first_default = n - len(clo.defaults)
        for i in range(n):
            if out[i] is None:
                if i < first_default:
                    raise TypeError(f"{t.name}() missing required argument {t.param_names[i]!r}")
                out[i] = clo.defaults[i - first_default]
        return out

    def _global(self, name: str, line: int | None, ns: dict | None, soft: bool = False) -> Any:
        """A free name: the host namespace, then epic's builtins, then Python's. A name the program
        reads that exists nowhere is a NameError at once (as in Python, even if the value goes
        unused); a *soft* lookup (the translator's, for a name carried out of a branch or loop that
        may never be assigned) only fails where it is used."""
        if ns is not None and name in ns:
            return ns[name]
        if name in _ctx.BUILTINS:
            return _ctx.BUILTINS[name]
        try:
            return getattr(_py_builtins, name)
        except AttributeError:
            err = ErrorVal(NameError(f"name {name!r} is not defined"))
            if not soft:
                now = clock()
                err.origin = CallRecord(id=0, fn=name, site_line=line, start=now, end=now, state="failed",
                                        error=err.error, site=f"{self.filename}:{line}",
                                        result_preview=f"NameError: {err.error}")
                self.failures.append(err.origin)
            return err

    def _unpack(self, outs: list, src: Cell, line: int | None) -> None:
        v, root = self.whnf(src)
        if v is PENDING:
            self.park(UnpackNode(outs, root, line), root)
            return
        self._project(outs, v, line)

    def _project(self, outs: list, v: Any, line: int | None) -> None:
        cls = v.__class__
        if cls is PackVal and v.kind == "cons":
            try:
                v = self.to_host(Cell(v))
            except Wait as w:
                self.park(UnpackNode(outs, Cell(v), line), w.cell)
                return
            except Poison as p:
                v = p.err
            cls = v.__class__
        if cls is PackVal:
            items = v.items
            if len(items) == len(outs):
                self.n_project += 1
                for o, c in zip(outs, items, strict=True):
                    self.alias(o, c)
                return
            err: Any = ValueError(f"cannot unpack {len(items)} values into {len(outs)} names (line {line})")
        elif cls is ErrorVal:
            for o in outs:
                self.bind(o, v)
            return
        elif cls is LazySeq:                        # unpacking consumes a generator whole
            self._unpack(outs, materialize(self, v), line)
            return
        else:                                       # a host value: a tuple/list from Python, a string...
            try:
                vals = list(v)
            except TypeError as e:
                err = TypeError(f"cannot unpack non-iterable {type(v).__name__} object")
                err.__cause__ = e
            except Exception as e:                  # a host iterator that raised while iterated
                err = unwrap(e)
            else:
                if len(vals) == len(outs):
                    self.n_project += 1
                    for o, x in zip(outs, vals, strict=True):
                        self.bind(o, x)
                    return
                err = ValueError(f"cannot unpack {len(vals)} values into {len(outs)} names (line {line})")
        rec = CallRecord(id=0, fn="unpack", site_line=line, start=clock(), end=clock(), state="failed", error=err,
                         site=f"{self.filename}:{line}", result_preview=f"{type(err).__name__}: {err}")
        self.failures.append(rec)
        e = ErrorVal(err, rec)
        for o in outs:
            self.bind(o, e)

    def _host_call(self, f: Any, node: CallNode) -> None:
        special = STRUCTURAL.get(id(f))
        if special is not None and guarded(special, self, node):
            out = node.out
            if id(f) not in IO_AWARE and (out.val is not PENDING or out.fwd is not None):
                self.pass_io(node)                  # done (not parked): it ran no epic code, printed nothing
            return
        if node.io_out is not None:
            self._materialize_args(node)
        handed = self.handed_closures
        conv = self.host_args(node)
        if conv is None:
            return
        pos, kw = conv
        kind = call_kind(f)
        if kind != 0:
            self.pass_io(node)
            self._dispatch(f, pos, kw, node, kind)
            return
        if node.io_out is not None and self.handed_closures != handed:
            # host code that calls epic code back may print: after the prints before it, before
            # the prints after it (a nested run prints when the host calls it)
            t, troot = self.whnf(node.io_in)
            if t is PENDING:
                self.park(node, troot)
                return
        self.pass_io(node)
        self.n_delta += 1
        try:
            r = f(*pos, **kw)
        except Exception as e:
            self.fail(node, unwrap(e))
            return
        if inspect.isawaitable(r) or hasattr(r, "__anext__"):
            self.n_delta -= 1                         # an awaitable or an async generator (a stream)
            self._dispatch(f, pos, kw, node, ASYNC, awaitable=r)
            return
        self.bind(node.out, r)

    def _materialize_args(self, node: CallNode) -> None:
        """Generators passed to host code are evaluated whole before the call, their elements'
        prints in the caller's place in program order (the host consumes them when it runs)."""
        for a in node.args:
            v, _root = self.whnf(a)
            if v.__class__ is LazySeq and v.full is None:
                materialize(self, v, node)

    def pass_io(self, node: CallNode) -> None:
        """The node does not print: the print token flows past it."""
        if node.io_out is not None:
            self.alias(node.io_out, node.io_in)
            node.io_out = None

    # ------------------------------------------------------------------------ dispatch / resolve
    def _dispatch(self, f: Any, pos: list, kw: dict, node: CallNode, kind: int, awaitable: Any = None) -> None:
        self.n_dispatch += 1
        name = getattr(f, "__epic_name__", None) or node.site.name or getattr(f, "__name__", "call")
        rec = CallRecord(id=len(self.calls) + 1, fn=name.rsplit(".", 1)[-1] if "(" not in name else name,
                         site_line=node.site.line, start=clock(), state="running",
                         user_line=node.site.line if node.origin is None else node.origin)
        rec.site = f"{self.filename}:{node.site.line}" if node.site.line else self.filename
        rec.args_preview = _preview_args(pos, kw)
        rec.path = node.identity()
        self.calls.append(rec)
        if awaitable is not None:
            coro = awaitable
        elif kind == TOOL:
            coro = self._in_thread(f, pos, kw)
        else:
            try:
                coro = f(*pos, **kw)
            except Exception as e:
                rec.end = clock()
                self.fail(node, e, rec)
                self.emit("call.failed", rec)
                return
        ctx = contextvars.copy_context()
        ctx.run(_ctx._CALL.set, rec)
        ctx.run(_ctx._RUN.set, self)
        task = self.loop.create_task(_awaiting(coro), context=ctx)
        self.inflight[task] = (node, rec)
        task.add_done_callback(self._task_done)
        self.emit("call.dispatch", rec)
        if self.sequential:
            self._blocking = True

    async def _in_thread(self, f: Callable, pos: list, kw: dict) -> Any:
        return await self.loop.run_in_executor(_pool(), lambda: f(*pos, **kw))

    def _task_done(self, task: asyncio.Task) -> None:
        entry = self.inflight.pop(task, None)
        if entry is None:
            return
        self._done.append((task, *entry))
        self._wake()

    def _drain(self) -> None:
        done, self._done = self._done, []
        for task, node, rec in done:
            rec.end = clock()
            self.n_resolve += 1
            if self.full_trace:
                self.emit("step", rule="resolve", text=f"{rec.fn} #{rec.id}{_at_line(rec.site_line)}",
                          step=self.steps)
            if task.cancelled():
                rec.state = "cancelled"
                err = ErrorVal(asyncio.CancelledError(f"call {rec.id} was cancelled"), rec)
                rec.error = err.error
                self.bind(node.out, err)
                self.emit("call.cancelled", rec)
                continue
            exc = task.exception()
            if exc is not None:
                self.fail(node, exc, rec)
                self.emit("call.failed", rec)
                continue
            value = task.result()
            if value is _STREAM_END:                     # a stream's last chunk has been spliced in
                rec.state = "done"
                rec.result_preview = _short(rec.streamed)
                self.bind(node.out, PackVal((), "list"))
                self.emit("call.done", rec)
                continue
            if hasattr(value, "__anext__"):              # a stream: a list whose tail is still pending
                rec.end = None
                self.n_resolve -= 1
                self._start_pump(value, node, rec)
                continue
            rec.state = "done"
            rec.result_preview = _repr.repr(value) if not isinstance(value, str) else _short(value)
            self.bind(node.out, value)
            self.emit("call.done", rec)

    def _start_pump(self, agen: Any, node: CallNode, rec: CallRecord) -> None:
        tail = _Tail(node.out, node.site)
        ctx = contextvars.copy_context()
        ctx.run(_ctx._CALL.set, rec)
        ctx.run(_ctx._RUN.set, self)
        task = self.loop.create_task(self._pump(agen, tail, rec), context=ctx)
        self.inflight[task] = (tail, rec)
        task.add_done_callback(self._task_done)

    async def _pump(self, agen: Any, tail: _Tail, rec: CallRecord) -> Any:
        """Splice each chunk in as it arrives: the list's cell becomes (chunk, next pending cell), so
        consumers of the prefix step now (a resolve step per chunk)."""
        async for chunk in agen:
            cell = tail.out
            tail.out = nxt = Cell()
            self.n_resolve += 1
            if self.full_trace:
                self.emit("step", rule="resolve", text=f"{rec.fn} #{rec.id} chunk{_at_line(rec.site_line)}",
                          step=self.steps)
            rec.streamed += str(chunk)
            self.bind(cell, PackVal((Cell(chunk), nxt), "cons"))
            self.emit("call.stream", rec, chunk=chunk)
            self._wake()
        return _STREAM_END

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    # ---------------------------------------------------------------------------------- driving
    def _pop_random(self) -> Any:
        q = self.queue
        i = self._rng.randrange(len(q))
        q[i], q[-1] = q[-1], q[i]
        return q.pop()

    def _run_slice(self, budget: float = 0.001) -> None:
        """Step ready nodes for about `budget` seconds (or until a sequential call blocks)."""
        q = self.queue
        pop = self._pop
        step_call = self.step_call
        deadline = clock() + budget
        n = 0
        if self.full_trace:
            return self._run_slice_traced(deadline)
        while q:
            node = pop()
            cls = node.__class__
            if cls is CallNode:
                step_call(node)
            elif cls is UnpackNode:
                self._unpack(node.outs, node.src, node.line)
            else:
                self._emit_chunk(node)
            if self._blocking:
                return
            n += 1
            if not n & 127 and clock() > deadline:
                return

    def _run_slice_traced(self, deadline: float) -> None:
        q = self.queue
        while q and not self._blocking:
            node = self._pop()
            before = self.rule_counts()
            if node.__class__ is CallNode:
                self.step_call(node)
                name = node.site.name or "call"
                what = ("enter the program" if name == "<program>" else name) + _at_line(node.site.line)
            elif node.__class__ is UnpackNode:
                self._unpack(node.outs, node.src, node.line)
                what = "unpack" + _at_line(node.line)
            else:
                self._emit_chunk(node)
                continue
            after = self.rule_counts()
            rule = next((r for r in RULES if after[r] != before[r]), None)
            if rule is not None and len(self.trace) < 20000:
                self.emit("step", rule=rule, text=what, step=self.steps)
            if self.recorder is not None:
                self.recorder.step(self, rule, node)
            if clock() > deadline:
                return

    async def drive(self) -> None:
        """Reduce until nothing can step and no call is in flight."""
        self.loop = asyncio.get_running_loop()
        _gc_relax(+1)
        try:
            while True:
                if self._done:
                    self._drain()
                if self._blocking and not self.inflight:
                    self._blocking = False                # the sequential call (and its stream) ended
                if self.queue and not self._blocking:
                    self._set_busy(True)
                    self._run_slice()
                    now = clock()
                    if now - self._last_steps_event > 0.05:
                        self._last_steps_event = now
                        self.emit("steps", steps=self.steps, rules=self.rule_counts())
                    if self.queue and not self._blocking:
                        await asyncio.sleep(0)            # let in-flight calls and the UI progress
                    continue
                if not self.inflight:
                    if self._done:
                        continue
                    break
                # quiescent: no pure redex left; every remaining step waits on a call
                self._set_busy(False)
                self.emit("quiescent", steps=self.steps)
                self._wakeup = self.loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
        except Exception as exc:               # user errors are error values; this is our bug
            await self.cancel_inflight()
            raise EpicInternalError(f"internal error in the evaluator ({type(exc).__name__}: {exc}); "
                                    "please file a bug with the program that triggered it") from exc
        except BaseException:                  # cancellation, KeyboardInterrupt
            await self.cancel_inflight()
            raise
        finally:
            _gc_relax(-1)
            self._set_busy(False)
            for f in self._feeders:
                f.leave()
            self._feeders.clear()

    async def cancel_inflight(self) -> None:
        tasks = list(self.inflight)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for t in tasks:
            entry = self.inflight.pop(t, None)
            if entry is not None:
                self._done.append((t, *entry))
        for t, _node, rec in self._done:
            if t.cancelled() or rec.end is None:
                rec.state = "cancelled"
                rec.end = rec.end or clock()
                self.emit("call.cancelled", rec)
        self._done.clear()

    # -------------------------------------------------------------------------------- entry point
    def start_call(self, clo: Closure, args: list[Any], kwargs: dict[str, Any] | None = None,
                   path: int = 0) -> Cell:
        """Enqueue `clo(*args, **kwargs)` with host values; returns the result cell. `path`: where the
        call sits in an enclosing run (a callback's k-th call by host code), for sample identity."""
        kwargs = kwargs or {}
        out = Cell()
        cells = [Cell(a) for a in args] + [Cell(v) for v in kwargs.values()]
        node = CallNode(Cell(clo), cells, out, None, None, Site(clo.tmpl.line, clo.tmpl.name, tuple(kwargs)), path)
        self._push(node)
        return out


def _unbound_error(u: Any) -> Exception:
    return UnboundLocalError(f"cannot access local variable {u.name!r} where it is not associated with a value")


async def _awaiting(aw: Any) -> Any:
    return aw if hasattr(aw, "__anext__") else await aw


_STREAM_END = object()
_EMIT_CHUNK = 1024


class _Emitter:
    """A queued generator of nodes (see Evaluator.emit_lazily)."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: Any):
        self.nodes = nodes


class _Tail:
    """The pending end of a stream (a node-like holder so a failure can poison it)."""

    __slots__ = ("out", "site", "io_in", "io_out")

    def __init__(self, out: Cell, site: Site):
        self.out = out
        self.site = site
        self.io_in = self.io_out = None


def _short(s: str, n: int = 80) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def _preview_args(pos: list, kw: dict) -> str:
    parts = [_short(a, 60) if isinstance(a, str) else _repr.repr(a) for a in pos]
    parts += [f"{k}={_repr.repr(v)}" for k, v in kw.items()]
    return _short(", ".join(parts), 120)


def _at_line(line: int | None) -> str:
    """" (line 3)" for the trace, nothing when a step has no source line (the program's entry)."""
    return f" (line {line})" if line else ""


from . import callbacks  # noqa: E402,F401  (these modules use Evaluator's helpers; this one installs map/sorted/...)
from .intrinsics import IO_AWARE, STRUCTURAL, Intrinsic, guarded  # noqa: E402
from .lazy import LazySeq, materialize  # noqa: E402
