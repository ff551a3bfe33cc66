"""The one seam between the evaluator and every model: requests in, responses or streams out.

Backends never see IR. The evaluator's `llm()` builtin normalises its arguments once into an
`LLMRequest` (sampling fields live in one `SamplingParams`, never copied into a second signature),
and a backend answers with an `LLMResponse` or an async iterator of `StreamChunk`s.

Batching backends also need to know *when* to flush: `Feeders` tracks the runs feeding a backend and
calls `Backend.on_all_quiescent()` when every one of them has no pure work left, which is the moment
waiting longer cannot grow the batch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import UnsupportedFeature
from ..text import clip
from .logprobs import TokenLog

__all__ = [
    "Backend", "Feeders", "LLMRequest", "LLMResponse", "SamplingParams", "StreamChunk",
    "UnsupportedFeature",
]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Every field that changes what a model may return; all of them go into the cache key."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    regex: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One generation. `messages` is the chat form (always set unless `raw`); `prompt` the raw text form.

    `prefill` continues the assistant turn (SoT's partial answer "1."); `sample_index` distinguishes the
    k-th identical sample so caches never collapse repeated samples into one.
    """

    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    model: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    prefill: str | None = None
    raw: bool = False
    sample_index: int = 0
    logprobs: int | None = None          # per-token record with this many alternatives (llm.logprobs)

    @classmethod
    def build(cls, prompt: str | list | tuple, *, system: str | None = None, raw: bool = False,
              **kw: Any) -> LLMRequest:
        """Normalise the user's `llm()` arguments: a string becomes one user message unless `raw`."""
        if raw:
            if not isinstance(prompt, str):
                raise TypeError("llm(raw=True) needs a string prompt")
            return cls(prompt=prompt, raw=True, **kw)
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list | tuple):
            messages = [dict(m) for m in prompt]
            for m in messages:
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    raise TypeError("llm() chat messages must be dicts with 'role' and 'content'")
        else:
            raise TypeError(f"llm() prompt must be a string or a list of messages, not {type(prompt).__name__}")
        if system is not None:
            messages = [{"role": "system", "content": system}, *[m for m in messages if m["role"] != "system"]]
        return cls(messages=tuple(messages), **kw)

    def key(self, backend: str) -> str:
        """A stable digest of everything that determines the answer (used by the cache and replay)."""
        d = asdict(self)
        if d["logprobs"] is None:        # keys of requests made before logprobs existed stay the same
            del d["logprobs"]
        d["backend"] = backend
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def with_params(self, **kw: Any) -> LLMRequest:
        return replace(self, params=replace(self.params, **kw))

    def preview(self, n: int = 80) -> str:
        text = self.prompt if self.raw else (self.messages[-1]["content"] if self.messages else "")
        return clip(text, n, squash=False)


@dataclass(slots=True)
class LLMResponse:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = "stop"   # "stop" | "length"; None: the server did not say (unknown)
    batch_id: int | None = None          # which decode batch produced it (local batcher only)
    cached: bool = False
    tokens_cached: int = 0               # prompt tokens whose KV was reused, not recomputed (prefix cache)
    tokens: TokenLog | None = None       # per-token record, when the request asked for logprobs

    def __post_init__(self) -> None:
        if isinstance(self.tokens, dict):    # read back from JSON (answer cache, replay)
            self.tokens = TokenLog.from_dict(self.tokens)


@dataclass(slots=True)
class StreamChunk:
    """A piece of a streamed answer. The last chunk of a stream carries `response` (usage, finish)."""

    text: str
    response: LLMResponse | None = None
    tokens: TokenLog | None = None       # the tokens behind `text`, when logprobs were asked (streamed)


class Feeders:
    """The runs currently feeding one backend, and whether each still has pure work to do.

    The evaluator calls `join()` when a run starts, `feeder.busy()` / `feeder.quiescent()` as its ready
    queue fills and empties, and `feeder.leave()` when it ends. When the last busy run goes quiescent,
    `on_all_quiescent` is called (from the evaluator's thread): a batcher flushes then instead of
    waiting for its timer. Thread-safe because `epic serve` and several loops may share a backend.
    """

    def __init__(self, on_all_quiescent: Callable[[], None]):
        self._lock = threading.Lock()
        self._busy: set[int] = set()
        self._members: set[int] = set()
        self._next = 0
        self._cb = on_all_quiescent

    def join(self) -> Feeder:
        with self._lock:
            self._next += 1
            fid = self._next
            self._members.add(fid)
            self._busy.add(fid)
        return Feeder(self, fid)

    @property
    def all_quiescent(self) -> bool:
        with self._lock:
            return not self._busy

    def _set(self, fid: int, busy: bool, leave: bool = False) -> None:
        with self._lock:
            was_busy = bool(self._busy)
            if busy and not leave:
                self._busy.add(fid)
            else:
                self._busy.discard(fid)
            if leave:
                self._members.discard(fid)
            fire = was_busy and not self._busy
        if fire:
            self._cb()


@dataclass(slots=True)
class Feeder:
    feeders: Feeders
    fid: int

    def busy(self) -> None:
        self.feeders._set(self.fid, True)

    def quiescent(self) -> None:
        self.feeders._set(self.fid, False)

    def leave(self) -> None:
        self.feeders._set(self.fid, False, leave=True)


class Backend(ABC):
    """What every model backend implements. Subclasses set `name` and `capabilities`.

    capabilities: a subset of {"stream", "regex", "choices", "prefill", "raw", "seed", "logprobs"}. `llm()` raises
    `UnsupportedFeature` before dispatch when a request needs something the backend lacks.
    """

    name: str = "backend"
    capabilities: frozenset[str] = frozenset()
    default_model: str | None = None

    def __init__(self) -> None:
        self.feeders = Feeders(self.on_all_quiescent)

    @abstractmethod
    async def generate(self, request: LLMRequest) -> LLMResponse:
        """Answer one request. Cancelling the awaiting task must cancel the work (free its batch slot)."""

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream an answer. The default generates whole and yields one chunk; real backends override."""
        resp = await self.generate(request)
        yield StreamChunk(resp.text, resp)

    def on_all_quiescent(self) -> None:
        """Every feeding run is waiting on calls: a batcher should flush now. Called from any thread."""

    def check(self, request: LLMRequest) -> None:
        """Raise UnsupportedFeature if this backend cannot honour the request."""
        p = request.params
        need = {"regex": p.regex is not None, "choices": p.choices is not None,
                "prefill": request.prefill is not None, "raw": request.raw,
                "logprobs": request.logprobs is not None}
        missing = [k for k, v in need.items() if v and k not in self.capabilities]
        if missing:
            raise UnsupportedFeature(
                f"the {self.name} backend does not support {', '.join(missing)}= "
                f"(supported: {', '.join(sorted(self.capabilities)) or 'none'})")

    def describe(self) -> str:
        return f"{self.name}:{self.default_model or '?'}"

    def identity(self) -> dict[str, Any]:
        """Everything about this backend that can change an answer, as JSON-ready data: the answer
        cache keys on it, so two differently configured backends never share answers. The default
        is the class, name and model; subclasses add their settings (base URL, script, seed, ...).
        A subclass with its own answer-changing state must extend it."""
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "name": self.name, "model": self.default_model}

    async def aclose(self) -> None:
        """Release clients, threads and memory."""

    async def loop_ending(self) -> None:
        """The calling event loop is about to close (a script's `run()` owns it): release what is
        bound to it, such as HTTP connections, so nothing is left to clean up on a closed loop.
        The backend stays usable from other loops. Wrappers pass it on to the backend they wrap."""
        inner = getattr(self, "inner", None)
        if isinstance(inner, Backend):
            await inner.loop_ending()

    def close(self) -> None:
        """Synchronous close for scripts; safe to call twice."""
