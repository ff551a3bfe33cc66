"""A backend for any OpenAI-compatible server: OpenAI itself, vLLM, SGLang, or our own `epic serve`.

Three things make it safe to fire hundreds of concurrent calls at a server we do not control:

* an **adaptive concurrency cap** (AIMD, as TCP does): at most `max_concurrency` requests in flight;
  a 429 halves the cap (once per burst), and each round trip's worth of successes adds one back. The server's own limit is
  found without configuration, and a shared server is not hammered.
* **retries** with full-jitter exponential backoff that honour `Retry-After` (seconds or HTTP-date)
  on 429/503, and also retry other 5xx, timeouts, dropped connections and malformed bodies.
  Non-retryable 4xx raise at once. The openai client's own retries are off (`max_retries=0`): two
  layers of retries multiply delays and hide the 429s the cap needs to see.
* **one client per event loop**: an `AsyncOpenAI` holds connections bound to the loop that first
  used it, and a notebook, `run()`'s private loop thread and `epic serve` may all share one backend.

Cancelling the awaiting task cancels the HTTP request (the connection is closed, so the server can
stop generating), and frees the concurrency slot.

Scaling out
-----------
One GPU is one batcher; past that, run a real serving engine and point this backend at it. Both
vLLM and SGLang shard a model over GPUs (tensor/pipeline parallel) and over nodes behind one
OpenAI-compatible endpoint, and batch everything our evaluator sends concurrently:

    vllm serve Qwen/Qwen2.5-7B-Instruct --tensor-parallel-size 4 --port 8000
    python -m sglang.launch_server --model-path Qwen/Qwen2.5-7B-Instruct --tp 4 --port 30000

    OpenAIBackend(base_url="http://gpu-host:8000/v1", model="Qwen/Qwen2.5-7B-Instruct", guided="vllm")
    OpenAIBackend(base_url="http://gpu-host:30000/v1", guided="sglang")   # model: the server's first

or set EPIC_OPENAI_BASE_URL / EPIC_OPENAI_MODEL (OPENAI_BASE_URL and OPENAI_API_KEY are read too)
and pick `backend="openai"`. `guided` says how constrained decoding travels in `extra_body`:

    guided="vllm"    regex -> {"guided_regex": ...}, choices -> {"guided_choice": [...]}; prefill is
                     a trailing assistant message with {"continue_final_message": true,
                     "add_generation_prompt": false}. Our own `epic serve` accepts the same fields.
    guided="sglang"  regex -> {"regex": ...}; choices -> an escaped alternation regex; no prefill.
    guided=None      plain OpenAI: regex=, choices= and prefill= raise UnsupportedFeature up front.

Raise `max_concurrency` to what the deployment can batch (vLLM's --max-num-seqs, 256 by default);
the AIMD cap backs off by itself if the server pushes back with 429s. Several `epic serve`
instances behind a load balancer work the same way.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import openai

from .base import Backend, LLMRequest, LLMResponse, StreamChunk
from .errors import (
    AuthError,
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BadRequest,
    MalformedResponse,
    RateLimited,
    ServerError,
)

__all__ = ["AdaptiveLimiter", "OpenAIBackend"]

_BASE_CAPS = frozenset({"stream", "raw", "seed"})
_GUIDED_CAPS = {"vllm": frozenset({"regex", "choices", "prefill"}), "sglang": frozenset({"regex", "choices"}),
                None: frozenset()}


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


@dataclass
class _LoopState:
    """One loop's clients and cap. Several clients, because httpcore's pool scans every connection
    for every request (quadratic); pools of <= _SHARD connections keep 256 concurrent calls cheap."""

    clients: list[openai.AsyncOpenAI]
    limiter: AdaptiveLimiter
    turn: int = 0

    @property
    def client(self) -> openai.AsyncOpenAI:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()


_SHARD = 16     # measured: 256 concurrent calls on 2 CPUs, 16 -> 2.8-2.9x one call, 32 -> 3.0-3.3x, 256 -> 3.1-3.9x


@dataclass
class _Failure:
    kind: type[BackendError]
    message: str
    status: int | None
    retryable: bool
    retry_after: float | None = None
    overload: bool = False


class _Malformed(Exception):
    """The body parsed, but is not a completion (no choices, a plain-text body, an incomplete stream)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OpenAIBackend(Backend):
    """Calls an OpenAI-compatible HTTP server; see the module docstring (and "Scaling out")."""

    name = "openai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None, *,
                 max_concurrency: int = 64, timeout: float = 60.0, max_retries: int = 5,
                 guided: str | None = "vllm", backoff_base: float = 0.5, backoff_max: float = 30.0,
                 max_retry_after: float = 120.0, extra_body: dict | None = None,
                 client_factory: Callable[[], openai.AsyncOpenAI] | None = None):
        super().__init__()
        if guided not in _GUIDED_CAPS:
            raise ValueError(f"guided must be 'vllm', 'sglang' or None, not {guided!r}")
        self.base_url = (base_url or os.environ.get("EPIC_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or "https://api.openai.com/v1")
        # the client refuses a missing key even for servers that need none, so send a placeholder
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.default_model = model or os.environ.get("EPIC_OPENAI_MODEL")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.guided = guided
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.extra_body = dict(extra_body or {})
        self.capabilities = _BASE_CAPS | _GUIDED_CAPS[guided]
        self._client_factory = client_factory
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._states_lock = threading.Lock()
        self._model_lock: asyncio.Lock | None = None

    def describe(self) -> str:
        return f"openai:{self.default_model or '?'}@{self.base_url}"

    def identity(self) -> dict[str, Any]:
        """Another server (URL) or model is another source of answers; so is another extra_body."""
        return {**super().identity(), "base_url": self.base_url.rstrip("/"), "guided": self.guided,
                "extra_body": self.extra_body}

    # --- per-loop state -------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._states_lock:
            st = self._states.get(loop)
            if st is None:
                shards = -(-self.max_concurrency // _SHARD)
                clients = [self._client_factory() if self._client_factory else
                           openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key,
                                              max_retries=0, timeout=self.timeout) for _ in range(shards)]
                st = self._states[loop] = _LoopState(clients, AdaptiveLimiter(self.max_concurrency))
            return st

    def limiter(self) -> AdaptiveLimiter | None:
        """The calling loop's limiter (None before its first call); for tests and benchmarks."""
        st = self._states.get(asyncio.get_running_loop())
        return st.limiter if st is not None else None

    async def _model(self, request: LLMRequest, st: _LoopState) -> str:
        """The request's model, the configured one, or else the server's first (vLLM/SGLang serve one)."""
        if request.model:
            return request.model
        if self.default_model is None:
            try:
                page = await st.client.models.list()
                self.default_model = page.data[0].id
            except openai.APIConnectionError as exc:      # no server there: say so, not "no model"
                raise BackendConnectionError(self._cannot_connect(exc), backend=self.name) from exc
            except (openai.OpenAIError, IndexError) as exc:
                raise BadRequest(f"no model given and {self.base_url}/models lists none ({exc}); "
                                 "pass model= or set EPIC_OPENAI_MODEL", backend=self.name) from exc
        return self.default_model

    # --- request building -----------------------------------------------------------------------
    def _kwargs(self, request: LLMRequest, model: str) -> dict[str, Any]:
        p = request.params
        kw: dict[str, Any] = {"model": model, "max_tokens": p.max_tokens, "temperature": p.temperature,
                              "top_p": p.top_p}
        if p.stop:
            kw["stop"] = list(p.stop)
        if p.seed is not None:
            kw["seed"] = p.seed
        extra = dict(self.extra_body)
        if p.regex is not None:
            extra["guided_regex" if self.guided == "vllm" else "regex"] = p.regex
        if p.choices is not None:
            if self.guided == "vllm":
                extra["guided_choice"] = list(p.choices)
            else:
                extra["regex"] = "(" + "|".join(re.escape(c) for c in p.choices) + ")"
        if request.raw:
            kw["prompt"] = (request.prompt or "") + (request.prefill or "")
        else:
            msgs = [dict(m) for m in request.messages or ()]
            if request.prefill is not None:
                msgs.append({"role": "assistant", "content": request.prefill})
                extra.update(continue_final_message=True, add_generation_prompt=False)
            kw["messages"] = msgs
        if extra:
            kw["extra_body"] = extra
        return kw

    # --- one call, with retries -----------------------------------------------------------------
    async def generate(self, request: LLMRequest) -> LLMResponse:
        self.check(request)
        st = self._state()
        model = await self._model(request, st)
        kw = self._kwargs(request, model)
        attempt = 0
        while True:
            attempt += 1
            epoch = await st.limiter.acquire()
            client = st.client
            create = client.completions.create if request.raw else client.chat.completions.create
            try:
                resp = _to_response(await create(**kw), request.raw)
            except Exception as exc:
                failure, cause = self._classify(exc), exc
                if failure.overload:
                    st.limiter.overloaded(epoch)
            else:
                st.limiter.succeeded()
                return resp
            finally:
                st.limiter.release()
            await self._backoff_or_raise(failure, model, attempt, cause)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream deltas; retried like `generate` while nothing has been yielded (a cut after the
        first delta raises, since the consumer has already seen a prefix)."""
        self.check(request)
        st = self._state()
        model = await self._model(request, st)
        kw = self._kwargs(request, model)
        kw.update(stream=True, stream_options={"include_usage": True})
        attempt = 0
        while True:
            attempt += 1
            parts: list[str] = []
            epoch = await st.limiter.acquire()
            client = st.client
            create = client.completions.create if request.raw else client.chat.completions.create
            stream, finish, usage = None, None, None
            failure: _Failure | None
            try:
                stream = await create(**kw)
                async for chunk in stream:
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    for choice in getattr(chunk, "choices", None) or ():
                        text = (choice.text if request.raw else choice.delta.content) or ""
                        finish = choice.finish_reason or finish
                        if text:
                            parts.append(text)
                            yield StreamChunk(text)
                if finish is None:
                    raise _Malformed("the stream ended without a finish_reason")
            except Exception as exc:
                failure, cause = self._classify(exc), exc
                if failure.overload:
                    st.limiter.overloaded(epoch)
                if parts:  # the consumer has a prefix already: retrying would duplicate it
                    failure.retryable = False
                    failure.message += f" (stream cut after {len(''.join(parts))} characters)"
            else:
                st.limiter.succeeded()
                failure = None
            finally:
                st.limiter.release()
                if stream is not None:
                    with suppress(Exception):
                        await stream.close()
            if failure is None:  # slot and connection are released before the consumer gets the end
                yield StreamChunk("", LLMResponse("".join(parts), *_usage(usage), _finish(finish)))
                return
            await self._backoff_or_raise(failure, model, attempt, cause)

    async def _backoff_or_raise(self, failure: _Failure, model: str, attempt: int, cause: Exception) -> None:
        if not failure.retryable or attempt > self.max_retries:
            raise failure.kind(failure.message, model=model, status=failure.status, attempts=attempt,
                               backend=self.name) from cause
        await asyncio.sleep(self._delay(attempt, failure.retry_after))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After when it gave one (capped), else full-jitter exponential backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + random.uniform(0, 0.05 * self.backoff_base)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _cannot_connect(self, exc: Exception) -> str:
        """The cause (the URL we could not reach, and why) and what to set."""
        cause = exc.__cause__ or exc
        return (f"cannot connect to {self.base_url} ({type(cause).__name__}: {cause}). Is the server running? "
                "Set EPIC_OPENAI_BASE_URL (or base_url=) to an OpenAI-compatible server, OPENAI_API_KEY "
                "if it needs one, and the model (EPIC_OPENAI_MODEL or model=)")

    def _classify(self, exc: Exception) -> _Failure:
        """Map whatever the client raised to our error type and a retry decision; re-raise bugs."""
        import httpx2

        if isinstance(exc, openai.APIStatusError):
            status, msg = exc.status_code, _server_message(exc)
            after = parse_retry_after(exc.response.headers.get("retry-after"))
            if (ms := exc.response.headers.get("retry-after-ms")) is not None:
                with suppress(ValueError):
                    after = float(ms) / 1000
            if status == 429:
                return _Failure(RateLimited, msg, status, True, after, overload=True)
            if status >= 500 or status in (408, 409):
                return _Failure(ServerError, msg, status, True, after if status == 503 else None)
            cls = AuthError if status in (401, 403) else BadRequest
            return _Failure(cls, msg, status, False)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError):
            return _Failure(BackendTimeout, f"no answer within {self.timeout:g} s", None, True)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return _Failure(BackendConnectionError, self._cannot_connect(exc), None, True)
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | _Malformed):
            return _Failure(MalformedResponse, f"malformed response: {exc}", None, True)
        raise exc

    # --- closing --------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the calling loop's client."""
        with self._states_lock:
            st = self._states.pop(asyncio.get_running_loop(), None)
        if st is not None:
            await st.aclose()

    async def loop_ending(self) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close every loop's client that can still be closed; safe to call twice."""
        with self._states_lock:
            items = list(self._states.items())
            self._states.clear()
        for loop, st in items:
            if loop.is_closed():
                continue
            if loop.is_running():
                fut = asyncio.run_coroutine_threadsafe(st.aclose(), loop)
                with suppress(Exception):
                    if not _in_loop(loop):
                        fut.result(5)
            else:
                with suppress(Exception):
                    loop.run_until_complete(st.aclose())


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    with suppress(RuntimeError):
        return asyncio.get_running_loop() is loop
    return False


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if inner.get("message"):
            return str(inner["message"])
    if isinstance(body, str) and body:
        return body[:500]
    return exc.message


def _usage(usage: Any) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _to_response(resp: Any, raw: bool) -> LLMResponse:
    """Convert a (chat) completion; anything else (a str body, no choices) is malformed."""
    choices = getattr(resp, "choices", None)
    if not choices:
        raise _Malformed(f"expected a completion with choices, got {str(resp)[:200]!r}")
    c = choices[0]
    text = c.text if raw else c.message.content
    return LLMResponse(text or "", *_usage(getattr(resp, "usage", None)), _finish(c.finish_reason))

