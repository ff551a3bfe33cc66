"""The opportunistic evaluator: reduce the term graph, dispatch every external call as soon as its
arguments are values, splice results back in when they resolve.

One engine runs every strategy, so comparisons are like for like; only the order in which ready
nodes are taken and whether a dispatched call blocks differ:

    opportunistic       FIFO ready queue (breadth first); calls run concurrently   (the default)
    opportunistic-dfs   LIFO ready queue (a body's statements first);  concurrently
    random              a seeded random ready node each step;          concurrently
    sequential          LIFO, and each dispatched call is awaited before anything else steps:
                        what plain Python does, the baseline

The rules themselves (docs/design.md: beta, delta, dispatch, resolve, project) are one function
each in rules.py; this module holds the state they rewrite (cells, the ready queue, calls in flight)
and the loop that steps them, counting and tracing each rule that fires in one place (`tally`). The
gc rule is reference counting (see graph.py).

A node that cannot step parks on the one cell it waits for and is re-enqueued when that cell is
bound, so the queue only ever holds nodes that may step: no polling, O(1) per rewrite.

A failing run stops where Python stops (order.py): every failure is noted at its place in program
order, and the first one becomes the stop. Work before it goes on to the end; work after it is
dropped from the queue, its calls in flight are cancelled, and the rules that start new work (beta,
dispatch, a host call, a print) ask `stop.after` first, so nothing after it begins. The checks cost
one attribute test per body instantiated while no failure has happened.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import sys
from collections import deque
from typing import Any

from ..errors import CallLimitExceeded, EpicInternalError
from . import callbacks  # noqa: F401  (installs map/filter/sorted/min/max over epic functions)
from .backends import BackendLink
from .events import CallRecord, Event, clock
from .failures import failure_record
from .graph import (
    NOTHING,
    PENDING,
    RULES,
    CallNode,
    Cell,
    Closure,
    ErrorVal,
    PackVal,
    Poison,
    Site,
    UnpackNode,
    Wait,
    root_frame,
)
from .interop import EpicFunction
from .intrinsics import make_closure
from .lazy import LazySeq, materialize
from .options import STRATEGIES, RunOptions
from .order import StopPoint
from .rules import at_line, resolve, step, unpack

__all__ = ["STRATEGIES", "CallNode", "Evaluator", "make_closure"]

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


class Evaluator(BackendLink):
    """One run of one program. Create, then `await ev.drive()` after `start_call` (see api.py)."""

    def __init__(self, options: RunOptions | None = None, *, namespace: dict | None = None):
        self.options = o = options or RunOptions()
        self.strategy = o.strategy
        self.sequential = o.strategy == "sequential"
        self.namespace = namespace
        self.filename = o.filename
        self.first_line = o.first_line
        self.result_cell: Cell | None = None        # the program's value (set by api._execute)
        self.exports: list[str] | None = None       # its top-level names, in the value pack's order
        self.export_uids: list[int] | None = None   # where each of them is last assigned (api._export_places)
        self.trace_on = bool(o.trace)
        self.full_trace = o.trace == "full"
        self.trace: list[Event] = []
        self.observers = list(o.observers)
        self.recorder: Any = None                   # a runtime.recorder.Recorder (`%%epic --step`)
        if o.strategy == "opportunistic":
            q: Any = deque()
            self._pop = q.popleft
            self.push_many = q.extend
        else:
            q = []
            self._pop = q.pop if o.strategy != "random" else self._pop_random
            self.push_many = (lambda nodes: q.extend(reversed(nodes))) if o.strategy != "random" else q.extend
            self._rng = random.Random(o.seed)
        self.queue = q
        self.push = q.append
        self.fired = NOTHING                        # the rule the current step fired (rules.py sets it)
        self.counts = [0] * (len(RULES) + 1)        # how often each rule fired, by rule number
        self.calls: list[CallRecord] = []
        self.failures: list[CallRecord] = []
        # the first failure in program order found so far: work after it is work Python never does
        # (no body instantiated, no call started, no print written; its calls in flight cancelled)
        self.stop: StopPoint | None = None
        self.max_calls = o.max_calls                # the call budget (CallLimitExceeded past it)
        self.placed: list[tuple[CallRecord, tuple, int]] = []   # each dispatched call's place in program order
        self.inflight: dict[asyncio.Task, tuple[Any, CallRecord]] = {}
        self._done: list[tuple[asyncio.Task, Any, CallRecord]] = []
        self.blocking = False                       # a sequential run waits for its dispatched call
        self._wakeup: asyncio.Future | None = None
        self._init_backend(o.backend)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.start = self.end = 0.0
        self.state = "created"
        self._last_steps_event = 0.0
        self._observer_errors = 0
        self.handed_closures = 0                    # closures converted for host code (see rules.delta)
        self._host_node: CallNode | None = None
        self.sample_counts: dict[str, int] = {}     # llm(): samples drawn per call identity
        self.ended: Any = None                      # a threading.Event set when the run ends (api)

    # ------------------------------------------------------------------------------------ counters
    @property
    def steps(self) -> int:
        return sum(self.counts)

    def rule_counts(self) -> dict[str, int]:
        return dict(zip(RULES, self.counts[1:], strict=True))

    def tally(self, rule: int, what: Any) -> None:
        """Count a rule that fired, and trace it when the run keeps a full trace. `what` is the node
        that stepped (or a description, for resolves that happen outside the step loop)."""
        self.counts[rule] += 1
        if self.full_trace and len(self.trace) < 20000:
            self.emit("step", rule=RULES[rule - 1], text=_describe(what), step=self.steps)

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

    # ----------------------------------------------------------------------------- cell plumbing
    def bind(self, cell: Cell, v: Any) -> None:
        """The one write of a cell: single assignment is what makes any order of steps give the same
        value (the property the differential tests check across strategies)."""
        assert cell.val is PENDING and cell.fwd is None, f"a cell is bound once: {cell!r} <- {v!r}"
        cell.val = v
        ws = cell.waiters
        if ws:
            cell.waiters = None
            self.push_many(ws) if len(ws) > 1 else self.push(ws[0])

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
        assert cell.val is PENDING, "a node parks only on a cell that is still pending"
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
        if self.stop is not None and chunk and self.after_stop(chunk[0]):
            return                                 # emitted in program order: the rest is after it too
        if len(chunk) == _EMIT_CHUNK:
            if self.strategy == "opportunistic":
                self.push_many(chunk)
                self.push(em)
            else:                                  # LIFO: the emitter goes under this chunk
                self.push(em)
                self.push_many(chunk)
        elif chunk:
            self.push_many(chunk)

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
        rec = failure_record(exc, fn=node.site.name or "call", line=node.site.line, filename=self.filename, rec=rec)
        self.note_failure(rec, node.frame, node.site.uid)
        return rec

    def note_failure(self, rec: CallRecord, frame: tuple, uid: int) -> bool:
        """A failure at (frame, uid) in program order. Recorded unless it lies after the stop (work
        Python never reaches); the first one in program order becomes the stop. False: not recorded."""
        st = self.stop
        if st is not None and st.after(frame, uid):
            return False
        self.failures.append(rec)
        if st is None or st.before(frame, uid):
            self._stop_at(StopPoint(frame, uid, rec))
        return True

    def _stop_at(self, st: StopPoint) -> None:
        """Stop the run at `st`: drop the queued work after it and cancel its calls in flight (the
        same cancellation as an interrupt: the engine sees it). Work before it goes on."""
        self.stop = st
        q = self.queue
        keep = [n for n in q if not self.after_stop(n)]
        if len(keep) != len(q):
            q.clear()
            q.extend(keep)
        for task, (node, _rec) in list(self.inflight.items()):
            if self.after_stop(node):
                task.cancel()
        for rec, frame, uid in self.placed:          # finished before the failure was known
            if rec.state == "done" and st.after(frame, uid):
                rec.state = "cancelled"
                rec.result_preview = "(finished after the point where the run stopped: discarded)"
                self.emit("call.cancelled", rec)
        self.emit("run.stopping", line=st.rec.site_line)

    def after_stop(self, node: Any) -> bool:
        """Does this queued node or in-flight call lie after the stop in program order?"""
        st = self.stop
        if st is None:
            return False
        if node.__class__ is UnpackNode:
            return node.pos is not None and st.after(*node.pos)
        frame = getattr(node, "frame", None)
        return frame is not None and st.after(frame, node.site.uid)

    def kept_exports(self, names: list[str], uids: list[int]) -> set[str]:
        """The program's top-level names that Python would have assigned before the stop (`uids`:
        the place of each name's last assignment in the program's body)."""
        st = self.stop
        if st is None:
            return set(names)
        limit = st.key_at(1)
        return {n for n, u in zip(names, uids, strict=True) if limit is None or u < limit}

    def ordered_failures(self) -> list[CallRecord]:
        """The failures with the one the run raises first: the first in program order; the others
        (found before the run stopped) follow as secondary, in the order they happened."""
        st = self.stop
        if st is None or not self.failures:
            return list(self.failures)
        first = st.rec
        same = (first.site_line, type(first.error), str(first.error))
        # the same operation failing twice in one place is one failure (a bad unpack is checked in
        # the print token's order and then fails again where its names are projected)
        return [first, *(f for f in self.failures if f is not first and
                         (f.id or (f.site_line, type(f.error), str(f.error)) != same))]

    def over_budget(self) -> CallLimitExceeded | None:
        """The error for one call too many (None while the run is within its call budget)."""
        n = self.max_calls
        if n is None or len(self.calls) < n:
            return None
        return CallLimitExceeded(
            f"the run reached its call budget of {n:,} calls (a loop that keeps calling?); raise it with "
            f"run(..., max_calls=N), `%%epic --max-calls N` or `epic run --max-calls N`")

    def poison(self, node: CallNode, err: ErrorVal) -> None:
        """The node depends on a failed value: its output is that error. Its print token does not
        pass: whatever follows it in program order is after a failure, which Python never reaches.

        A latent error (a missing global, an unbound local: no origin yet) becomes a failure where it
        is first used, as Python reports a NameError at the use, not at the definition."""
        if err.origin is None:
            err.origin = self._failure(node, err.error)
        self.bind(node.out, err)

    def pass_io(self, node: CallNode) -> None:
        """The node has finished without failing: the print token flows past it (prints after it
        in program order wait for this)."""
        if node.io_out is not None:
            self.alias(node.io_out, node.io_in)
            node.io_out = None

    # ---------------------------------------------------------------------------------- driving
    def task_done(self, task: asyncio.Task) -> None:
        entry = self.inflight.pop(task, None)
        if entry is None:
            return
        self._done.append((task, *entry))
        self.wake()

    def wake(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    def _drain(self) -> None:
        done, self._done = self._done, []
        for task, node, rec in done:
            resolve(self, task, node, rec)

    def _pop_random(self) -> Any:
        q = self.queue
        i = self._rng.randrange(len(q))
        q[i], q[-1] = q[-1], q[i]
        return q.pop()

    def _run_slice(self, budget: float = 0.001) -> None:
        """Step ready nodes for about `budget` seconds (or until a sequential call blocks). Each
        step's rule is counted here (and traced by `tally` when the run keeps a full trace)."""
        q = self.queue
        pop = self._pop
        counts = self.counts
        traced = self.full_trace
        deadline = clock() + budget
        n = 0
        while q:
            node = pop()
            cls = node.__class__
            if cls is CallNode:
                step(self, node)
            elif cls is UnpackNode:
                unpack(self, node.outs, node.src, node.line)
            else:
                self._emit_chunk(node)
                continue
            rule = self.fired
            if rule:
                self.fired = NOTHING
                if traced:
                    self.tally(rule, node)
                else:
                    counts[rule] += 1
            if traced and self.recorder is not None:      # the stepper: every step, parks included
                self.recorder.step(self, RULES[rule - 1] if rule else None, node)
            if self.blocking:
                return
            n += 1
            if (traced or not n & 127) and clock() > deadline:
                return

    async def drive(self) -> None:
        """Reduce until nothing can step and no call is in flight."""
        self.loop = asyncio.get_running_loop()
        _gc_relax(+1)
        try:
            while True:
                if self._done:
                    self._drain()
                if self.blocking and not self.inflight:
                    self.blocking = False                 # the sequential call (and its stream) ended
                if self.queue and not self.blocking:
                    self.set_busy(True)
                    self._run_slice()
                    now = clock()
                    if now - self._last_steps_event > 0.05:
                        self._last_steps_event = now
                        self.emit("steps", steps=self.steps, rules=self.rule_counts())
                    if self.queue and not self.blocking:
                        await asyncio.sleep(0)            # let in-flight calls and the UI progress
                    continue
                if not self.inflight:
                    if self._done:
                        continue
                    break
                # quiescent: no pure redex left; every remaining step waits on a call
                self.set_busy(False)
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
            self.leave_feeders()

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
        node = CallNode(Cell(clo), cells, out, None, None, Site(clo.tmpl.line, clo.tmpl.name, tuple(kwargs)),
                        root_frame(path))
        self.push(node)
        return out



def _describe(what: Any) -> str:
    """A step for the trace: "enter the program", "llm (line 3)", "unpack (line 4)"."""
    cls = what.__class__
    if cls is CallNode:
        name = what.site.name or "call"
        return ("enter the program" if name == "<program>" else name) + at_line(what.site.line)
    if cls is UnpackNode:
        return "unpack" + at_line(what.line)
    if cls is CallRecord:
        return f"{what.fn} #{what.id}{at_line(what.site_line)}"
    return str(what)


_EMIT_CHUNK = 1024


class _Emitter:
    """A queued generator of nodes (see Evaluator.emit_lazily)."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: Any):
        self.nodes = nodes

