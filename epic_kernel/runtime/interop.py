"""Python <-> epic: how host functions are called, and how epic functions become Python callables.

- a plain `def` (or builtin) is called inline during a delta step: it must be cheap;
- an `async def` is dispatched: it runs as an asyncio task while the program keeps reducing;
- `@tool` marks a blocking function to be dispatched to a thread pool (file or network I/O, a
  subprocess, a slow library);
- `@epic` compiles a Python function into epic; the result is an `EpicFunction`, which epic code
  calls inline (beta) and Python code calls like any function (it runs the evaluator).
"""

from __future__ import annotations

import functools
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

from ..lang import compile_function
from .intrinsics import make_closure

__all__ = ["ASYNC", "SYNC", "TOOL", "EpicFunction", "call_kind", "epic", "install_runner", "tool"]

SYNC, ASYNC, TOOL = 0, 1, 2
_FAST_SYNC = (types.BuiltinFunctionType, types.BuiltinMethodType, type, types.MethodWrapperType,
              types.WrapperDescriptorType, types.MethodDescriptorType)


def call_kind(f: Any) -> int:
    """SYNC (call inline), ASYNC (dispatch as a task) or TOOL (dispatch to the thread pool)."""
    if isinstance(f, _FAST_SYNC):
        return SYNC
    if getattr(f, "__epic_tool__", False):
        return TOOL
    if inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(type(f).__call__ if callable(f) else None):
        return ASYNC
    return SYNC


def tool(fn: Callable | None = None, *, name: str | None = None) -> Any:
    """Mark a blocking function so epic dispatches it to a thread pool instead of calling it inline.

    The function is returned unchanged (still callable from Python); `name` is how the calls table
    shows it."""

    def mark(f: Callable) -> Callable:
        f.__epic_tool__ = True
        if name:
            f.__epic_name__ = name
        return f

    return mark(fn) if fn is not None else mark


# Keyword arguments a Python caller may add to an epic function's own: they choose how the run goes
# (see `run`). A function that has a parameter of the same name gets it as an argument instead.
RUN_OPTIONS = ("backend", "strategy", "model", "trace", "observers")


# How an epic function called from Python runs: `api` installs `call_function(_async)` on import.
# (api builds on the evaluator, which builds EpicFunctions: importing api here would be a cycle.)
_RUNNER: dict[str, Callable[..., Any]] = {}


def install_runner(call: Callable[..., Any], call_async: Callable[..., Any]) -> None:
    _RUNNER.update(call=call, call_async=call_async)


class EpicFunction:
    """An epic closure seen from Python. Calling it runs the evaluator (synchronously; `acall` is
    the awaitable form), with run options beside the function's arguments:
    ``sot("Why sleep?", backend="sim", strategy="sequential")``. Epic code that calls it
    instantiates its body inline, so its calls join the caller's opportunistic schedule (and its
    batches) instead of running as one opaque call."""

    def __init__(self, closure: Any, name: str | None = None, **run_options: Any):
        self.closure = closure
        self.__name__ = name or closure.tmpl.name
        self.__qualname__ = self.__name__
        self.__doc__ = f"epic function {self.__name__}({', '.join(closure.tmpl.param_names)})"
        self.run_options = run_options
        self._invocations = 0            # calls by host code so far (a callback's place, for samples)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        options = dict(self.run_options)
        params = self.closure.tmpl.param_names
        options.update({k: kwargs.pop(k) for k in RUN_OPTIONS if k in kwargs and k not in params})
        if "path" in options:                  # the k-th call by host code: its own place for samples
            self._invocations += 1
            options["path"] = hash((options["path"], self._invocations))
        return options, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs).value

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        options, kwargs = self._split(kwargs)
        return (await _RUNNER["call_async"](self, args, kwargs, **options)).value

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Like calling it, but returns the whole RunResult (calls, steps, trace)."""
        options, kwargs = self._split(kwargs)
        return _RUNNER["call"](self, args, kwargs, **options)

    def __repr__(self) -> str:
        return f"<epic function {self.__name__}({', '.join(self.closure.tmpl.param_names)})>"


def epic(fn: Callable | None = None, **run_options: Any) -> Any:
    """Compile a Python function to epic. Its free names resolve in the function's module globals.

    `@epic` or `@epic(strategy="sequential", backend="sim")`: options become the defaults of calls
    made from Python."""

    def compile_(f: Callable) -> EpicFunction:
        try:
            lines, first = inspect.getsourcelines(f)
        except (OSError, TypeError) as e:
            raise TypeError(f"@epic needs the source of {f.__name__!r} (define it in a file or a cell)") from e
        source = textwrap.dedent("".join(lines))
        filename = inspect.getsourcefile(f) or "<epic>"
        ir = compile_function(source, filename=filename, first_line=first)
        ir.filename = filename        # its template marks calls inside it as library calls (user_line)
        defaults = tuple(f.__defaults__ or ())
        clo = make_closure(ir, f.__globals__, defaults)
        ef = EpicFunction(clo, f.__name__, **run_options)
        functools.update_wrapper(ef, f, assigned=("__module__", "__doc__"), updated=())
        return ef

    return compile_(fn) if fn is not None else compile_
