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
and pick `backend="openai"`. `guided` names the dialect in which `regex=`, `choices=` and `prefill=`
travel (`dialects.py`: "vllm", "vllm-legacy", "sglang", "llama.cpp", None for plain OpenAI). The
default, "auto", reads `owned_by` from the server's /v1/models on the first call that needs it.
A constraint is never dropped silently: a dialect that cannot carry it raises UnsupportedFeature
before the call, and every constrained answer is checked on the client (`ConstraintViolation` when
the server ignored the constraint, `ConstraintIncomplete` when max_tokens cut it short).

Timeouts and queueing
---------------------
`generate()` streams under the hood (`stream_generate=True`), because a non-streamed request is
silent until it is complete: the client cannot tell a request queued behind 200 others at a busy
server from a dead one, times it out, retries it (more load), and the abandoned request keeps
running there. Streamed, the first chunk says the server has started the request: until then the
request may be queued, bounded by `queue_timeout` (600 s; None: no limit), and from then on each
chunk must follow the last within `timeout` (connecting too). Giving up for any reason, or being
cancelled, closes the connection, which is how vLLM, llama-server and `epic serve` learn to abort
the request, queued or running. `stream_generate=False` sends plain requests (one SSE event per
token costs client CPU at GPU rates), and `timeout` then bounds the whole answer, queueing included.
Usage comes from `stream_options.include_usage`; a server that ignores it leaves tokens unknown
(None), never 0. `logprobs=k` is asked for in each endpoint's spelling and read back from either of
OpenAI's two shapes (llm/logprobs.py), each token stamped with its chunk's arrival.

Raise `max_concurrency` to what the deployment can batch (vLLM's --max-num-seqs, 256 by default);
the AIMD cap backs off by itself if the server pushes back with 429s. Several `epic serve`
instances behind a load balancer work the same way.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import random
import re
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import openai

from ..runtime.events import clock
from . import dialects, openai_sse
from .base import Backend, LLMRequest, LLMResponse, StreamChunk, UnsupportedFeature
from .errors import (
    AuthError,
    BackendConnectionError,
    BackendTimeout,
    BadRequest,
    MalformedResponse,
    RateLimited,
    ServerError,
)
from .limiter import AdaptiveLimiter
from .logprobs import TokenLog, extend_from_openai
from .openai_wire import (
    Failure,
    Malformed,
    Timeout,
    finish_reason,
    parse_retry_after,
    server_message,
    to_response,
    usage_counts,
)

__all__ = ["AdaptiveLimiter", "OpenAIBackend", "parse_retry_after"]

_BASE_CAPS = frozenset({"stream", "raw", "seed", "logprobs"})
_GUIDED = ("auto", *dialects.DIALECTS)


@dataclass
class _LoopState:
    """One loop's clients and cap. Several clients, because httpcore's pool scans every connection
    for every request (quadratic); pools of <= _SHARD connections keep 256 concurrent calls cheap."""

    clients: list[openai.AsyncOpenAI]
    limiter: AdaptiveLimiter
    turn: int = 0
    probe_lock: asyncio.Lock | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()


_SHARD = 16     # measured: 256 concurrent calls on 2 CPUs, 16 -> 2.8-2.9x one call, 32 -> 3.0-3.3x, 256 -> 3.1-3.9x


@functools.cache
def _ssl_context() -> Any:
    """The HTTP library's default TLS context, built once per process and shared by every client.
    Each client would otherwise load the CA bundle itself: 16 shard clients per event loop cost
    ~0.4 s of CPU, paid again by every `run()` (each has its own loop). `SSL_CERT_FILE` and
    `SSL_CERT_DIR` are read when the first client is made."""
    httpx = importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])
    make = getattr(httpx, "create_ssl_context", None)     # public since httpx 0.28; else each client its own
    return make() if make is not None else None


def _http_client() -> Any:
    """The HTTP client under each openai client: on the shared TLS context, and noting whether each
    event stream reached [DONE] (openai_sse)."""
    ctx = _ssl_context()
    extra = {"verify": ctx} if ctx is not None else {}
    return openai.DefaultAsyncHttpxClient(event_hooks={"response": [openai_sse.watch]}, **extra)


class OpenAIBackend(Backend):
    """Calls an OpenAI-compatible HTTP server; see the module docstring (and "Scaling out")."""

    name = "openai"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None, *,
                 max_concurrency: int = 64, timeout: float = 60.0, queue_timeout: float | None = 600.0,
                 max_retries: int = 5, guided: str | None = "auto", stream_generate: bool = True,
                 backoff_base: float = 0.5, backoff_max: float = 30.0,
                 max_retry_after: float = 120.0, extra_body: dict | None = None,
                 client_factory: Callable[[], openai.AsyncOpenAI] | None = None):
        super().__init__()
        if guided not in _GUIDED:
            raise ValueError(f"guided must be one of {', '.join(map(repr, _GUIDED))}, not {guided!r}")
        self.base_url = (base_url or os.environ.get("EPIC_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or "https://api.openai.com/v1")
        # the client refuses a missing key even for servers that need none, so send a placeholder
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.default_model = model or os.environ.get("EPIC_OPENAI_MODEL")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.max_retries = max_retries
        self.guided = guided
        self.stream_generate = stream_generate
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.extra_body = dict(extra_body or {})
        # "auto" promises every feature until the server is known; generate() re-checks after probing
        self.dialect: str | None = None if guided == "auto" else guided
        self._probed = guided != "auto"
        self.capabilities = _BASE_CAPS | (frozenset({"regex", "choices", "prefill"}) if guided == "auto"
                                          else dialects.capabilities(guided))
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
                clients = [self._client_factory() if self._client_factory else self._new_client()
                           for _ in range(shards)]
                st = self._states[loop] = _LoopState(clients, AdaptiveLimiter(self.max_concurrency))
            return st

    def _new_client(self) -> openai.AsyncOpenAI:
        """A client on `_http_client()`: one TLS context per process, [DONE] noted on every stream."""
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                                  timeout=self.timeout, http_client=_http_client())

    def limiter(self) -> AdaptiveLimiter | None:
        """The calling loop's limiter (None before its first call); for tests and benchmarks."""
        st = self._states.get(asyncio.get_running_loop())
        return st.limiter if st is not None else None

    def check(self, request: LLMRequest) -> None:
        """Also refuses, before dispatch, a regex Python cannot check the answer against."""
        super().check(request)
        dialects.check_regex(request.params)

    async def _prepare(self, request: LLMRequest, st: _LoopState) -> tuple[LLMRequest, str]:
        """The request as it will be sent, and its model: probes the server's /models when the model or
        (for a constrained or prefilled call) the dialect is not known yet, then re-checks the request
        against what the server really supports."""
        needs_dialect = not self._probed and (request.prefill is not None or request.params.regex is not None
                                              or request.params.choices is not None)
        if (not request.model and self.default_model is None) or needs_dialect:
            await self._probe(st)
        self.check(request)
        model = request.model or self.default_model
        assert model is not None
        if request.prefill is not None and not request.raw and self.dialect == "llama.cpp":
            request = await self._render_prefill(request, model, st)
        return request, model

    async def _probe(self, st: _LoopState) -> None:
        """One GET /models per backend: the default model (the server's first) and, for guided="auto",
        the dialect from its `owned_by`. A server without /models is treated as plain OpenAI."""
        if st.probe_lock is None:
            st.probe_lock = asyncio.Lock()
        async with st.probe_lock:
            if self.default_model is not None and self._probed:
                return
            try:
                page = await st.client.models.list()
                first = page.data[0]
            except (openai.APIStatusError, IndexError) as exc:     # no /models, or an empty list
                first, why = None, exc
            except Exception as exc:
                failure = self._classify(exc)
                raise failure.kind(f"cannot reach {self.base_url}/models: {failure.message}",
                                   status=failure.status, backend=self.name) from exc
            if not self._probed:
                self.dialect = dialects.detect(getattr(first, "owned_by", None))
                self.capabilities = _BASE_CAPS | dialects.capabilities(self.dialect)
                self._probed = True
            if self.default_model is None:
                if first is None:
                    raise BadRequest(f"no model given and {self.base_url}/models lists none ({why}); "
                                     "pass model= or set EPIC_OPENAI_MODEL", backend=self.name)
                self.default_model = first.id

    async def _render_prefill(self, request: LLMRequest, model: str, st: _LoopState) -> LLMRequest:
        """llama-server ignores `continue_final_message` and would open a new assistant turn after the
        prefill. Instead, it renders the chat template (POST /apply-template), the prefill is appended,
        and a raw completion continues the text: the answer is exactly the continuation."""
        root = re.sub(r"/v1/?$", "", self.base_url.rstrip("/"))
        try:
            resp = await st.client.post(root + "/apply-template", cast_to=object,
                                        body={"messages": [dict(m) for m in request.messages or ()]})
            prompt = resp["prompt"]
        except Exception as exc:
            if isinstance(exc, TypeError | KeyError):
                raise UnsupportedFeature(f"prefill= on llama-server needs its /apply-template endpoint ({exc})"
                                         ) from exc
            failure = self._classify(exc)
            raise failure.kind(f"rendering the chat template for prefill=: {failure.message}", model=model,
                               status=failure.status, backend=self.name) from exc
        return replace(request, prompt=prompt, messages=None, raw=True)

    # --- request building -----------------------------------------------------------------------
    def _kwargs(self, request: LLMRequest, model: str) -> dict[str, Any]:
        p = request.params
        kw: dict[str, Any] = {"model": model, "max_tokens": p.max_tokens, "temperature": p.temperature,
                              "top_p": p.top_p}
        constrained = p.regex is not None or p.choices is not None
        if p.stop and not constrained:      # as on the local backend: the constraint decides the end
            kw["stop"] = list(p.stop)
        if p.seed is not None:
            kw["seed"] = p.seed
        if request.logprobs is not None:    # chat: a flag + top_logprobs; completions: the count
            kw.update({"logprobs": request.logprobs} if request.raw else
                      {"logprobs": True, "top_logprobs": request.logprobs})
        extra = dict(self.extra_body)
        extra.update(dialects.constraint_fields(self.dialect, p))
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
        """One answer. Streamed under the hood unless `stream_generate=False` (module docstring); a
        stream cut midway is retried, since nothing of it has reached the caller."""
        self.check(request)
        st = self._state()
        request, model = await self._prepare(request, st)
        kw = self._kwargs(request, model)
        attempt = 0
        while True:
            attempt += 1
            epoch = await st.limiter.acquire()
            try:
                if self.stream_generate:
                    resp = None
                    async for _text, end in self._stream_once(st.client, request, kw):
                        resp = end or resp
                    assert resp is not None
                else:
                    create = st.client.completions.create if request.raw else st.client.chat.completions.create
                    resp = to_response(await create(**kw), request.raw, request.logprobs)
            except Exception as exc:
                failure, cause = self._classify(exc), exc
                if failure.overload:
                    st.limiter.overloaded(epoch)
            else:
                st.limiter.succeeded()
                self._check_answer(request, resp, model)
                return resp
            finally:
                st.limiter.release()
            await self._backoff_or_raise(failure, model, attempt, cause)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """Stream deltas; retried like `generate` while nothing has been yielded (a cut after the
        first delta raises, since the consumer has already seen a prefix)."""
        self.check(request)
        st = self._state()
        request, model = await self._prepare(request, st)
        kw = self._kwargs(request, model)
        attempt = 0
        while True:
            attempt += 1
            parts: list[str] = []
            epoch = await st.limiter.acquire()
            failure: Failure | None = None
            final: LLMResponse | None = None
            try:
                async for text, end in self._stream_once(st.client, request, kw):
                    final = end or final
                    if text:
                        parts.append(text)
                        yield StreamChunk(text)
            except Exception as exc:
                failure, cause = self._classify(exc), exc
                if failure.overload:
                    st.limiter.overloaded(epoch)
                if parts:  # the consumer has a prefix already: retrying would duplicate it
                    failure.retryable = False
                    failure.message += f" (stream cut after {len(''.join(parts))} characters)"
            else:
                st.limiter.succeeded()
            finally:
                st.limiter.release()
            if failure is None and final is not None:  # slot and connection are released before the end
                self._check_answer(request, final, model)
                yield StreamChunk("", final)
                return
            assert failure is not None
            await self._backoff_or_raise(failure, model, attempt, cause)

    async def _stream_once(self, client: openai.AsyncOpenAI, request: LLMRequest, kw: dict[str, Any]
                           ) -> AsyncIterator[tuple[str, LLMResponse | None]]:
        """One streamed HTTP request: yields (delta, None) per chunk and ("", response) at the end.
        Deadlines: headers within `timeout`, the first chunk within `queue_timeout` (time queued at
        the server), each next chunk within `timeout`. The connection is always closed on the way
        out, so a request we abandon (timeout, cancellation, error) is aborted at the server."""
        create = client.completions.create if request.raw else client.chat.completions.create
        kw = {**kw, "stream": True, "stream_options": {"include_usage": True},
              "timeout": openai.Timeout(self.timeout, read=None)}
        parts: list[str] = []
        finish, usage, stream = None, None, None
        tokens = None if request.logprobs is None else TokenLog(k=request.logprobs)
        loop = asyncio.get_running_loop()
        start = loop.time()

        def queued() -> Timeout:
            return Timeout(f"not started within queue_timeout={self.queue_timeout:g} s (queued at the server, "
                            "or it hangs)")

        try:
            try:     # vLLM sends the headers at once; llama-server only when a slot takes the request
                stream = await asyncio.wait_for(create(**kw), self.queue_timeout)
            except TimeoutError:
                raise queued() from None
            chunks = aiter(stream)
            first = True
            while True:
                if first:
                    limit = None if self.queue_timeout is None else max(0.0, start + self.queue_timeout - loop.time())
                else:
                    limit = self.timeout
                try:
                    chunk = await asyncio.wait_for(anext(chunks), limit)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if first:
                        raise queued() from None
                    raise Timeout(f"no progress for {limit:g} s (timeout)") from None
                first = False
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in getattr(chunk, "choices", None) or ():
                    text = (choice.text if request.raw else choice.delta.content) or ""
                    finish = choice.finish_reason or finish
                    if tokens is not None:
                        extend_from_openai(tokens, choice.logprobs, clock())
                    if text:
                        parts.append(text)
                        yield text, None
            # [DONE] without a finish_reason is a whole answer whose finish is unknown (None); a body
            # that ended before [DONE] was cut, however cleanly. Unwatched (a client_factory client
            # without openai_sse.watch): only a finish_reason proves the answer whole.
            if finish is None and not openai_sse.reached_done(stream.response):
                raise Malformed("the stream ended before [DONE], without a finish_reason")
        finally:
            if stream is not None:
                with suppress(Exception):
                    await stream.close()
        yield "", LLMResponse("".join(parts), *usage_counts(usage), finish_reason(finish), tokens=tokens)

    def _check_answer(self, request: LLMRequest, resp: LLMResponse, model: str) -> None:
        p = request.params
        if p.regex is not None or p.choices is not None:
            dialects.check_answer(p, resp.text, resp.finish_reason, model=model, backend=self.name)

    async def _backoff_or_raise(self, failure: Failure, model: str, attempt: int, cause: Exception) -> None:
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

    def _classify(self, exc: Exception) -> Failure:
        """Map whatever the client raised to our error type and a retry decision; re-raise bugs."""
        import httpx2

        if isinstance(exc, openai.APIStatusError):
            status, msg = exc.status_code, server_message(exc)
            after = parse_retry_after(exc.response.headers.get("retry-after"))
            if (ms := exc.response.headers.get("retry-after-ms")) is not None:
                with suppress(ValueError):
                    after = float(ms) / 1000
            if status == 429:
                return Failure(RateLimited, msg, status, True, after, overload=True)
            if status >= 500 or status in (408, 409):
                return Failure(ServerError, msg, status, True, after if status == 503 else None)
            cls = AuthError if status in (401, 403) else BadRequest
            return Failure(cls, msg, status, False)
        if isinstance(exc, Timeout):
            return Failure(BackendTimeout, str(exc), None, True)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError):
            return Failure(BackendTimeout, f"no answer within {self.timeout:g} s", None, True)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return Failure(BackendConnectionError, self._cannot_connect(exc), None, True)
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | Malformed):
            return Failure(MalformedResponse, f"malformed response: {exc}", None, True)
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
