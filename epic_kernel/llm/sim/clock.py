"""The sim's clock: how long answers take. A fixed latency per request, or batches paced like a GPU
decoding them together (see the package docstring for the cost model)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..base import LLMRequest, LLMResponse, StreamChunk
from .answers import Answer

__all__ = ["SimClock", "SimStats"]


@dataclass(slots=True)
class SimStats:
    """Counters for tests and benchmarks. Mutated only on the loop that owns the request."""

    requests: int = 0                                   # requests accepted (generate + stream)
    batches: int = 0                                    # batches started (batch-aware mode only)
    batch_sizes: list[int] = field(default_factory=list)  # live requests when each batch started
    cancelled: int = 0                                  # requests cancelled before they finished
    service_s: list[float] = field(default_factory=list)  # simulated compute seconds per finished
    #                                                     request (queueing excluded): a model
    #                                                     quantity, so tests never read a clock


@dataclass(eq=False, slots=True)
class _Job:
    """One request inside the batcher. `chunks` is set only for streams."""

    answer: Answer
    done: asyncio.Future[LLMResponse]
    chunks: asyncio.Queue[StreamChunk | BaseException] | None = None
    batch_id: int | None = None
    cancelled: bool = False   # set by the caller's task when it is cancelled; the batch drops it


class _LoopState:
    """The batcher's state on one event loop. Every field is touched only from `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[_Job] = []                   # waiting for the next batch, arrival order
        self.timer: asyncio.TimerHandle | None = None   # flush_ms timer, armed by the first pending job
        self.batch: asyncio.Task[None] | None = None    # the running batch; at most one per loop


class SimClock:
    """The latency half of SimBackend (a mixin): generate/stream pace the answers `_answer` makes."""

    latency: float | None
    prefill_s: float
    per_token_s: float
    batch_penalty: float
    max_batch_size: int
    flush_ms: float
    tokens_per_word: int
    stats: SimStats
    _lock: threading.Lock
    _states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
    _next_batch: int
    _answer: Callable[[LLMRequest], Answer]          # SimAnswers makes the answers this paces

    def batch_cost(self, batch_size: int) -> float:
        """f(B) = 1 + batch_penalty*(B-1): how much slower one step is with B requests decoding."""
        return 1.0 + self.batch_penalty * max(batch_size - 1, 0)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """Answer after the simulated latency. Cancelling the caller removes the request from its
        pending queue or running batch (the batch then decodes faster, as a real one would)."""
        answer = self._answer(request)
        self.stats.requests += 1
        if self.latency is not None:
            await self._sleep_cancellable(self.latency)
            self.stats.service_s.append(self.latency)
            return answer.response()
        job = _Job(answer, asyncio.get_running_loop().create_future())
        state = self._enqueue(job)
        try:
            return await job.done
        except asyncio.CancelledError:
            self._drop(state, job)
            raise

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """One chunk per word, each when its last token's decode step ends; the final chunk carries
        the `LLMResponse`. The chunks' texts concatenate to `response.text`."""
        answer = self._answer(request)
        self.stats.requests += 1
        if self.latency is not None:
            async for chunk in self._stream_fixed(answer):
                yield chunk
            return
        loop = asyncio.get_running_loop()
        job = _Job(answer, loop.create_future(), chunks=asyncio.Queue())
        state = self._enqueue(job)
        finished = False
        try:
            while True:
                item = await job.chunks.get()        # type: ignore[union-attr]
                if isinstance(item, BaseException):
                    raise item
                if item.response is not None:
                    finished = True
                    yield item
                    return
                yield item
        finally:
            if not finished:     # cancelled, closed early, or failed: leave the batch
                self._drop(state, job)

    async def _stream_fixed(self, answer: Answer) -> AsyncIterator[StreamChunk]:
        steps = answer.tokens_out
        dt = self.latency / steps if steps else self.latency    # type: ignore[operator]
        try:
            if not steps:
                await asyncio.sleep(dt)
            for k, word in enumerate(answer.words):
                await asyncio.sleep(dt * self.tokens_per_word)
                if k < len(answer.words) - 1:
                    yield StreamChunk(word)
        except (asyncio.CancelledError, GeneratorExit):
            self.stats.cancelled += 1
            raise
        self.stats.service_s.append(self.latency)              # type: ignore[arg-type]
        last = answer.words[-1] if answer.words else ""
        yield StreamChunk(last + answer.tail, answer.response())

    async def _sleep_cancellable(self, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise

    def on_all_quiescent(self) -> None:
        """Every feeding run waits on calls: flush each loop's pending requests now. Callable from
        any thread; the flush itself runs on the owning loop, after the tasks already scheduled there
        (so calls dispatched just before the notification still join this batch).

        Called on a loop (the evaluator's case), that loop gets its state now: its first requests may
        still be tasks that have not run yet, and they must join the batch this flush starts."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        with self._lock:
            if here is not None and here not in self._states:
                self._states[here] = _LoopState(here)
            states = list(self._states.values())
        for state in states:
            try:
                state.loop.call_soon_threadsafe(self._flush, state)
            except RuntimeError:     # that loop is closed; nothing of it can be pending
                pass

    # The batcher. Invariants: a job is in at most one of (state.pending, a running batch); at most
    # one batch task per loop; `state.timer` is armed iff pending is non-empty and no batch runs or
    # has been asked to start.

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(loop)
        return state

    def _enqueue(self, job: _Job) -> _LoopState:
        state = self._state()
        state.pending.append(job)
        if state.batch is not None:
            return state             # waits for the current batch to end
        if len(state.pending) >= self.max_batch_size:
            self._start_batch(state)
        elif state.timer is None:
            state.timer = state.loop.call_later(self.flush_ms / 1000, self._flush, state)
        return state

    def _flush(self, state: _LoopState) -> None:
        if state.batch is None and state.pending:
            self._start_batch(state)

    def _start_batch(self, state: _LoopState) -> None:
        assert state.batch is None, "one batch at a time per loop"
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        jobs = state.pending[: self.max_batch_size]
        del state.pending[: self.max_batch_size]
        with self._lock:
            self._next_batch += 1
            batch_id = self._next_batch
        state.batch = state.loop.create_task(self._run_batch(state, jobs, batch_id))

    def _drop(self, state: _LoopState, job: _Job) -> None:
        finished = job.done.done() and not job.done.cancelled()
        if job.cancelled or finished:
            return
        job.cancelled = True
        self.stats.cancelled += 1
        if job in state.pending:
            state.pending.remove(job)
            if not state.pending and state.timer is not None:
                state.timer.cancel()
                state.timer = None

    async def _run_batch(self, state: _LoopState, jobs: list[_Job], batch_id: int) -> None:
        """Prefill, then decode step by step; each job leaves the batch after its own tokens."""
        for job in jobs:
            job.batch_id = batch_id
        active = [j for j in jobs if not j.cancelled]
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(active))
        t = 0.0                                   # simulated seconds since the batch started
        step = 0
        try:
            cost = self.prefill_s * self.batch_cost(len(active))
            await asyncio.sleep(cost)
            t += cost
            while True:
                active = [j for j in active if not j.cancelled]
                for job in active:
                    if job.answer.tokens_out <= step:
                        self._deliver(job, t)
                active = [j for j in active if j.answer.tokens_out > step]
                if not active:
                    break
                cost = self.per_token_s * self.batch_cost(len(active))
                await asyncio.sleep(cost)
                t += cost
                step += 1
                if step % self.tokens_per_word == 0:
                    k = step // self.tokens_per_word - 1           # the word whose last token ended
                    for job in active:
                        if job.chunks is not None and step < job.answer.tokens_out:
                            job.chunks.put_nowait(StreamChunk(job.answer.words[k]))
        except BaseException as exc:
            # Only reachable if the batch task itself is cancelled (loop shutdown, aclose): fail
            # every job still waiting so no caller hangs.
            for job in active:
                if not job.done.done():
                    job.done.cancel()
                if job.chunks is not None:
                    job.chunks.put_nowait(asyncio.CancelledError() if isinstance(
                        exc, asyncio.CancelledError) else exc)
            raise
        finally:
            state.batch = None
            if state.pending and not state.loop.is_closed():
                self._start_batch(state)          # newcomers already waited a whole batch

    def _deliver(self, job: _Job, t: float) -> None:
        self.stats.service_s.append(t)
        response = job.answer.response(job.batch_id)
        if job.chunks is not None:
            last = job.answer.words[-1] if job.answer.words else ""
            job.chunks.put_nowait(StreamChunk(last + job.answer.tail, response))
        if not job.done.done():
            job.done.set_result(response)

    async def aclose(self) -> None:
        """Cancel this loop's running batch and pending requests (their callers see CancelledError)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        for job in state.pending:
            job.done.cancel()
            if job.chunks is not None:
                job.chunks.put_nowait(asyncio.CancelledError())
        state.pending.clear()
        if state.batch is not None:
            state.batch.cancel()

    def close(self) -> None:
        """Forget per-loop state; safe to call twice. Use `aclose` on a loop to cancel its work."""
        with self._lock:
            self._states.clear()
