"""A flusher driven by the event loop: many marks, at most one flush per interval.

One comm message per runtime event would trip Jupyter's IOPub rate limit (1000 msgs/s over 3 s)
and make the front end drop updates and prints (notes/jupyter.md section 3.3). Views mutate
plain Python state freely, `mark()` it dirty, and the Coalescer calls `flush()` at most every
`interval` seconds, plus a `tick` (elapsed-time refresh) while nothing else happens, plus once at
`close()`. With interval 0.1 s a view sends <= 10 messages a second whatever the number of calls.

Threading: `mark()` and the scheduled flushes run on the loop the Coalescer is bound to (the loop
that runs the program, which also calls the observers); `close()` may run on another thread only
once that loop no longer marks (after the run ended).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Coalescer"]


class Coalescer:
    def __init__(self, flush: Callable[[], None], *, interval: float = 0.1, tick: float | None = None):
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval}")
        self.flush = flush
        self.interval = interval
        self.tick = tick                   # flush at least this often while open, even unmarked
        self.loop: asyncio.AbstractEventLoop | None = None
        self.flushes = 0
        self._handle: asyncio.TimerHandle | None = None
        self._last = float("-inf")         # loop.time() of the last flush
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the loop that will call `mark()` (done on the first mark when not given)."""
        self.loop = loop
        if self.tick is not None:
            self._schedule(self.tick)

    def mark(self) -> None:
        """Something changed: flush within `interval` (called on the loop's thread)."""
        if self._closed:
            return
        if self.loop is None:
            self.bind(asyncio.get_running_loop())
        loop = self.loop
        delay = max(0.0, self._last + self.interval - loop.time())
        if self._handle is not None:
            if self._handle.when() <= loop.time() + delay:
                return                       # a flush is already due soon enough
            self._handle.cancel()
        self._handle = loop.call_later(delay, self._run)

    def _schedule(self, delay: float) -> None:
        if self._handle is None and not self._closed:
            self._handle = self.loop.call_later(delay, self._run)

    def _run(self) -> None:
        self._handle = None
        if self._closed:
            return
        self._last = self.loop.time()
        self._flush()
        if self.tick is not None:
            self._schedule(self.tick)

    def _flush(self) -> None:
        self.flushes += 1
        self.flush()

    def stop(self) -> None:
        """Stop scheduling (on the loop's thread, e.g. when the run ends); no final flush."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """Stop and flush once more, so the final state is always sent."""
        self.stop()
        self._flush()
