"""Who is running: the evaluator and the external call in whose task code is executing.

Builtins such as `llm()` are plain async functions; they find their run (backend, cache, events)
and their `CallRecord` (to report tokens, batch and cache hits) through these context variables,
which asyncio copies into every task the evaluator creates.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .evaluator import Evaluator
    from .events import CallRecord

__all__ = ["BUILTINS", "builtin", "current_call", "current_run", "register_builtin"]

_RUN: contextvars.ContextVar[Evaluator | None] = contextvars.ContextVar("epic_run", default=None)
_CALL: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("epic_call", default=None)

# names every epic program sees after the host namespace and before Python's builtins (`llm`, ...)
BUILTINS: dict[str, Any] = {}


def register_builtin(name: str, value: Any) -> None:
    BUILTINS[name] = value


def builtin(name: str) -> Any:
    """A builtin of epic code (`lines`, `llm`, ...), for Python modules that write epic functions."""
    return BUILTINS[name]


def current_run() -> Evaluator | None:
    """The evaluator whose external call is running in this task (None outside epic code)."""
    return _RUN.get()


def current_call() -> CallRecord | None:
    """The record of the external call running in this task (None outside one)."""
    return _CALL.get()
