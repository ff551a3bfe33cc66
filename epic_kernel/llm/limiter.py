"""A concurrency cap that adapts to the server (AIMD on 429s), for clients that fire hundreds of
concurrent calls at a server they do not control (the OpenAI backend)."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress

__all__ = ["AdaptiveLimiter"]


class AdaptiveLimiter:
    """An asyncio semaphore whose size adapts to the server: AIMD on 429s. Belongs to one loop.

    Invariants: `0 <= inflight`; `1 <= limit <= maximum`; a waiter is granted a slot only by
    `_wake`, which counts it into `inflight` before resolving its future, so a grant is never lost
    (a waiter cancelled after its grant hands the slot straight on).
    """

    def __init__(self, maximum: int):
        if maximum < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum      # the smallest cap reached so far (reported by benchmarks and tests)
        self.inflight = 0
        self.epoch = 0             # bumped by every decrease; a request remembers the epoch it started in
        self._gains = 0            # successes since the cap last grew
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot (FIFO); returns the epoch to pass to `overloaded()`."""
        if not self._waiters and self.inflight < self.limit:
            self.inflight += 1
            return self.epoch
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()
            else:
                with suppress(ValueError):
                    self._waiters.remove(fut)
            raise
        return self.epoch

    def release(self) -> None:
        self.inflight -= 1
        self._wake()

    def succeeded(self) -> None:
        """Additive increase: one more slot per window of `limit` successes (one per round trip, as in
        TCP). One slot per success would double the cap every round trip, and the cap would settle
        near twice what the server takes, with half the requests bounced by 429s."""
        if self.limit < self.maximum:
            self._gains += 1
            if self._gains >= self.limit:
                self._gains = 0
                self.limit += 1
                self._wake()

    def overloaded(self, epoch: int) -> None:
        """Multiplicative decrease, once per burst: 429s from requests admitted before the last
        decrease were caused by the old, larger cap and must not halve it again."""
        if epoch == self.epoch:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self.epoch += 1
            self._gains = 0

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.inflight += 1
                fut.set_result(None)
