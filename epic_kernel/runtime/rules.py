"""The reduction rules of the calculus (docs/design.md), one function each.

    beta      a call of a closure: instantiate its body (fresh cells, new nodes), rewire its output
    delta     a call of a host function or a strict intrinsic whose arguments are values: compute it
    dispatch  a call of an external function (LLM, tool, async): start it; its output stays pending
    resolve   a dispatched call finished: bind its output (a stream: splice each chunk in)
    project   take the components of a pack (unpacking, indexing) without waiting for the others

`step` looks at a ready node's head and picks the rule. A rule that fires says so by setting
`ev.fired`; a node that parks on a pending cell or takes an error value fires nothing. Structural
intrinsics (structural.py, loops.py) are delta rules over partial data and say so the same way. The
step loop (`Evaluator._run_slice`) counts and traces what fired; `resolve`, which runs when a call's
task ends rather than in that loop, hands itself to the same `Evaluator.tally`.
"""

from __future__ import annotations

import asyncio
import builtins as _py_builtins
import contextvars
import inspect
import reprlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import unwrap
from ..text import clip
from . import context as _ctx
from .events import CallRecord, clock
from .failures import failure_record
from .graph import (
    BETA,
    CALL,
    DEF,
    DELTA,
    DISPATCH,
    NOTHING,
    PACK,
    PENDING,
    PROJECT,
    RESOLVE,
    RULES,
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
)
from .interop import ASYNC, TOOL, EpicFunction, call_kind
from .intrinsics import IO_AWARE, STRUCTURAL, Intrinsic, guarded
from .lazy import LazySeq, materialize
from .stepkit import count_mismatch, settle_io

if TYPE_CHECKING:
    from .evaluator import Evaluator

__all__ = ["BETA", "DELTA", "DISPATCH", "PROJECT", "RESOLVE", "RULES", "beta", "delta", "dispatch", "project",
           "resolve", "step", "unpack"]

_TOKEN = Cell(None)               # the io token of a call that carries none (never aliased into)
_POOL: ThreadPoolExecutor | None = None


class _Preview(reprlib.Repr):
    """reprlib for call previews: a function shows as its name, never as `<function f at 0x7f...>`
    (an address differs on every run and tells a reader nothing)."""

    def _named(self, obj: Any, level: int) -> str:
        return getattr(obj, "__name__", None) or type(obj).__name__

    repr_function = repr_builtin_function_or_method = repr_method = repr_EpicFunction = _named


_repr = _Preview()
_repr.maxstring = 60
_repr.maxother = 60


# ------------------------------------------------------------------------------------------- step
def step(ev: Evaluator, node: CallNode) -> None:
    """A ready call node: wait for its head, then the rule its head's kind calls for."""
    f = node.fn
    v = f.val
    if v is PENDING:
        while f.fwd is not None:
            f = f.fwd
        v = f.val
        if v is PENDING:
            ev.park(node, f)
            return
    cls = v.__class__
    if cls is Closure:
        beta(ev, v, node)
    elif cls is Intrinsic:
        v.apply(ev, node)
    elif cls is EpicFunction:
        beta(ev, v.closure, node)
    elif cls is ErrorVal:
        ev.poison(node, v)
    else:
        delta(ev, v, node)


# ------------------------------------------------------------------------------------------- beta
def beta(ev: Evaluator, clo: Closure, node: CallNode) -> None:
    """Instantiate the closure's template: one fresh cell per variable, one node per call statement;
    the call's output (and print token) become the body's. O(size of the body), never of the program."""
    t = clo.tmpl
    args = node.args
    if node.site.kwnames or len(args) != t.nparams:
        try:
            args = match_args(clo, node)
        except TypeError as e:
            ev.fail(node, e)
            return
    ev.fired = BETA
    r = t.empty_ret_param
    if r is not None:                              # Church booleans and identities: pure rewiring
        ev.alias(node.out, args[r])
        if node.io_out is not None:
            ev.alias(node.io_out, node.io_in)
        return
    if ev.stop is not None and ev.stop.after(node.frame, node.site.uid):
        ev.fired = NOTHING                         # after the failure that stops the run: Python never gets here
        return
    # calls inside library code (an `@epic` function from another file) remember the line of
    # the run's own code that led to them: what the view's "line" column shows
    origin = node.origin
    if origin is None and t.filename is not None and t.filename != ev.filename:
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
    f = node.frame
    uid = node.site.uid
    frame = (f, uid, hash((f[2], uid)))            # the body's place in the unfolding (graph.Frame)
    for op in t.ops:
        code = op[0]
        if code == CALL:
            ii = op[4]
            io = op[5]
            new.append(CallNode(cells[op[2]], [cells[i] for i in op[3]], cells[op[1]],
                                None if ii is None else cells[ii], None if io is None else cells[io], op[6],
                                frame, origin))
        elif code == DEF:
            cells[op[1]].val = Closure(op[2], tuple([cells[i] for i in op[3]]),
                                       tuple([cells[i] for i in op[4]]), clo.globals)
        elif code == PACK:
            cells[op[1]].val = PackVal(tuple([cells[i] for i in op[2]]), op[3])
        elif code == UNPACK:
            unpack(ev, [cells[i] for i in op[1]], cells[op[2]], op[3], (frame, op[4]))
        else:
            cells[op[1]].val = lookup_global(ev, op[2], op[3], clo.globals, op[4], (frame, op[5]))
    if new:
        ev.push_many(new)
    ev.alias(node.out, cells[t.ret])
    if node.io_out is not None:
        ev.alias(node.io_out, cells[t.io_out])


def match_args(clo: Closure, node: CallNode) -> list:
    """Python's binding of positional and keyword arguments to parameters (defaults included)."""
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


def lookup_global(ev: Evaluator, name: str, line: int | None, ns: dict | None, soft: bool = False,
                  pos: tuple | None = None) -> Any:
    """A free name: the host namespace, then epic's builtins, then Python's. A name the program
    reads that exists nowhere is a NameError at once (as in Python, even if the value goes
    unused), at `pos` in program order (frame, uid); a *soft* lookup (the translator's, for a name
    carried out of a branch or loop that may never be assigned) only fails where it is used."""
    if ns is not None and name in ns:
        return ns[name]
    if name in _ctx.BUILTINS:
        return _ctx.BUILTINS[name]
    try:
        return getattr(_py_builtins, name)
    except AttributeError:
        err = ErrorVal(NameError(f"name {name!r} is not defined"))
        if not soft:
            err.origin = failure_record(err.error, fn=name, line=line, filename=ev.filename)
            _note(ev, err.origin, pos)
        return err


def _note(ev: Evaluator, rec: CallRecord, pos: tuple | None) -> None:
    """A failure of an operation that is not a call node (a name lookup, an unpack) at `pos`."""
    if pos is None:
        ev.failures.append(rec)
    else:
        ev.note_failure(rec, *pos)


def _unbound_error(u: Any) -> Exception:
    return UnboundLocalError(f"cannot access local variable {u.name!r} where it is not associated with a value")


# ---------------------------------------------------------------------------------------- project
def unpack(ev: Evaluator, outs: list, src: Cell, line: int | None, pos: tuple | None = None) -> None:
    """`a, b = src`: project as soon as `src` is a pack (its components may still be pending)."""
    v, root = ev.whnf(src)
    if v is PENDING:
        ev.park(UnpackNode(outs, root, line, pos), root)
        return
    project(ev, outs, v, line, pos)


def project(ev: Evaluator, outs: list, v: Any, line: int | None, pos: tuple | None = None) -> None:
    """Bind each name in `outs` to a component of `v`: the pack's own cells (no waiting on them), or
    the items of a host iterable; a count mismatch is Python's ValueError at `line`."""
    cls = v.__class__
    if cls is PackVal and v.kind == "cons":
        try:
            v = ev.to_host(Cell(v))
        except Wait as w:
            ev.park(UnpackNode(outs, Cell(v), line, pos), w.cell)
            return
        except Poison as p:
            v = p.err
        cls = v.__class__
    if cls is PackVal:
        items = v.items
        if len(items) == len(outs):
            ev.fired = PROJECT
            for o, c in zip(outs, items, strict=True):
                ev.alias(o, c)
            return
        err: Any = count_mismatch(len(items), len(outs))
    elif cls is ErrorVal:
        for o in outs:
            ev.bind(o, v)
        return
    elif cls is LazySeq:                        # unpacking consumes a generator whole
        unpack(ev, outs, materialize(ev, v), line, pos)
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
                ev.fired = PROJECT
                for o, x in zip(outs, vals, strict=True):
                    ev.bind(o, x)
                return
            err = count_mismatch(len(vals), len(outs))
    rec = failure_record(err, fn="unpack", line=line, filename=ev.filename)
    _note(ev, rec, pos)
    e = ErrorVal(err, rec)
    for o in outs:
        ev.bind(o, e)


# ------------------------------------------------------------------------------------------ delta
def delta(ev: Evaluator, f: Any, node: CallNode) -> None:
    """A call of a host value: a builtin that works on partial data (STRUCTURAL), a plain Python
    call once every argument is a value, or (an external function, an awaitable) a dispatch."""
    special = STRUCTURAL.get(id(f))
    if special is not None and guarded(special, ev, node):
        if node.io_out is not None and id(f) not in IO_AWARE:
            settle_io(ev, node)                 # done (not parked, not failed): it ran no epic code
        return
    if node.io_out is not None:
        _materialize_args(ev, node)
    handed = ev.handed_closures
    conv = ev.host_args(node)
    if conv is None:
        return
    pos, kw = conv
    kind = call_kind(f)
    if kind != 0:
        dispatch(ev, f, pos, kw, node, kind)    # its print token passes when it returns (resolve)
        return
    if node.io_out is not None and ev.handed_closures != handed:
        # host code that calls epic code back may print: after the prints before it, before
        # the prints after it (a nested run prints when the host calls it)
        t, troot = ev.whnf(node.io_in)
        if t is PENDING:
            ev.park(node, troot)
            return
    if ev.stop is not None and ev.stop.after(node.frame, node.site.uid):
        return                                  # after the failure that stops the run: never called
    ev.fired = DELTA                            # an error it raises is its value
    try:
        r = f(*pos, **kw)
    except Exception as e:
        ev.fail(node, unwrap(e))
        return
    if inspect.isawaitable(r) or hasattr(r, "__anext__"):
        dispatch(ev, f, pos, kw, node, ASYNC, awaitable=r)      # an awaitable or an async generator (a stream)
        return
    if node.io_out is not None:
        ev.pass_io(node)
    ev.bind(node.out, r)



def _materialize_args(ev: Evaluator, node: CallNode) -> None:
    """Generators passed to host code are evaluated whole before the call, their elements'
    prints in the caller's place in program order (the host consumes them when it runs)."""
    for a in node.args:
        v, _root = ev.whnf(a)
        if v.__class__ is LazySeq and v.full is None:
            materialize(ev, v, node)


# --------------------------------------------------------------------------------------- dispatch
def dispatch(ev: Evaluator, f: Any, pos: list, kw: dict, node: CallNode, kind: int, awaitable: Any = None) -> None:
    """Start an external call as a task on the run's loop; its output cell stays pending until
    `resolve`. Under `sequential` the run blocks until it returns (plain Python's order). A function
    with a `__epic_preview__(*args, **kwargs) -> str` attribute says how its call reads in the views
    (a library wrapper shows the call it stands for, not its plumbing).

    A call after the failure that stops the run is never started (Python never makes it); a call
    past the run's call budget fails with CallLimitExceeded at its line, which stops the run there."""
    if ev.stop is not None and ev.stop.after(node.frame, node.site.uid):
        return
    if ev.max_calls is not None and len(ev.calls) >= ev.max_calls:
        ev.fail(node, ev.over_budget())
        return
    ev.fired = DISPATCH
    name = getattr(f, "__epic_name__", None) or node.site.name or getattr(f, "__name__", "call")
    rec = CallRecord(id=len(ev.calls) + 1, fn=name.rsplit(".", 1)[-1] if "(" not in name else name,
                     site_line=node.site.line, start=clock(), state="running",
                     user_line=node.site.line if node.origin is None else node.origin)
    rec.site = f"{ev.filename}:{node.site.line}" if node.site.line else ev.filename
    shown = getattr(f, "__epic_preview__", None)        # a function may say how its call reads
    rec.args_preview = _short(shown(*pos, **kw), 120) if shown is not None else _preview_args(pos, kw)
    rec.path = node.identity()
    ev.calls.append(rec)
    ev.placed.append((rec, node.frame, node.site.uid))
    if awaitable is not None:
        coro = awaitable
    elif kind == TOOL:
        coro = _in_thread(ev, f, pos, kw)
    else:
        try:
            coro = f(*pos, **kw)
        except Exception as e:
            rec.end = clock()
            ev.fail(node, e, rec)
            ev.emit("call.failed", rec)
            return
    # a coroutine becomes the task itself, so a call cancelled before it ever ran (the run stopped at
    # an earlier failure) is closed by the cancellation, never left "never awaited"
    _start_task(ev, coro if inspect.iscoroutine(coro) else _awaiting(coro), node, rec)
    ev.emit("call.dispatch", rec)
    if ev.sequential:
        ev.blocking = True


def _start_task(ev: Evaluator, coro: Any, node: Any, rec: CallRecord) -> None:
    ctx = contextvars.copy_context()
    ctx.run(_ctx._CALL.set, rec)
    ctx.run(_ctx._RUN.set, ev)
    task = ev.loop.create_task(coro, context=ctx)
    ev.inflight[task] = (node, rec)
    task.add_done_callback(ev.task_done)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="epic-tool")
    return _POOL


async def _in_thread(ev: Evaluator, f: Any, pos: list, kw: dict) -> Any:
    return await ev.loop.run_in_executor(_pool(), lambda: f(*pos, **kw))


async def _awaiting(aw: Any) -> Any:
    return aw if hasattr(aw, "__anext__") else await aw


# ---------------------------------------------------------------------------------------- resolve
def resolve(ev: Evaluator, task: asyncio.Task, node: Any, rec: CallRecord) -> None:
    """A dispatched call's task ended: bind its output to the value, the error or the cancellation;
    a stream's first result starts a pump that splices each chunk in as it arrives. Resolves happen
    outside the step loop, so this rule reports itself to the tally (before the call's own event,
    the order views read the trace in)."""
    rec.end = clock()
    if ev.stop is not None and ev.after_stop(node):
        _discard(ev, task, rec)
        return
    if not task.cancelled() and task.exception() is None and hasattr(task.result(), "__anext__"):
        rec.end = None                              # a stream: a list whose tail is still pending
        tail = _Tail(node.out, node.site, node.frame)
        _start_task(ev, _pump(ev, task.result(), tail, rec), tail, rec)
        if node.io_out is not None:
            ev.pass_io(node)                        # the stream started; its chunks are consumed in order
        return
    ev.tally(RESOLVE, rec)
    if task.cancelled():
        rec.state = "cancelled"
        err = ErrorVal(asyncio.CancelledError(f"call {rec.id} was cancelled"), rec)
        rec.error = err.error
        ev.bind(node.out, err)
        ev.emit("call.cancelled", rec)
        return
    exc = task.exception()
    if exc is not None:
        ev.fail(node, exc, rec)
        ev.emit("call.failed", rec)
        return
    value = task.result()
    if value is _STREAM_END:                        # a stream's last chunk has been spliced in
        rec.state = "done"
        rec.result_preview = _short(rec.streamed)
        ev.bind(node.out, PackVal((), "list"))
        ev.emit("call.done", rec)
        return
    rec.state = "done"
    rec.result_preview = _repr.repr(value) if not isinstance(value, str) else _short(value)
    if node.io_out is not None:
        ev.pass_io(node)
    ev.bind(node.out, value)
    ev.emit("call.done", rec)


def _discard(ev: Evaluator, task: asyncio.Task, rec: CallRecord) -> None:
    """A call for work after the failure that stopped the run: Python never made it, so whatever
    it returned is not a result. It is reported as cancelled, and its output stays unbound."""
    rec.state = "cancelled"
    if not task.cancelled() and task.exception() is None:
        rec.result_preview = "(finished after the run had stopped at an earlier failure: discarded)"
    rec.error = asyncio.CancelledError(f"call {rec.id} was cancelled: the run stopped at an earlier failure")
    ev.emit("call.cancelled", rec)


async def _pump(ev: Evaluator, agen: Any, tail: _Tail, rec: CallRecord) -> Any:
    """Splice each chunk in as it arrives: the list's cell becomes (chunk, next pending cell), so
    consumers of the prefix step now (a resolve per chunk)."""
    async for chunk in agen:
        cell = tail.out
        tail.out = nxt = Cell()
        ev.tally(RESOLVE, f"{rec.fn} #{rec.id} chunk{at_line(rec.site_line)}")
        rec.streamed += str(chunk)
        ev.bind(cell, PackVal((Cell(chunk), nxt), "cons"))
        ev.emit("call.stream", rec, chunk=chunk)
        ev.wake()
    return _STREAM_END


_STREAM_END = object()


class _Tail:
    """The pending end of a stream (a node-like holder so a failure can poison it)."""

    __slots__ = ("out", "site", "frame", "io_in", "io_out")

    def __init__(self, out: Cell, site: Site, frame: tuple):
        self.out = out
        self.site = site
        self.frame = frame
        self.io_in = self.io_out = None


# ------------------------------------------------------------------------------------------- text
def _short(s: str, n: int = 80) -> str:
    return clip(s, n, squash=False)


def _preview_args(pos: list, kw: dict) -> str:
    parts = [_short(a, 60) if isinstance(a, str) else _repr.repr(a) for a in pos]
    parts += [f"{k}={_repr.repr(v)}" for k, v in kw.items()]
    return _short(", ".join(parts), 120)


def at_line(line: int | None) -> str:
    """" (line 3)" for the trace, nothing when a step has no source line (the program's entry)."""
    return f" (line {line})" if line else ""

