"""`run` / `run_async`: compile a program, evaluate it, collect a RunResult.

`run` is synchronous and works anywhere: in a plain script it runs its own event loop; in a thread
that already runs one (a notebook) it hands the program to a private loop thread, because blocking
the running loop would deadlock the calls it waits for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import EpicError, EpicInterrupted
from ..lang import compile_program
from ..lang.ir import Pack
from . import context as _ctx
from .evaluator import Evaluator
from .events import clock
from .failures import failure_message, failure_record
from .graph import Cell, PackVal, Poison, Wait
from .interop import EpicFunction, install_runner
from .intrinsics import make_closure
from .options import MAX_CALLS, RunOptions
from .result import RunResult

__all__ = ["RunOptions", "call_function", "call_function_async", "run", "run_async"]


class RunHandle:
    """What the caller of a blocking run can reach while it runs: the evaluator (to report what is
    finished when the user interrupts) and an event set when the run has ended."""

    def __init__(self) -> None:
        self.ev: Evaluator | None = None
        self.ended = threading.Event()


async def run_async(source: str, *, strategy: str = "opportunistic", backend: Any = None, model: str | None = None,
                    namespace: dict | None = None, trace: bool | str = True, seed: int = 0,
                    filename: str = "<epic>", first_line: int = 1, observers: list[Callable] | None = None,
                    cache: bool | None = None, handle: RunHandle | None = None, recorder: Any = None,
                    max_calls: int | None = MAX_CALLS) -> RunResult:
    """Compile and run `source`; awaitable form of `run` (same arguments).

    `recorder`: a `runtime.recorder.Recorder` that records every reduction step (for the stepper;
    it implies `trace="full"`).

    Raises EpicSyntaxError before anything runs; EpicError (with `.result`, the partial RunResult)
    if any call failed. Cancelling the awaiting task cancels every in-flight call."""
    if recorder is not None:
        trace, observers = "full", [recorder.on_event, *(observers or ())]
    options = RunOptions(strategy=strategy, backend=backend, model=model, trace=trace, seed=seed, filename=filename,
                         first_line=first_line, cache=cache, observers=tuple(observers or ()), max_calls=max_calls)
    fn = compile_program(source, filename=filename, first_line=first_line)
    ns = namespace if namespace is not None else {}
    ev = Evaluator(options, namespace=ns)
    ev.recorder = recorder
    ev.export_uids = _export_places(fn)
    if handle is not None:
        handle.ev, ev.ended = ev, handle.ended
    return await _execute(ev, make_closure(fn, ns), [], {}, exports=list(fn.exports), source=source)


def _export_places(fn: Any) -> list[int]:
    """Where each top-level name gets its final value in the program's body (its variable's id,
    which orders like the body's calls): a failing run keeps only the names assigned before it stopped."""
    pack = next((s for s in fn.body if isinstance(s, Pack) and s.out is fn.ret), None)
    return [v.id for v in pack.items[1:]] if pack is not None else []


def run(source: str, *, strategy: str = "opportunistic", backend: Any = None, model: str | None = None,
        namespace: dict | None = None, trace: bool | str = True, seed: int = 0, filename: str = "<epic>",
        first_line: int = 1, observers: list[Callable] | None = None, cache: bool | None = None,
        recorder: Any = None, max_calls: int | None = MAX_CALLS) -> RunResult:
    """Compile and run `source` to completion.

    `strategy`: "opportunistic" (the default), "sequential" (plain Python's order, the baseline),
    "opportunistic-dfs" or "random" (ordered by `seed`): options.STRATEGIES. `backend`: a Backend instance or a name
    ("sim", "transformers", "openai", "vllm", "replay"; None: the session default), `model` for a
    named one. `namespace`: the globals the program reads and the names it defines are written
    back to (a notebook's). `trace`: True keeps call events, "full" every reduction step too.
    `observers` get every event as it happens. `cache` reuses answers to identical requests.
    `recorder` (runtime.recorder.Recorder) records every reduction step, for the stepper view.
    `max_calls`: the run's call budget (options.MAX_CALLS = 10,000 unless set; None: none); the
    call that would go over it fails with CallLimitExceeded at its line, which stops the run.

    A failing program stops where Python stops: the first failure in program order is the error;
    work before it completes (its calls finish, its prints appear), work after it never starts and
    its calls in flight are cancelled. Raises EpicSyntaxError before anything runs, EpicError (with
    the partial RunResult; `failures[0]` is Python's error, the rest were found before the run
    stopped) if anything failed, EpicInterrupted on Ctrl-C (in-flight calls are cancelled first)."""
    handle = RunHandle()
    return _blocking(lambda: run_async(source, strategy=strategy, backend=backend, model=model, namespace=namespace,
                                       trace=trace, seed=seed, filename=filename, first_line=first_line,
                                       observers=observers, cache=cache, handle=handle, recorder=recorder,
                                       max_calls=max_calls), handle)


async def call_function_async(f: EpicFunction, args: tuple, kwargs: dict, *, strategy: str = "opportunistic",
                              backend: Any = None, model: str | None = None, trace: bool | str = True,
                              observers: list[Callable] | None = None, handle: RunHandle | None = None,
                              parent: Evaluator | None = None, path: int = 0) -> RunResult:
    """Run an epic function called from Python. `parent`: the run whose host code called it (a
    callback); its calls are added to that run's record."""
    options = RunOptions(strategy=strategy, backend=backend, model=model, trace=trace, observers=tuple(observers or ()))
    ev = Evaluator(options, namespace=f.closure.globals)
    if handle is not None:
        handle.ev, ev.ended = ev, handle.ended
    try:
        return await _execute(ev, f.closure, list(args), kwargs, exports=None, source=f.__name__, path=path)
    finally:
        if parent is not None:
            parent.adopt(ev.calls)


def call_function(f: EpicFunction, args: tuple, kwargs: dict, **options: Any) -> RunResult:
    """The blocking form of `call_function_async` (what calling an EpicFunction from Python does)."""
    handle = RunHandle()
    return _blocking(lambda: call_function_async(f, args, kwargs, handle=handle, **options), handle)


install_runner(call_function, call_function_async)


# -------------------------------------------------------------------------------------- internals
async def _execute(ev: Evaluator, clo: Any, args: list, kwargs: dict, *, exports: list[str] | None,
                   source: str, path: int = 0) -> RunResult:
    token = _ctx._RUN.set(ev)
    ev.start = clock()
    ev.state = "running"
    ev.emit("run.start", source=source, strategy=ev.strategy, backend=str(ev.backend_spec or "default"),
            max_calls=ev.max_calls)
    out = ev.start_call(clo, args, kwargs, path)
    ev.result_cell, ev.exports = out, exports       # so an interrupt can report what is resolved
    try:
        await ev.drive()
    except asyncio.CancelledError:
        ev.end = clock()
        ev.state = "cancelled"
        ev.emit("steps", steps=ev.steps, rules=ev.rule_counts())
        ev.emit("run.end", ok=False, elapsed=ev.end - ev.start, steps=ev.steps, error="cancelled")
        raise
    finally:
        _ctx._RUN.reset(token)
        if ev.ended is not None:
            ev.ended.set()
    ev.end = clock()
    ev.emit("steps", steps=ev.steps, rules=ev.rule_counts())
    if not ev.failures:
        _check_value(ev, out, exports is not None)
    ev.state = "failed" if ev.failures else "done"
    failures = ev.ordered_failures()             # the one the run stopped at first (Python's error)
    result = partial_result(ev, out, exports)
    result.failures = failures
    ev.emit("run.end", ok=not failures, elapsed=result.elapsed, steps=result.steps,
            error=None if not failures else f"{len(failures)} failed", max_calls=ev.max_calls)
    if failures:
        raise EpicError(failure_message(ev, source, failures), failures, result)
    return result


def partial_result(ev: Evaluator, out: Cell | None = None, exports: list[str] | None = None) -> RunResult:
    """Whatever the run has produced so far: finished calls, resolved names (for errors and interrupts)."""
    if out is None:
        out, exports = getattr(ev, "result_cell", None), getattr(ev, "exports", None)
    value: Any = None
    namespace: dict[str, Any] = {}
    if out is not None:
        v, root = ev.whnf(out)
        if exports is not None and v.__class__ is PackVal:
            cells = v.items
            value = _host_or_none(ev, cells[0]) if ev.stop is None else None    # a failed program has no value
            places = getattr(ev, "export_uids", None)
            kept = ev.kept_exports(exports, places) if places and len(places) == len(exports) else set(exports)
            for name, c in zip(exports, cells[1:], strict=False):
                if name not in kept:
                    continue                    # assigned after the error: Python never assigns it
                try:
                    namespace[name] = ev.to_host(c)
                except (Wait, Poison):
                    pass
        else:
            value = _host_or_none(ev, root)
    end = ev.end or clock()
    return RunResult(value=value, namespace=namespace, calls=list(ev.calls), steps=ev.steps,
                     elapsed=end - ev.start, trace=ev.trace, rules=ev.rule_counts(), strategy=ev.strategy,
                     failures=list(ev.failures), start=ev.start, state=ev.state)


def _check_value(ev: Evaluator, out: Cell, program: bool) -> None:
    """The program's value (or the function's result) is an error nobody reported yet (an unbound
    name that was only returned or shown): Python would raise, so the run fails."""
    v, root = ev.whnf(out)
    if program and v.__class__ is PackVal and v.items:
        root = v.items[0]
    try:
        ev.to_host(root)
    except Poison as p:
        if p.err.origin is None:
            rec = failure_record(p.err.error, fn="value", line=None, filename=ev.filename)
            p.err.origin = rec
            ev.failures.append(rec)
    except Wait:
        pass


def _host_or_none(ev: Evaluator, cell: Cell) -> Any:
    try:
        return ev.to_host(cell)
    except (Wait, Poison):
        return None


def _interrupted(handle: RunHandle) -> EpicInterrupted:
    ev = handle.ev
    if ev is None:
        return EpicInterrupted("interrupted before the run started")
    ev.state = "cancelled"
    res = partial_result(ev)
    done = sum(c.state == "done" for c in ev.calls)
    cancelled = sum(c.state == "cancelled" for c in ev.calls)
    return EpicInterrupted(f"interrupted: {done} call{'s' * (done != 1)} finished, {cancelled} cancelled",
                           [], res)


async def _owning_loop(make: Callable[[], Coroutine], handle: RunHandle) -> Any:
    """Run on a loop this call created and will close: first let the run's backend release what it
    bound to the loop (an HTTP client left open would be cleaned up on a closed loop at exit)."""
    try:
        return await make()
    finally:
        backend = handle.ev.loaded_backend if handle.ev is not None else None
        if backend is not None:
            await backend.loop_ending()


def _blocking(make: Callable[[], Coroutine], handle: RunHandle) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            return asyncio.run(_owning_loop(make, handle))
        except KeyboardInterrupt:
            raise _interrupted(handle) from None
    loop = _loop_thread()
    if threading.current_thread() is _LOOP_THREAD:
        # a nested call (epic -> Python -> epic, e.g. sorted(key=lambda ...)) made on the private
        # loop itself: blocking that loop on itself would deadlock, so run on a fresh one
        return _in_fresh_thread(make, handle)
    fut = asyncio.run_coroutine_threadsafe(make(), loop)
    try:
        return fut.result()
    except KeyboardInterrupt:
        fut.cancel()                 # cancels the run's task; wait until it has cancelled its calls
        if handle.ev is not None and handle.ev.state == "running":
            handle.ended.wait(timeout=3)
        raise _interrupted(handle) from None


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_THREAD: threading.Thread | None = None
_LOOP_LOCK = threading.Lock()


def in_fresh_thread(make: Callable[[], Coroutine], name: str = "epic-nested") -> Any:
    """Run the coroutine `make()` on a new event loop in a new thread and wait for it; its exception
    is raised here. For blocking callers whose own thread already runs a loop they must not block
    on (a nested run on the private loop, `compare()` in a notebook)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as e:          # re-raised in the calling thread
            box["error"] = e

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _in_fresh_thread(make: Callable[[], Coroutine], handle: RunHandle) -> Any:
    return in_fresh_thread(lambda: _owning_loop(make, handle))


def _loop_thread() -> asyncio.AbstractEventLoop:
    """One private event loop in a daemon thread, for `run()` called where a loop already runs."""
    global _LOOP, _LOOP_THREAD
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            _LOOP_THREAD = threading.Thread(target=loop.run_forever, name="epic-loop", daemon=True)
            _LOOP_THREAD.start()
            _LOOP = loop
        return _LOOP
