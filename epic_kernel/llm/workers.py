"""Model worker threads stop before the interpreter finalizes, whether or not anyone closed them.

The batcher's decode thread and vLLM's engine-loop thread are daemon threads, so a backend nobody
closed never keeps a script alive. Left running at exit, though, they abort the process: torch's
Python bindings release the GIL around every op and take it back in a C++ destructor (pybind11's
`gil_scoped_release`). Once the interpreter finalizes, CPython ends a daemon thread that asks for
the GIL with `pthread_exit`, whose forced stack unwinding through that `noexcept` destructor calls
`std::terminate`: "terminate called without an active exception", exit 134. It happened only when
the process ended while the thread was inside torch (a decode step, the eviction of a finished row),
hence rarely, and more often on a busy machine.

So every worker registers here when it starts, and one `atexit` handler closes them all: the
current step finishes, the thread leaves its loop and is joined, and only then does finalization
begin. `atexit` rather than `threading._register_atexit`: it runs after the interpreter has joined
the non-daemon threads, so a user's thread still generating at the end of the main script keeps its
model until it is done.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol

__all__ = ["Worker", "register", "stop_all"]


class Worker(Protocol):
    """Anything that owns a thread and stops (and joins) it in `close()`; closing twice is harmless."""

    def close(self) -> None: ...


_live: weakref.WeakSet[Worker] = weakref.WeakSet()
_lock = threading.Lock()
_hooked = False


def register(worker: Worker) -> None:
    """Close `worker` at interpreter exit unless it was closed (or collected) before. The exit hook is
    installed on first use, after torch is imported, so it runs before any exit hook torch installs."""
    global _hooked
    with _lock:
        _live.add(worker)
        if not _hooked:
            atexit.register(stop_all)
            _hooked = True


def stop_all() -> None:
    """Close every registered worker (the exit hook; also safe to call at any time)."""
    with _lock:
        workers = list(_live)
        _live.clear()
    for w in workers:
        try:
            w.close()
        except Exception:         # exiting anyway: one worker's failure must not keep the others running
            pass
