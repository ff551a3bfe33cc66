"""A fake OpenAI-compatible HTTP server with scriptable faults, for tests and benchmarks.

Standard library only (`ThreadingHTTPServer`, HTTP/1.1 keep-alive), bound to 127.0.0.1 on a free
port. It echoes the last user message ("echo: <text>") word by word, honours `max_tokens`, streams
SSE chunks like OpenAI does, and keeps statistics (requests, in-flight count at every arrival,
maximum in flight, client disconnects) so tests observe what a client really did on the wire.

Faults are queued with `add_fault()` and consumed by matching requests in order:

    with FakeOpenAIServer(latency=0.05) as srv:
        srv.add_fault("status", status=429, retry_after="0")   # the next request gets a 429
        srv.add_fault("drop", match="poison", times=None)      # every request mentioning "poison" is cut
        client = AsyncOpenAI(base_url=srv.base_url, api_key="k")

Kinds: "status" (any HTTP error with an OpenAI error body, optional Retry-After), "delay" (sleep
`seconds` before answering, e.g. longer than the client's timeout), "drop" (close the connection
without answering), "malformed" (200 with a body that is not JSON), "cut" (a stream that stops
after `after` chunks without [DONE]), and three ways a stream can end without a finish_reason:
"no-finish" (every chunk, then `data: [DONE]`, but no chunk carries a finish_reason, as some
compatible servers and proxies do), "end" (after `after` chunks the body ends cleanly, the
connection closed, no [DONE]) and "reset" (after `after` chunks the connection is reset: TCP RST). `capacity=N` answers 429 (after `reject_delay` s) whenever more
than N requests are in flight, which is how an overloaded vLLM or OpenAI behaves.

Sleeps poll the socket, so a client that gives up (timeout, cancellation) is seen at once and
counted in `stats["disconnects"]`.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULTS", "FakeOpenAIServer", "Fault"]

FAULTS = ("status", "delay", "drop", "malformed", "cut", "no-finish", "end", "reset")


@dataclass
class Fault:
    kind: str                      # one of FAULTS
    match: str | None = None       # only requests whose prompt contains this text; None: any request
    times: int | None = 1          # how many requests it hits; None: forever
    status: int = 500
    message: str = "injected fault"
    retry_after: str | None = None
    seconds: float = 0.0
    after: int = 1


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[Fault] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.stats = {"requests": 0, "inflight": 0, "max_inflight": 0, "arrivals": [], "disconnects": 0,
                      "completed": 0, "bodies": []}


def _prompt_of(body: dict, chat: bool) -> str:
    if chat:
        msgs = body.get("messages") or []
        last = next((m.get("content") for m in reversed(msgs) if m.get("role") == "user"), "")
        if isinstance(last, list):
            last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
        return str(last)
    p = body.get("prompt", "")
    return str(p[0] if isinstance(p, list) and p else p)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *a: Any) -> None:
        pass

    # --- plumbing -------------------------------------------------------------------------------
    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self._raw(code, data, "application/json", headers)

    def _raw(self, code: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _chunk(self, s: str) -> None:
        b = s.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        self.wfile.flush()

    def _sleep(self, seconds: float) -> bool:
        """Sleep, watching the socket; False if the client hung up (or the server stops) meanwhile.

        `select` blocks until the socket turns readable (a hang-up reads as b"") or the time is up,
        so hundreds of sleeping handlers cost no CPU (polling would starve a benchmark's client).
        """
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.server.state.stopping.is_set():
                return False
            try:
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.25))
                if readable:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return False
                    time.sleep(min(left, 0.01))       # pipelined bytes, not a hang-up: just wait
            except OSError:
                return False
        return True

    def _error(self, status: int, message: str, retry_after: str | None = None) -> None:
        etype = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                 429: "rate_limit_exceeded"}.get(status, "server_error")
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        self._json(status, {"error": {"message": message, "type": etype, "param": None, "code": None}}, headers)

    def _take_fault(self, prompt: str) -> Fault | None:
        st = self.server.state
        with st.lock:
            for f in st.faults:
                if f.match is None or f.match in prompt:
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            st.faults.remove(f)
                    return f
        return None

    # --- endpoints ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/stats":
            with self.server.state.lock:
                return self._json(200, self.server.state.stats)
        if path == "/v1/models":
            return self._json(200, {"object": "list", "data": [
                {"id": self.server.model, "object": "model", "created": 0, "owned_by": "epic-kernel-tests"}]})
        self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(n)
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self._error(404, f"no route {self.path}")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(400, "request body is not JSON")
        key = self.server.api_key
        if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
            return self._error(401, "Incorrect API key provided")
        chat = path.endswith("chat/completions")
        st = self.server.state
        with st.lock:
            st.stats["requests"] += 1
            st.stats["inflight"] += 1
            st.stats["max_inflight"] = max(st.stats["max_inflight"], st.stats["inflight"])
            st.stats["arrivals"].append(st.stats["inflight"])
            st.stats["bodies"].append(body)
            overloaded = self.server.capacity is not None and st.stats["inflight"] > self.server.capacity
        try:
            if overloaded:
                if not self._sleep(self.server.reject_delay):
                    return self._hung_up()
                return self._error(429, "server overloaded: too many requests in flight", retry_after="0")
            self._answer(body, chat)
        finally:
            with st.lock:
                st.stats["inflight"] -= 1

    def _answer(self, body: dict, chat: bool) -> None:
        st = self.server.state
        prompt = _prompt_of(body, chat)
        fault = self._take_fault(prompt)
        if fault is not None and fault.kind == "delay" and not self._sleep(fault.seconds):
            return self._hung_up()
        if not self._sleep(self.server.latency):
            return self._hung_up()
        if fault is not None:
            if fault.kind == "status":
                return self._error(fault.status, fault.message, fault.retry_after)
            if fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if fault.kind == "malformed":
                return self._raw(200, b'{"id": "x", "choices": [ this is not json', "application/json")
        words = ("echo: " + prompt).split(" ")
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(words)
        words, finish = words[:limit], ("length" if limit < len(words) else "stop")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:12]
        model = body.get("model") or self.server.model
        usage = {"prompt_tokens": len(prompt.split()) + 3, "completion_tokens": len(words)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            text = " ".join(words)
            choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text},
                                       "finish_reason": finish, "logprobs": None} if chat else
                                      {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
            self._json(200, {"id": rid, "object": "chat.completion" if chat else "text_completion",
                             "created": int(time.time()), "model": model, "choices": [choice], "usage": usage})
        else:
            self._stream(words, finish, usage, rid, model, body, chat, fault)
        with st.lock:
            st.stats["completed"] += 1
        return None

    def _stream(self, words: list[str], finish: str, usage: dict, rid: str, model: str, body: dict,
                chat: bool, fault: Fault | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": rid, "object": obj, "created": int(time.time()), "model": model}
        kind = fault.kind if fault is not None else None
        for i, w in enumerate(words):
            if kind in ("cut", "end", "reset") and i >= fault.after:
                return self._end_early(kind)
            piece = w if i == 0 else " " + w
            if chat:
                delta = {"content": piece, **({"role": "assistant"} if i == 0 else {})}
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
            self._chunk("data: " + json.dumps({**head, "choices": [choice]}) + "\n\n")
            if self.server.chunk_delay and not self._sleep(self.server.chunk_delay):
                return self._hung_up()
        if kind in ("end", "reset"):          # fewer words than `after`: still end without [DONE]
            return self._end_early(kind)
        if kind != "no-finish":
            last = {"index": 0, "finish_reason": finish, **({"delta": {}} if chat else {"text": "", "logprobs": None})}
            self._chunk("data: " + json.dumps({**head, "choices": [last]}) + "\n\n")
        if self.server.usage and (body.get("stream_options") or {}).get("include_usage"):
            self._chunk("data: " + json.dumps({**head, "choices": [], "usage": usage}) + "\n\n")
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _end_early(self, kind: str) -> None:
        """Stop a stream before [DONE]: "cut" half-closes mid-body (an incomplete chunked body),
        "end" finishes the body cleanly and closes, "reset" aborts the connection with a TCP RST."""
        self.close_connection = True
        if kind == "end":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.connection.shutdown(socket.SHUT_RDWR)

    def _hung_up(self) -> None:
        self.close_connection = True
        with self.server.state.lock:
            self.server.state.stats["disconnects"] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    state: _State
    latency: float
    chunk_delay: float
    capacity: int | None
    reject_delay: float
    model: str
    usage: bool
    api_key: str | None


class FakeOpenAIServer:
    """Run the fake server in a background thread; a context manager. See the module docstring."""

    def __init__(self, *, latency: float = 0.0, chunk_delay: float = 0.0, capacity: int | None = None,
                 reject_delay: float = 0.0, model: str = "fake-model", api_key: str | None = None,
                 port: int = 0, usage: bool = True):
        self._srv = _Server(("127.0.0.1", port), _Handler)
        self._srv.state = _State()
        self._srv.state.reset()
        self._srv.latency = latency
        self._srv.chunk_delay = chunk_delay
        self._srv.capacity = capacity
        self._srv.reject_delay = reject_delay
        self._srv.model = model
        self._srv.api_key = api_key
        self._srv.usage = usage      # False: ignore stream_options.include_usage (llama-cpp-python's server)
        self._thread: threading.Thread | None = None

    # configuration can change between calls of one test
    latency = property(lambda self: self._srv.latency, lambda self, v: setattr(self._srv, "latency", v))
    capacity = property(lambda self: self._srv.capacity, lambda self, v: setattr(self._srv, "capacity", v))
    reject_delay = property(lambda self: self._srv.reject_delay,
                            lambda self, v: setattr(self._srv, "reject_delay", v))

    @property
    def port(self) -> int:
        return self._srv.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def stats(self) -> dict[str, Any]:
        with self._srv.state.lock:
            return json.loads(json.dumps(self._srv.state.stats))

    def reset_stats(self) -> None:
        with self._srv.state.lock:
            self._srv.state.reset()

    def add_fault(self, kind: str, *, match: str | None = None, times: int | None = 1, **kw: Any) -> Fault:
        """Queue a fault for the next matching request(s); see the module docstring for the kinds."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(kind, match=match, times=times, **kw)
        with self._srv.state.lock:
            self._srv.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._srv.state.lock:
            self._srv.state.faults.clear()

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._srv.state.stopping.set()
        if self._thread is not None:
            self._srv.shutdown()
            self._thread.join(5)
            self._thread = None
        self._srv.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - manual use: python -m epic_kernel.testing.fake_openai PORT LATENCY
    import sys
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    srv = FakeOpenAIServer(latency=latency, port=port).start()
    print(f"fake OpenAI server on {srv.base_url} latency={latency}s", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
