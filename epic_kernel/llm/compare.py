"""Run one program under every strategy, with the same answers, and compare (`%%epic --compare`).

How the strategies are kept like for like:

1. A **warm-up run** (sequential, live on the backend, through a `RecordingBackend`) records the
   answers every strategy will see; its timing is discarded: a first run pays one-off costs (a
   local model's first decodes, imports, allocations) that the others would not.
2. Every strategy, `sequential` included, then runs **warm**, live on the same backend (so wall time
   and, on a local model, the decode batches are real), through a `PinnedBackend`: each call still
   goes to the model and takes the time it takes, but its answer is the recorded one. So every
   strategy sees the same answers even where a model's output depends on the batch it decoded in,
   and a value that differs between strategies is the evaluator's fault, never the model's. The
   strategies run in a **rotated order** (a different one first each comparison), so no strategy
   always runs right after the warm-up.
3. The **bound** is the critical chain of those runs (`runtime/chain.py`): the longest chain of
   calls where each waited for the one before in every run, each counted at the smallest latency it
   had in any run. Every run's wall time is at least the bound by construction; the speedup bound
   is the sequential run's time over it. A run with no calls gets neither a speedup nor a bound.

The answer cache is never used (it would answer the later strategies instantly and hide their
timing); the same `seed` goes to every run, and sample identity (call site and loop path) gives
every strategy the same samples. `on_progress` hears which run is going and how many of its calls
have finished (the warm-up run tells how many there will be).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EpicError, EpicException, EpicInterrupted
from ..runtime.api import in_fresh_thread, run_async
from ..runtime.chain import CriticalChain, critical_chain
from ..runtime.options import STRATEGIES
from ..runtime.result import RunResult
from .base import Backend, LLMRequest, LLMResponse, SamplingParams, StreamChunk
from .registry import describe_spec, resolve_backend
from .replay import RecordingBackend, ReplayBackend

__all__ = ["COMPARE_STRATEGIES", "CompareMismatch", "CompareProgress", "Comparison", "PinnedBackend",
           "StrategyRun", "compare", "compare_async"]

COMPARE_STRATEGIES = ("sequential", *(s for s in STRATEGIES if s != "sequential"))   # the baseline first


class CompareMismatch(EpicException):
    """Strategies disagreed (a value, the calls made) or one of them failed: confluence is broken
    for this program, or a call failed under some schedule."""


class PinnedBackend(Backend):
    """Every call goes to `inner` (real latency, real batching) but answers what `answers` (a replay
    of the reference run) recorded for it; a request the reference never made gets the live answer."""

    def __init__(self, inner: Backend, answers: ReplayBackend):
        self.inner = inner
        self.answers = answers
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.default_model = inner.default_model
        self.feeders = inner.feeders
        self.pinned = 0

    def _recorded(self, request: LLMRequest) -> dict | None:
        return self.answers._next(request)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        live = await self.inner.generate(request)
        rec = self._recorded(request)
        if rec is None or rec.get("response") is None:
            return live
        self.pinned += 1
        text = rec["response"]["text"]
        return LLMResponse(text=text, tokens_in=live.tokens_in, tokens_out=live.tokens_out,
                           finish_reason=live.finish_reason, batch_id=live.batch_id)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """The recorded chunks, each released when the live stream delivers its next chunk."""
        rec = self._recorded(request)
        if rec is None or rec.get("response") is None:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        self.pinned += 1
        texts = [t for _off, t in (rec.get("chunks") or [])] or [rec["response"]["text"]]
        final = LLMResponse(**rec["response"])
        i = 0
        async for chunk in self.inner.stream(request):
            if chunk.response is not None:
                final = LLMResponse(text=final.text, tokens_in=chunk.response.tokens_in,
                                    tokens_out=chunk.response.tokens_out, finish_reason=final.finish_reason,
                                    batch_id=chunk.response.batch_id)
            if i < len(texts) - 1:
                yield StreamChunk(texts[i])
                i += 1
        while i < len(texts) - 1:
            yield StreamChunk(texts[i])
            i += 1
        yield StreamChunk(texts[-1], final)

    def check(self, request: LLMRequest) -> None:
        self.inner.check(request)

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "pinned": self.answers.identity()}

    def on_all_quiescent(self) -> None:
        self.inner.on_all_quiescent()


@dataclass
class StrategyRun:
    """One strategy's run: its RunResult (the partial one after a failure) and what went wrong."""

    strategy: str
    result: RunResult | None
    error: str = ""                  # the run failed (one line)
    mismatch: str = ""               # its value or calls differ from the sequential run's

    @property
    def ok(self) -> bool:
        return not self.error and not self.mismatch

    @property
    def calls(self) -> int:
        return 0 if self.result is None else len(self.result.calls)


@dataclass
class CompareProgress:
    """What a comparison is doing now (for a progress line): run `index` of `of` (0: the warm-up)."""

    strategy: str                            # "warm-up" for the discarded first run
    index: int
    of: int
    done: int                                # calls finished in this run
    total: int | None                        # calls the warm-up made (None while it runs)
    finished: list[tuple[str, float]] = field(default_factory=list)   # (strategy, wall seconds) so far

    def text(self) -> str:
        what = ("warm-up run (records the answers; not timed)" if self.index == 0
                else f"{self.strategy} ({self.index} of {self.of})")
        calls = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        done = "; finished: " + ", ".join(f"{s} {t:.2f} s" for s, t in self.finished) if self.finished else ""
        return f"running {what}: {calls} calls done{done}"


@dataclass
class Comparison:
    """What `%%epic --compare` shows: every strategy's run and the critical-chain bound."""

    runs: list[StrategyRun]
    chain: CriticalChain | None = None       # the bound: see runtime/chain.py
    order: list[str] = field(default_factory=list)   # the order the strategies ran in (after the warm-up)
    warmup: RunResult | None = field(default=None, repr=False)
    backend: str = ""
    source: str = ""

    @property
    def critical_path(self) -> float | None:
        """Seconds: no run of this comparison was faster (None: no call finished in every run)."""
        return self.chain.seconds if self.chain is not None and self.chain.seconds > 0 else None

    def run(self, strategy: str) -> StrategyRun | None:
        return next((r for r in self.runs if r.strategy == strategy), None)

    @property
    def baseline(self) -> float | None:
        seq = self.run("sequential")
        return seq.result.elapsed if seq is not None and seq.result is not None else None

    def speedup(self, run: StrategyRun) -> float | None:
        """Sequential time / this run's (None for a run with no calls: nothing to speed up)."""
        base = self.baseline
        if base is None or run.result is None or run.result.elapsed <= 0 or not run.calls:
            return None
        return base / run.result.elapsed

    @property
    def bound(self) -> float | None:
        """The speedup no run of this comparison exceeded: sequential time / the critical chain."""
        base = self.baseline
        return base / self.critical_path if base and self.critical_path else None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def problems(self) -> list[str]:
        return [f"{r.strategy}: {r.error or r.mismatch}" for r in self.runs if not r.ok]

    @property
    def value(self) -> Any:
        seq = self.run("sequential")
        return seq.result.value if seq is not None and seq.result is not None else None

    def summary(self) -> str:
        lines = []
        for r in self.runs:
            sp = self.speedup(r)
            t = f"{r.result.elapsed:.3f} s" if r.result is not None else "-"
            lines.append(f"{r.strategy:<18} {t:>9}  {'' if sp is None else f'{sp:.2f}x':>6}  "
                         f"{'ok' if r.ok else r.error or r.mismatch}")
        if self.critical_path is not None and self.chain is not None:
            b = self.bound
            lines.append(f"{'critical chain':<18} {self.critical_path:.3f} s  "
                         f"{'' if b is None else f'{b:.2f}x':>6}  (bound: {self.chain.describe()})")
        return "\n".join(lines)


_ROUNDS = itertools.count()      # comparisons started in this process: the next rotation of the order


async def compare_async(source: str, *, backend: Any = None, model: str | None = None,
                        namespace: dict | None = None, seed: int = 0, filename: str = "<epic>",
                        first_line: int = 1, strategies: tuple[str, ...] = COMPARE_STRATEGIES,
                        bound: bool = True, rotation: int | None = None,
                        on_progress: Callable[[CompareProgress], None] | None = None) -> Comparison:
    """Run `source` once to warm up and record the answers, then under each strategy, warm, in a
    rotated order (`rotation`: how far; default: one further than the last comparison's)."""
    strategies = ("sequential", *(s for s in strategies if s != "sequential"))
    inner = await asyncio.to_thread(resolve_backend, backend, {"model": model})   # may load a model
    if inner.name in _LOCAL:
        await _warm_up(inner)
    common = {"namespace": namespace, "seed": seed, "filename": filename, "first_line": first_line,
              "model": model, "cache": False}
    turn = next(_ROUNDS) if rotation is None else rotation
    order = [strategies[(turn + i) % len(strategies)] for i in range(len(strategies))]
    out = Comparison(runs=[], order=order, backend=describe_spec(inner, model), source=source)
    tell = _Progress(on_progress, len(order))
    with tempfile.TemporaryDirectory(prefix="epic-compare-") as folder:
        path = Path(folder) / "answers.jsonl"
        warm = await _one(source, "sequential", RecordingBackend(inner, path), common, tell.start("warm-up", 0))
        out.warmup = warm.result
        tell.total = warm.calls if warm.result is not None else None
        done: dict[str, StrategyRun] = {}
        for i, strategy in enumerate(order, 1):
            pinned = PinnedBackend(inner, ReplayBackend(path, speed=0.0))
            done[strategy] = await _one(source, strategy, pinned, common, tell.start(strategy, i))
            if done[strategy].result is not None:
                tell.finished.append((strategy, done[strategy].result.elapsed))
        out.runs = [done[s] for s in strategies]
    if bound:
        timed = [r.result for r in out.runs if r.result is not None]
        if timed and all(r.calls for r in out.runs):
            out.chain = critical_chain(timed)
    _check_agreement(out)
    return out


class _Progress:
    """Feeds `on_progress` from each run's call events (on the loop's thread, as observers run)."""

    def __init__(self, sink: Callable[[CompareProgress], None] | None, of: int):
        self.sink, self.of, self.total = sink, of, None
        self.finished: list[tuple[str, float]] = []
        self.now = CompareProgress("warm-up", 0, of, 0, None)

    def start(self, strategy: str, index: int) -> list[Callable]:
        if self.sink is None:
            return []
        self.now = CompareProgress(strategy, index, self.of, 0, self.total, list(self.finished))
        self._send()
        return [self.on_event]

    def on_event(self, event: Any) -> None:
        if event.kind in ("call.done", "call.failed", "call.cancelled"):
            self.now.done += 1
            self._send()

    def _send(self) -> None:
        try:
            self.sink(self.now)                          # type: ignore[misc]
        except Exception:                                # a progress line must never stop a comparison
            self.sink = None


def compare(source: str, **kwargs: Any) -> Comparison:
    """`compare_async` from synchronous code (a private thread when this thread runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(compare_async(source, **kwargs))
    return in_fresh_thread(lambda: compare_async(source, **kwargs), name="epic-compare")


_LOCAL = ("transformers", "vllm")


async def _warm_up(backend: Backend) -> None:
    """One 1-token request before the runs: a local model's first decode pays one-off costs (kernel
    selection, allocations) that would otherwise count against whichever strategy runs first."""
    try:
        await backend.generate(LLMRequest.build("Hi", params=SamplingParams(max_tokens=1)))
    except Exception:                        # a warm-up must never stop the comparison; the runs report
        pass


async def _one(source: str, strategy: str, backend: Backend, common: dict[str, Any],
               observers: list[Callable] | None = None) -> StrategyRun:
    try:
        res = await run_async(source, strategy=strategy, backend=backend, observers=observers, **common)
    except EpicError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "interrupted" if isinstance(e, EpicInterrupted) else "failed"
        return StrategyRun(strategy, e.result, error=first if first.startswith(kind) else f"{kind}: {first}")
    return StrategyRun(strategy, res)


def _check_agreement(out: Comparison) -> None:
    """Every strategy must give the sequential run's value and names and make the same calls."""
    ref = out.run("sequential")
    if ref is None or ref.result is None or ref.error:
        return
    want_calls = sorted(_call_key(c) for c in ref.result.calls)
    for r in out.runs[1:]:
        if r.result is None or r.error:
            continue
        if not _same(r.result.value, ref.result.value):
            r.mismatch = (f"value differs from sequential's: {_short(r.result.value)} vs "
                          f"{_short(ref.result.value)}")
        elif names := _differing_names(r.result.namespace, ref.result.namespace):
            r.mismatch = f"names differ from sequential's: {', '.join(names)}"
        elif sorted(_call_key(c) for c in r.result.calls) != want_calls:
            r.mismatch = (f"made other calls than sequential ({len(r.result.calls)} calls vs "
                          f"{len(ref.result.calls)})")


def _differing_names(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names whose values differ (functions the cell defines are new objects in every run: skipped)."""
    return sorted(k for k in set(a) | set(b)
                  if not (callable(a.get(k)) and callable(b.get(k))) and not _same(a.get(k), b.get(k)))


def _call_key(c: Any) -> tuple:
    return (c.fn, c.site_line, c.args_preview)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:                       # an object whose == raises: compare what it shows
        return repr(a) == repr(b)


def _short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 1] + "…"
