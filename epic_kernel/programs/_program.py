"""What every library program shares: the `@program` decorator and the `emit_event` builtin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..runtime.context import current_run, register_builtin
from ..runtime.interop import EpicFunction, epic

__all__ = ["emit_event", "program"]

def program(fn: Callable) -> EpicFunction:
    """Compile `fn` as a library program (`@epic`: epic code inlines it; Python calls take run options)."""
    return epic(fn)


def emit_event(kind: str, **data: Any) -> None:
    """Send an event to the run's observers, e.g. ``emit_event("program.sot.point", index=1, text="Sleep")``
    for the live view's Skeleton-of-Thought panel. A plain function, called inline when its arguments
    are values; a no-op outside a run."""
    run = current_run()
    if run is not None:
        run.emit(kind, **data)


register_builtin("emit_event", emit_event)
