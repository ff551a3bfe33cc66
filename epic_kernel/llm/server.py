"""`epic serve`: an OpenAI-compatible HTTP server over any Backend, so several kernels share one GPU.

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both with
`stream: true` as SSE in OpenAI's chunk format, a usage chunk when `stream_options.include_usage`),
GET /health. Each HTTP request becomes one `backend.generate()`/`backend.stream()` awaited on the
server's event loop, so requests from concurrent clients reach the backend concurrently and a
batching backend batches them. A client that disconnects cancels its backend call (frees its batch
slot).

Bad input never produces a 500 traceback: every rejection is a 4xx JSON body in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, which the `openai` client turns into the usual
`BadRequestError`/`AuthenticationError`/`NotFoundError`. Constrained decoding and prefill use vLLM's
extra fields (`structured_outputs: {"regex"|"choice"}`, the older `guided_regex`/`guided_choice`,
`continue_final_message`), so `OpenAIBackend` pointed at this server (it lists itself as
`owned_by: "epic-kernel"`, which the backend reads as the vLLM dialect) keeps every feature of the
local backend. Log-probabilities come back in OpenAI's shape for each endpoint (chat: `logprobs: true`,
`top_logprobs: k`; completions: `logprobs: k`), in streamed chunks too (llm/logprobs.py). As vLLM does, a request naming a model the server does not serve is a 404 (the model
field may be left out); `strict_model=False` (`epic serve --any-model`) serves any name.

Bound to 127.0.0.1 unless told otherwise; `api_key=` requires `Authorization: Bearer <key>` on /v1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .base import Backend, LLMRequest, LLMResponse, SamplingParams, UnsupportedFeature
from .errors import BackendError
from .logprobs import MAX_TOP, TokenLog

__all__ = ["ServerThread", "create_app", "serve"]

MAX_N = 16


class _Invalid(Exception):
    """A request we reject; becomes an OpenAI-shaped 4xx body."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 etype: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.etype, self.code = message, param, status, etype, code


def _error(status: int, message: str, etype: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": etype, "param": param, "code": code}},
                        status_code=status)


# --- request validation ---------------------------------------------------------------------------
def _number(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Invalid(f"'{name}' must be a number, not {type(v).__name__}", name)
    if not lo <= v <= hi:
        raise _Invalid(f"'{name}' must be between {lo:g} and {hi:g}, got {v}", name)
    return float(v)


def _int(body: dict, name: str, default: int | None, lo: int) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Invalid(f"'{name}' must be an integer, not {type(v).__name__}", name)
    if v < lo:
        raise _Invalid(f"'{name}' must be at least {lo}, got {v}", name)
    return v


def _text(content: Any, param: str) -> str:
    """Message content: a string, or a list of text parts (OpenAI's content-part form)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise _Invalid(f"'{param}' must be a string or a list of text parts", param)


def _params(body: dict) -> SamplingParams:
    max_tokens = _int(body, "max_tokens", None, 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_completion_tokens", 256, 1)
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise _Invalid("'stop' must be a string or a list of strings", "stop")
    so = body.get("structured_outputs")
    if so is not None:
        if not isinstance(so, dict):
            raise _Invalid("'structured_outputs' must be an object", "structured_outputs")
        unknown = sorted(k for k, v in so.items() if v is not None and k not in ("regex", "choice"))
        if unknown:   # refused, not ignored: a dropped constraint would be answered as if it held
            raise _Invalid(f"structured_outputs.{unknown[0]} is not supported (regex and choice are)",
                           "structured_outputs")
    so = so or {}
    regex_name = "structured_outputs.regex" if so.get("regex") is not None else "guided_regex"
    regex = so.get("regex", body.get("guided_regex", body.get("regex")))
    if regex is not None and not isinstance(regex, str):
        raise _Invalid(f"'{regex_name}' must be a string", regex_name)
    choice_name = "structured_outputs.choice" if so.get("choice") is not None else "guided_choice"
    choices = so.get("choice", body.get("guided_choice"))
    if choices is not None and not (isinstance(choices, list) and choices
                                    and all(isinstance(c, str) for c in choices)):
        raise _Invalid(f"'{choice_name}' must be a non-empty list of strings", choice_name)
    return SamplingParams(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                          top_p=_number(body, "top_p", 1.0, 0.0, 1.0), stop=stops,
                          seed=_int(body, "seed", None, -(2**63)), regex=regex,
                          choices=tuple(choices) if choices is not None else None)


def _chat_request(body: dict) -> LLMRequest:
    msgs = body.get("messages")
    if msgs is None:
        raise _Invalid("'messages' is required", "messages")
    if not isinstance(msgs, list) or not msgs:
        raise _Invalid("'messages' must be a non-empty list", "messages")
    clean = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise _Invalid(f"messages[{i}] must be an object with a string 'role' and a 'content'",
                           f"messages[{i}]")
        if m["role"] not in ("system", "user", "assistant", "developer", "tool"):
            raise _Invalid(f"messages[{i}].role {m['role']!r} is not a chat role", f"messages[{i}].role")
        clean.append({"role": "system" if m["role"] == "developer" else m["role"],
                      "content": _text(m["content"], f"messages[{i}].content")})
    prefill = None
    if body.get("continue_final_message") and clean[-1]["role"] == "assistant":
        prefill = clean.pop()["content"]
        if not clean:
            raise _Invalid("continue_final_message needs a message before the assistant one", "messages")
    return LLMRequest(messages=tuple(clean), params=_params(body), prefill=prefill)


def _completion_request(body: dict) -> LLMRequest:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if prompt is None:
        raise _Invalid("'prompt' is required", "prompt")
    if not isinstance(prompt, str):
        raise _Invalid("'prompt' must be a string (batches of prompts are not supported)", "prompt")
    return LLMRequest(prompt=prompt, raw=True, params=_params(body))


# --- the app --------------------------------------------------------------------------------------
class _App:
    """Route handlers bound to one backend. One instance per `create_app`."""

    def __init__(self, backend: Backend, api_key: str | None, model_name: str, strict_model: bool,
                 aliases: tuple[str, ...] = ()):
        self.backend, self.api_key, self.model_name, self.strict_model = backend, api_key, model_name, strict_model
        self.names = frozenset((model_name, *aliases))

    def _authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "backend": self.backend.describe(), "model": self.model_name})

    async def stats(self, request: Request) -> Response:
        """The shared batcher's counters (batches, steps, rows per decode step): how operators and
        benchmarks see that requests from different clients are decoded together."""
        if not self._authorized(request):
            return _unauthorized()
        fn = getattr(self.backend, "stats", None)
        data = fn() if callable(fn) else {}
        return JSONResponse({"backend": self.backend.describe(), "stats": data})

    async def models(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "epic-kernel"}]})

    async def chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, chat: bool) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        try:
            body = await _json_body(request)
            req = _chat_request(body) if chat else _completion_request(body)
            req = replace(req, logprobs=_logprobs_k(body, chat))
            model = body.get("model")
            if model is not None and not isinstance(model, str):
                raise _Invalid("'model' must be a string", "model")
            if self.strict_model and model is not None and model not in self.names:
                raise _Invalid(f"The model '{model}' does not exist (this server serves '{self.model_name}')",
                               "model", 404, code="model_not_found")
            n = _int(body, "n", 1, 1)
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise _Invalid("'stream' must be a boolean", "stream")
            if n > MAX_N or (stream and n > 1):
                raise _Invalid(f"'n' must be 1 when streaming and at most {MAX_N} otherwise", "n")
            opts = body.get("stream_options") or {}
            if not isinstance(opts, dict):
                raise _Invalid("'stream_options' must be an object", "stream_options")
            self.backend.check(req)
        except _Invalid as e:
            return _error(e.status, e.message, e.etype, e.param, e.code)
        except UnsupportedFeature as e:
            return _error(400, str(e))
        name = model or self.model_name
        if stream:
            gen = _sse(self.backend, req, chat, name, bool(opts.get("include_usage")))
            return StreamingResponse(gen, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        calls = [self.backend.generate(req if i == 0 else _sample(req, i)) for i in range(n)]
        try:
            results = await _until_disconnect(request, asyncio.gather(*calls))
        except _Disconnected:
            return Response(status_code=499)
        except UnsupportedFeature as e:
            return _error(400, str(e))
        except BackendError as e:
            status = e.status if e.status is not None and 400 <= e.status < 600 else 502
            return _error(status, str(e), "server_error" if status >= 500 else "invalid_request_error")
        except Exception as e:  # the backend failed: say so in OpenAI's shape, never a traceback page
            return _error(500, f"backend error: {type(e).__name__}: {e}", "server_error")
        return JSONResponse(_completion_body(results, chat, name))


def _sample(req: LLMRequest, i: int) -> LLMRequest:
    return replace(req, sample_index=req.sample_index + i)


def _logprobs_k(body: dict, chat: bool) -> int | None:
    """The alternatives per token a request asks for, in either endpoint's spelling (chat: `logprobs`
    true + `top_logprobs` k; completions: `logprobs` k); None when it asks for none."""
    if chat:
        on = body.get("logprobs")
        if on is not None and not isinstance(on, bool):
            raise _Invalid("'logprobs' must be a boolean on /v1/chat/completions", "logprobs")
        k = _int(body, "top_logprobs", None, 0)
        if k is not None and not on:
            raise _Invalid("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        if k is not None and k > MAX_TOP:
            raise _Invalid(f"'top_logprobs' must be at most {MAX_TOP}", "top_logprobs")
        return (k or 0) if on else None
    k = _int(body, "logprobs", None, 0)
    if k is not None and k > MAX_TOP:
        raise _Invalid(f"'logprobs' must be at most {MAX_TOP}", "logprobs")
    return k


def _wire_logprobs(tokens: TokenLog | None, chat: bool, offset: int = 0) -> dict | None:
    if tokens is None:
        return None
    return tokens.to_openai_chat() if chat else tokens.to_openai_completion(offset)


def _unauthorized() -> JSONResponse:
    return _error(401, "Incorrect API key provided (send 'Authorization: Bearer <key>')",
                  "authentication_error", code="invalid_api_key")


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Invalid(f"request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise _Invalid("request body must be a JSON object")
    return body


class _Disconnected(Exception):
    pass


async def _until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`, cancelling it if the client hangs up first (starlette would let it run on)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server itself is shutting down
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise _Disconnected()
    return task.result()


def _usage(resps: list[LLMResponse]) -> dict[str, int] | None:
    """OpenAI's usage object; None (JSON null) when the backend does not know its token counts."""
    tin = resps[0].tokens_in if resps else 0
    outs = [r.tokens_out for r in resps]
    if tin is None or any(t is None for t in outs):
        return None
    tout = sum(t for t in outs if t is not None)
    return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}


def _completion_body(resps: list[LLMResponse], chat: bool, model: str) -> dict:
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                    "finish_reason": r.finish_reason, "logprobs": _wire_logprobs(r.tokens, chat)}
                   for i, r in enumerate(resps)]
    else:
        choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason,
                    "logprobs": _wire_logprobs(r.tokens, chat)} for i, r in enumerate(resps)]
    return {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": _usage(resps)}


async def _sse(backend: Backend, req: LLMRequest, chat: bool, model: str, include_usage: bool
               ) -> AsyncIterator[str]:
    """OpenAI's chunk stream. Starlette cancels this generator when the client disconnects, and the
    `finally` then closes the backend's stream (which cancels the generation)."""
    head = {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model}

    def event(choices: list, **extra: Any) -> str:
        return "data: " + json.dumps({**head, "choices": choices, **extra}) + "\n\n"

    sent = [0, 0]      # tokens and characters already streamed with their logprobs

    def delta(text: str, finish: str | None = None, first: bool = False, tokens: TokenLog | None = None) -> dict:
        lp = _wire_logprobs(tokens, chat, sent[1]) if tokens is not None and len(tokens) else None
        if tokens is not None:
            sent[0] += len(tokens)
            sent[1] += len(tokens.text)
        if chat:
            d = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": 0, "delta": d, "finish_reason": finish, "logprobs": lp}
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": lp}

    if chat:
        yield event([delta("", first=True)])
    chunks = backend.stream(req)
    final: LLMResponse | None = None
    try:
        async for chunk in chunks:
            rest = chunk.tokens
            if chunk.response is not None:
                final = chunk.response
                if final.tokens is not None:      # tokens not streamed yet come with the last text
                    rest = final.tokens.sliced(sent[0])
            if chunk.text or (rest is not None and len(rest)):
                yield event([delta(chunk.text, tokens=rest)])
    except Exception as e:  # headers are sent: report in-band, as OpenAI does
        etype = "server_error"
        yield "data: " + json.dumps({"error": {"message": f"backend error: {type(e).__name__}: {e}",
                                               "type": etype, "param": None, "code": None}}) + "\n\n"
        return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    final = final or LLMResponse("")
    yield event([delta("", final.finish_reason)])
    if include_usage:
        yield event([], usage=_usage([final]))
    yield "data: [DONE]\n\n"


def create_app(backend: Backend, api_key: str | None = None, model_name: str | None = None, *,
               strict_model: bool = True, aliases: tuple[str, ...] = ()) -> Starlette:
    """The ASGI app. `model_name` is what /v1/models lists (default: the backend's model); a request
    for any name but it or one of `aliases` is a 404, as on vLLM, unless `strict_model=False`."""
    name = model_name or backend.default_model or backend.name
    h = _App(backend, api_key, name, strict_model, tuple(aliases))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        return _error(status, f"{detail}: {request.method} {request.url.path}")

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _error(500, f"internal server error: {type(exc).__name__}: {exc}", "server_error")

    routes = [Route("/health", h.health), Route("/v1/models", h.models), Route("/v1/stats", h.stats),
              Route("/v1/chat/completions", h.chat, methods=["POST"]),
              Route("/v1/completions", h.completions, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    app.state.backend = backend
    return app


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_name: str | None = None, *, log_level: str = "info", **app_kw: Any) -> None:
    """Serve until interrupted (what `epic serve` calls); `app_kw` goes to `create_app`."""
    import uvicorn

    uvicorn.run(create_app(backend, api_key, model_name, **app_kw), host=host, port=port, log_level=log_level)


class ServerThread:
    """Run the server in a background thread on a free port; a context manager for tests/benchmarks.

        with ServerThread(backend, api_key="k") as srv:
            OpenAI(base_url=srv.base_url, api_key="k")
    """

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 model_name: str | None = None, **app_kw: Any):
        import uvicorn

        self.app = create_app(backend, api_key, model_name, **app_kw)
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="epic-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"epic serve did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
