"""Record every model call to JSONL, and replay it later with the recorded latencies.

Benchmarks compare evaluation strategies on the same calls: record once against a real model
(`RecordingBackend`), then replay (`ReplayBackend`) as often as needed. Each replayed call sleeps its
recorded latency (divided by `speed`) and streams its chunks at their recorded offsets, so the
strategies see the same model, minus the model's noise.

File format, one JSON object per line:

    {"type": "header", "backend": "transformers", "model": "...", "capabilities": [...], "time": ...}
    {"type": "call", "key": "<request digest>", "request": {...}, "response": {...} | null,
     "error": null | {"type": "...", "message": "..."}, "latency": 0.41, "stream": false,
     "chunks": [[0.12, "text"], ...] | null, "start": 3.2}

`start` is seconds since the recorder was created (the calls' order and overlap); `chunks` are
offsets from the call's own start. Identical requests (same key) are replayed in recorded order,
cycling when they run out, so a program that asks the same greedy question twice gets both answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .base import Backend, LLMRequest, LLMResponse, SamplingParams, StreamChunk
from .errors import BackendError, ReplayMiss

__all__ = ["RecordingBackend", "ReplayBackend", "ReplayedError", "request_from_json"]

_ALL_CAPS = frozenset({"stream", "regex", "choices", "prefill", "raw", "seed"})


class ReplayedError(BackendError):
    """A call that failed when it was recorded fails again, with the recorded message."""


def _key(request: LLMRequest) -> str:
    """Backend-independent, so a log recorded on one backend replays under any name."""
    return request.key("")


def _loose_key(request: LLMRequest) -> str:
    """What non-strict replay matches on: the prompt and sample index, not the sampling knobs."""
    d = {"messages": request.messages, "prompt": request.prompt, "prefill": request.prefill,
         "raw": request.raw, "sample_index": request.sample_index}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def request_from_json(d: dict) -> LLMRequest:
    """Rebuild an LLMRequest from its recorded `asdict` form (tuples come back as lists)."""
    p = dict(d.get("params") or {})
    p["stop"] = tuple(p.get("stop") or ())
    if p.get("choices") is not None:
        p["choices"] = tuple(p["choices"])
    msgs = d.get("messages")
    return LLMRequest(messages=tuple(msgs) if msgs is not None else None, prompt=d.get("prompt"),
                      model=d.get("model"), params=SamplingParams(**p), prefill=d.get("prefill"),
                      raw=bool(d.get("raw")), sample_index=int(d.get("sample_index", 0)))


class RecordingBackend(Backend):
    """Passes every call to `inner` and appends it (request, response or error, timings) to `path`."""

    def __init__(self, inner: Backend, path: str | os.PathLike[str]):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.default_model = inner.default_model
        self.feeders = inner.feeders
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()
        self._write({"type": "header", "backend": inner.name, "model": inner.default_model,
                     "capabilities": sorted(inner.capabilities), "time": time.time()})

    def _write(self, obj: dict) -> None:
        line = json.dumps(obj, default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)

    def _record(self, request: LLMRequest, start: float, response: LLMResponse | None,
                error: BaseException | None, chunks: list[list[Any]] | None) -> None:
        self._write({"type": "call", "key": _key(request), "request": asdict(request),
                     "response": asdict(response) if response is not None else None,
                     "error": {"type": type(error).__name__, "message": str(error)} if error else None,
                     "latency": time.perf_counter() - start, "stream": chunks is not None,
                     "chunks": chunks, "start": start - self._t0})

    async def generate(self, request: LLMRequest) -> LLMResponse:
        start = time.perf_counter()
        try:
            resp = await self.inner.generate(request)
        except Exception as e:
            self._record(request, start, None, e, None)
            raise
        self._record(request, start, resp, None, None)
        return resp

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        start = time.perf_counter()
        chunks: list[list[Any]] = []
        final: LLMResponse | None = None
        it = self.inner.stream(request)
        try:
            async for chunk in it:
                chunks.append([time.perf_counter() - start, chunk.text])
                final = chunk.response or final
                yield chunk
        except Exception as e:
            self._record(request, start, None, e, chunks)
            raise
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        if final is not None:  # an abandoned stream is not a call worth replaying
            self._record(request, start, final, None, chunks)

    def check(self, request: LLMRequest) -> None:
        self.inner.check(request)

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()          # recording does not change the answers

    def on_all_quiescent(self) -> None:
        self.inner.on_all_quiescent()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def close(self) -> None:
        self.inner.close()


class ReplayBackend(Backend):
    """Answers from a recording, with the recorded latency. Unknown requests raise `ReplayMiss`
    naming the prompt, or go to `fallback` when one is given. `strict=False` also accepts a record
    with the same prompt and sample index but other sampling parameters."""

    name = "replay"

    def __init__(self, path: str | os.PathLike[str], speed: float = 1.0, strict: bool = True,
                 fallback: Backend | None = None, *,
                 sleep: Callable[[float], Awaitable[Any]] | None = None):
        super().__init__()
        self.path = Path(path)
        self.speed = speed
        self.strict = strict
        self.fallback = fallback
        self._sleep = sleep or asyncio.sleep
        self._lock = threading.Lock()
        self.calls: dict[str, list[dict]] = {}
        self._loose: dict[str, list[dict]] = {}
        self._cursor: dict[str, int] = {}
        caps: set[str] = set()
        text = self.path.read_text(encoding="utf-8")
        self._digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{self.path}:{n}: not a JSON line ({e})") from e
            if rec.get("type") == "header":
                caps.update(rec.get("capabilities") or ())
                self.default_model = rec.get("model") or self.default_model
            elif rec.get("type") == "call":
                self.calls.setdefault(rec["key"], []).append(rec)
                self._loose.setdefault(_loose_key(request_from_json(rec["request"])), []).append(rec)
        self.capabilities = frozenset(caps) if caps else _ALL_CAPS

    def __len__(self) -> int:
        return sum(len(v) for v in self.calls.values())

    def reset(self) -> None:
        """Start every request's sequence of recorded answers from the beginning again."""
        with self._lock:
            self._cursor.clear()

    def _next(self, request: LLMRequest) -> dict | None:
        key = _key(request)
        recs = self.calls.get(key)
        if recs is None and not self.strict:
            key = "loose:" + _loose_key(request)
            recs = self._loose.get(key[6:])
        if not recs:
            return None
        with self._lock:
            i = self._cursor.get(key, 0)
            self._cursor[key] = i + 1
        return recs[i % len(recs)]

    def _miss(self, request: LLMRequest) -> ReplayMiss:
        return ReplayMiss(f"no recorded call matches the prompt {request.preview()!r} (model "
                          f"{request.model!r}, sample_index {request.sample_index}, {request.params}) in "
                          f"{self.path}; record it with RecordingBackend, use strict=False, or pass fallback=",
                          backend=self.name)

    async def _wait(self, seconds: float) -> None:
        if self.speed > 0 and seconds > 0:
            await self._sleep(seconds / self.speed)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        rec = self._next(request)
        if rec is None:
            if self.fallback is not None:
                return await self.fallback.generate(request)
            raise self._miss(request)
        await self._wait(rec["latency"])
        return _outcome(rec)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        rec = self._next(request)
        if rec is None:
            if self.fallback is None:
                raise self._miss(request)
            async for chunk in self.fallback.stream(request):
                yield chunk
            return
        if not rec.get("chunks"):  # recorded whole: one chunk at the recorded latency
            await self._wait(rec["latency"])
            resp = _outcome(rec)
            yield StreamChunk(resp.text, resp)
            return
        elapsed, last = 0.0, len(rec["chunks"]) - 1
        for i, (offset, text) in enumerate(rec["chunks"]):
            await self._wait(offset - elapsed)
            elapsed = max(elapsed, offset)
            if i == last and rec.get("response") is not None:
                yield StreamChunk(text, _outcome(rec))   # the recorded final chunk carries the response
            else:
                yield StreamChunk(text)
        if rec.get("response") is None:
            _outcome(rec)                                  # raises the recorded error

    def identity(self) -> dict[str, Any]:
        """The recording's content (not just its name) and the fallback's identity."""
        return {**super().identity(), "recording": self._digest, "strict": self.strict,
                "fallback": self.fallback.identity() if self.fallback is not None else None}

    def describe(self) -> str:
        return f"replay:{self.path.name}"


def _outcome(rec: dict) -> LLMResponse:
    if rec.get("response") is None:
        err = rec.get("error") or {}
        raise ReplayedError(f"{err.get('type', 'error')}: {err.get('message', 'the recorded call failed')}",
                            backend="replay")
    return LLMResponse(**rec["response"])
