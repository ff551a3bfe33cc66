"""How a run gets its LLM backend without the runtime importing the `llm` layer.

The runtime sits below `llm` (README, architecture): it knows that a run has *a* backend, not which
kinds exist. `llm.registry` installs the provider when it is imported (importing `epic_kernel` does
that), and the evaluator asks it here. A run resolves its backend on first use, in a worker thread
(loading weights takes seconds and must not freeze the loop, which in a notebook is the kernel's),
once per run however many calls wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import context as _ctx
from .events import clock

if TYPE_CHECKING:
    from .evaluator import Evaluator

__all__ = ["BackendLink", "BackendProvider", "install_provider", "provider"]


class BackendProvider(Protocol):
    def resolve(self, spec: Any, options: dict[str, Any], *, construct: bool = True) -> Any:
        """The backend for `spec` (None, a name, an instance). With construct=False, None instead
        of building (loading) one that this process does not have yet."""

    def describe(self, spec: Any, model: str | None) -> str:
        """What `spec` names, for people, without loading anything."""


class _Functions:
    def __init__(self, resolve: Callable[..., Any], describe: Callable[..., str]):
        self.resolve, self.describe = resolve, describe


_PROVIDER: list[BackendProvider] = []


def install_provider(resolve: Callable[..., Any], describe: Callable[..., str]) -> None:
    """Called once by `llm.registry` on import."""
    _PROVIDER[:] = [_Functions(resolve, describe)]


def provider() -> BackendProvider:
    if not _PROVIDER:
        raise RuntimeError("no LLM backend provider is installed: import epic_kernel (which loads epic_kernel.llm)")
    return _PROVIDER[0]


class BackendLink:
    """The evaluator's side: its backend, the loading events the live view shows, and the batcher's
    feeders that hear when this run is busy or quiescent."""

    backend_spec: Any
    options: Any
    loop: asyncio.AbstractEventLoop | None
    emit: Callable[..., None]

    def _init_backend(self, spec: Any) -> None:
        self.backend_spec = spec
        self._backend: Any = None
        self._backend_task: asyncio.Task | None = None
        self._loading_since = 0.0
        self._feeders: list[Any] = []
        self._busy = True

    @property
    def loaded_backend(self) -> Any:
        """The backend once this run has resolved it (None before its first `llm()` call)."""
        return self._backend

    def _backend_options(self) -> dict[str, Any]:
        return {"model": self.options.model, "cache": self.options.cache}

    async def backend(self: Evaluator) -> Any:
        """The run's LLM backend, resolved on first use (a program that never calls `llm()` never
        loads a model); a failure to load is kept and given to every call instead of being retried
        per call. Joins the backend's feeders so its batcher hears about quiescence."""
        if self._backend is not None:
            return self._backend
        if self._backend_task is None:
            ready = provider().resolve(self.backend_spec, self._backend_options(), construct=False)
            if ready is not None:                    # an instance, or one this process already loaded
                self._backend = ready
                self.join_feeders(ready)
                return ready
            self._backend_task = self.loop.create_task(
                asyncio.to_thread(provider().resolve, self.backend_spec, self._backend_options()))
            self._loading_since = clock()
            self.emit("backend.loading", label=self.backend_label())
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

    def backend_label(self) -> str:
        try:
            return provider().describe(self.backend_spec, self.options.model)
        except Exception:                        # a label must never break the run
            return str(self.backend_spec or "the default model")

    def _backend_loaded(self, task: asyncio.Task) -> None:
        seconds = clock() - self._loading_since
        if task.cancelled() or task.exception() is not None:
            self.emit("backend.failed", seconds=seconds)
        else:
            self.emit("backend.ready", seconds=seconds, label=self.backend_label())

    def join_feeders(self, backend: Any) -> None:
        feeders = getattr(backend, "feeders", None)
        if feeders is None:
            return
        f = feeders.join()
        if not self._busy:
            f.quiescent()
        self._feeders.append(f)

    def set_busy(self, busy: bool) -> None:
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

    def leave_feeders(self) -> None:
        self.set_busy(False)
        for f in self._feeders:
            f.leave()
        self._feeders.clear()
