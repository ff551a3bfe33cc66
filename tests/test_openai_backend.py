"""OpenAIBackend against a real HTTP server on 127.0.0.1 (the scriptable fake in epic_kernel.testing).

No assertion depends on wall-clock timings: retries, caps and cancellation are observed through the
server's own counters (requests, in-flight at each arrival, disconnects).
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time

import pytest

pytest.importorskip("openai")

from epic_kernel.llm.base import LLMRequest, SamplingParams, UnsupportedFeature  # noqa: E402
from epic_kernel.llm.constrained import ConstraintIncomplete  # noqa: E402
from epic_kernel.llm.errors import (  # noqa: E402
    AuthError,
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BadRequest,
    ConstraintViolation,
    RateLimited,
    ServerError,
)
from epic_kernel.llm.openai_backend import AdaptiveLimiter, OpenAIBackend, parse_retry_after  # noqa: E402
from epic_kernel.testing.fake_openai import FakeOpenAIServer  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(latency=0.0) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.clear_faults()
    server.reset_stats()
    server.latency = 0.0
    server.capacity = None
    server.reject_delay = 0.0
    yield server
    server.clear_faults()


def backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5.0)
    return OpenAIBackend(base_url=srv.base_url, api_key="sk-test", **kw)


def run(coro):
    return asyncio.run(coro)


async def wait_for(pred, timeout: float = 10.0) -> None:
    """Poll a condition (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


# --- plain calls ---------------------------------------------------------------------------------
def test_chat_raw_and_usage(srv):
    b = backend(srv)

    async def main():
        chat = await b.generate(LLMRequest.build("hello there"))
        raw = await b.generate(LLMRequest.build("once upon a time", raw=True, params=SamplingParams(max_tokens=3)))
        await b.aclose()
        return chat, raw

    chat, raw = run(main())
    assert b.default_model == "fake-model"          # discovered from /v1/models
    assert (chat.text, chat.finish_reason, chat.tokens_in, chat.tokens_out) == ("echo: hello there", "stop", 5, 3)
    assert (raw.text, raw.finish_reason, raw.tokens_out) == ("echo: once upon", "length", 3)
    chat_body, raw_body = srv.stats["bodies"]
    assert chat_body["messages"] == [{"role": "user", "content": "hello there"}]
    assert chat_body["model"] == "fake-model" and chat_body["temperature"] == 0.0
    assert raw_body["prompt"] == "once upon a time" and raw_body["max_tokens"] == 3


def test_stream_chat_and_raw_with_usage(srv):
    b = backend(srv, model="m1")

    async def main():
        chat = [c async for c in b.stream(LLMRequest.build("stream me please"))]
        raw = [c async for c in b.stream(LLMRequest.build("a b c", raw=True))]
        await b.aclose()
        return chat, raw

    chat, raw = run(main())
    assert [c.text for c in chat] == ["echo:", " stream", " me", " please", ""]
    assert all(c.response is None for c in chat[:-1])
    final = chat[-1].response
    assert (final.text, final.tokens_in, final.tokens_out, final.finish_reason) == (
        "echo: stream me please", 6, 4, "stop")
    assert "".join(c.text for c in raw) == raw[-1].response.text == "echo: a b c"
    assert all(body["stream_options"] == {"include_usage": True} and body["model"] == "m1"
               for body in srv.stats["bodies"])


def test_guided_decoding_and_prefill_fields(srv):
    """What each dialect puts on the wire. The fake echoes and ignores every constraint, so each
    constrained answer must come back as a ConstraintViolation, never as text."""
    req = LLMRequest.build("pick", params=SamplingParams(regex=r"\d+", stop=("\n",), seed=7))
    choice = LLMRequest.build("pick", params=SamplingParams(choices=("yes", "no.")))
    prefill = LLMRequest.build("list", prefill="1.")

    async def main():
        v, legacy = backend(srv, model="m", guided="vllm"), backend(srv, model="m", guided="vllm-legacy")
        s, llama = backend(srv, model="m", guided="sglang"), backend(srv, model="m", guided="llama.cpp")
        for b in (v, legacy, s):
            for r in (req, choice):
                with pytest.raises(ConstraintViolation, match="does not match"):
                    await b.generate(r)
        assert (await v.generate(prefill)).text == "echo: list"
        with pytest.raises(UnsupportedFeature):
            await s.generate(prefill)
        with pytest.raises(UnsupportedFeature, match="regex="):
            await llama.generate(req)
        with pytest.raises(ConstraintViolation):
            await llama.generate(choice)
        plain = backend(srv, model="m", guided=None)
        assert plain.capabilities == {"stream", "raw", "seed", "logprobs"}
        with pytest.raises(UnsupportedFeature, match="regex"):
            await plain.generate(req)
        auto = backend(srv, model="m")                 # the fake's owned_by is unknown: plain OpenAI
        with pytest.raises(UnsupportedFeature, match="choices"):
            await auto.generate(choice)
        assert auto.dialect is None and auto.capabilities == {"stream", "raw", "seed", "logprobs"}
        for x in (v, legacy, s, llama, plain, auto):
            await x.aclose()

    run(main())
    b = srv.stats["bodies"]
    assert b[0]["structured_outputs"] == {"regex": r"\d+"} and b[0]["seed"] == 7
    assert "stop" not in b[0]                           # the constraint decides where the answer ends
    assert b[1]["structured_outputs"] == {"choice": ["yes", "no."]}
    assert b[2]["guided_regex"] == r"\d+" and b[3]["guided_choice"] == ["yes", "no."]
    assert b[4]["regex"] == r"\d+" and "guided_regex" not in b[4]
    assert b[5]["regex"] == r"(yes|no\.)"
    assert b[6]["messages"][-1] == {"role": "assistant", "content": "1."}
    assert b[6]["continue_final_message"] is True and b[6]["add_generation_prompt"] is False
    assert b[7]["grammar"] == 'root ::= "yes" | "no."'
    assert len(b) == 8


def test_constraint_checked_on_the_client_streams_and_length(srv):
    """A stream's constraint is checked when it ends; an answer cut by max_tokens is ConstraintIncomplete."""
    b = backend(srv, model="m", guided="vllm")
    ok = LLMRequest.build("7 8", params=SamplingParams(regex=r"echo: [0-9 ]+"))
    cut = LLMRequest.build("1 2 3 4", params=SamplingParams(regex=r"echo: 1 2 3 4", max_tokens=2))

    async def main():
        chunks = [c async for c in b.stream(ok)]
        with pytest.raises(ConstraintIncomplete, match="max_tokens=2"):
            await b.generate(cut)
        with pytest.raises(ConstraintViolation):
            [c async for c in b.stream(LLMRequest.build("x", params=SamplingParams(choices=("a", "b"))))]
        with pytest.raises(UnsupportedFeature, match="invalid regex"):
            b.check(LLMRequest.build("x", params=SamplingParams(regex="(")))
        await b.aclose()
        return chunks

    assert run(main())[-1].response.text == "echo: 7 8"


def test_env_configuration(monkeypatch):
    monkeypatch.setenv("EPIC_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("EPIC_OPENAI_MODEL", "env-model")
    b = OpenAIBackend()
    assert (b.base_url, b.api_key, b.default_model) == ("http://127.0.0.1:9/v1", "sk-env", "env-model")
    assert OpenAIBackend(base_url="http://x/v1", model="m").base_url == "http://x/v1"


# --- retries -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [
    {"kind": "status", "status": 429, "retry_after": "0"},
    {"kind": "status", "status": 503, "retry_after": "0"},
    {"kind": "status", "status": 500},
    {"kind": "drop"},
    {"kind": "malformed"},
    {"kind": "delay", "seconds": 3.0},        # longer than the 0.3 s timeout below
], ids=lambda f: f["kind"] + str(f.get("status", "")))
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "plain"])
def test_retried_then_success(srv, fault, streamed):
    srv.add_fault(**fault)
    b = backend(srv, model="m", timeout=0.3, queue_timeout=0.3, stream_generate=streamed)

    async def main():
        r = await b.generate(LLMRequest.build("retry me"))
        await b.aclose()
        return r

    assert run(main()).text == "echo: retry me"
    assert srv.stats["requests"] == 2


def test_stream_retried_before_first_chunk(srv):
    srv.add_fault("status", status=500)
    b = backend(srv, model="m")

    async def main():
        out = [c async for c in b.stream(LLMRequest.build("x y"))]
        await b.aclose()
        return out

    assert run(main())[-1].response.text == "echo: x y"
    assert srv.stats["requests"] == 2


def test_stream_cut_after_first_chunk_is_not_retried(srv):
    srv.add_fault("cut", after=2)
    b = backend(srv, model="m")
    seen: list[str] = []

    async def main():
        try:
            async for c in b.stream(LLMRequest.build("one two three four")):
                seen.append(c.text)
        finally:
            await b.aclose()

    with pytest.raises(BackendConnectionError, match="stream cut after"):
        run(main())
    assert seen == ["echo:", " one"] and srv.stats["requests"] == 1


def test_retries_exhausted_raise_a_clear_error(srv):
    srv.add_fault("status", status=503, retry_after="0", times=None, message="engine overloaded, try later")
    b = backend(srv, model="big-model", max_retries=2)

    async def main():
        try:
            await b.generate(LLMRequest.build("x"))
        finally:
            await b.aclose()

    with pytest.raises(ServerError) as ei:
        run(main())
    e = ei.value
    assert isinstance(e, BackendError) and (e.status, e.model, e.attempts) == (503, "big-model", 3)
    for part in ("big-model", "503", "engine overloaded, try later", "3 attempts"):
        assert part in str(e)
    assert srv.stats["requests"] == 3


@pytest.mark.parametrize("streamed,message", [(True, "not started within queue_timeout=0.2 s"),
                                               (False, "no answer within 0.2 s")], ids=["streamed", "plain"])
def test_timeouts_exhausted(srv, streamed, message):
    srv.add_fault("delay", seconds=5.0, times=None)
    b = backend(srv, model="m", timeout=0.2, queue_timeout=0.2, max_retries=1, stream_generate=streamed)

    async def main():
        try:
            await b.generate(LLMRequest.build("slow"))
        finally:
            await b.aclose()

    with pytest.raises(BackendTimeout, match=message):
        run(main())
    assert srv.stats["requests"] == 2


def test_time_queued_at_the_server_is_not_the_timeout(srv):
    """A server silent for 1 s before it starts (queued) is fine with timeout=0.3: only silence once
    the answer has started counts against `timeout`. (tests/test_engines.py does this on llama-server.)"""
    srv.add_fault("delay", seconds=1.0)
    b = backend(srv, model="m", timeout=0.3, max_retries=0)

    async def main():
        r = await b.generate(LLMRequest.build("queued"))
        await b.aclose()
        return r

    assert run(main()).text == "echo: queued" and srv.stats["requests"] == 1


def test_a_stalled_stream_times_out_and_is_closed():
    """Silence between chunks longer than `timeout` gives up, and the connection is closed (the
    server sees the disconnect, which is how real servers abort the request)."""
    with FakeOpenAIServer(chunk_delay=2.0) as srv:
        b = backend(srv, model="m", timeout=0.3, max_retries=0)

        async def main():
            try:
                await b.generate(LLMRequest.build("one two three"))
            finally:
                await b.aclose()

        with pytest.raises(BackendTimeout, match="no progress for 0.3 s"):
            run(main())
        deadline = time.monotonic() + 10
        while srv.stats["disconnects"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.stats["disconnects"] == 1


@pytest.mark.parametrize("status,cls", [(400, BadRequest), (404, BadRequest), (422, BadRequest),
                                        (401, AuthError)])
def test_non_retryable_4xx_raise_immediately(srv, status, cls):
    srv.add_fault("status", status=status, message="you sent nonsense", times=None)
    b = backend(srv, model="m")

    async def main():
        try:
            await b.generate(LLMRequest.build("x"))
        finally:
            await b.aclose()

    with pytest.raises(cls, match="you sent nonsense") as ei:
        run(main())
    assert ei.value.status == status and ei.value.attempts == 1
    assert srv.stats["requests"] == 1


def test_one_failure_keeps_the_other_calls(srv):
    srv.latency = 0.05
    srv.add_fault("status", status=400, match="poison", times=None, message="bad prompt")
    b = backend(srv, model="m")

    async def main():
        prompts = ["a", "b", "poison", "c", "d"]
        out = await asyncio.gather(*[b.generate(LLMRequest.build(p)) for p in prompts], return_exceptions=True)
        await b.aclose()
        return out

    out = run(main())
    assert isinstance(out[2], BadRequest)
    assert [r.text for i, r in enumerate(out) if i != 2] == ["echo: a", "echo: b", "echo: c", "echo: d"]


def test_rate_limited_after_retries(srv):
    srv.add_fault("status", status=429, retry_after="0", times=None, message="slow down")
    b = backend(srv, model="m", max_retries=1)

    async def main():
        try:
            await b.generate(LLMRequest.build("x"))
        finally:
            await b.aclose()

    with pytest.raises(RateLimited, match="slow down"):
        run(main())


def test_retry_after_parsing():
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.5") == 0.5
    now = time.time()
    assert 9 <= parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now=now) <= 10
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    b = OpenAIBackend(base_url="http://127.0.0.1:9/v1", backoff_base=1.0, backoff_max=4.0)
    assert 7.0 <= b._delay(1, 7.0) <= 7.05         # the server's word wins over backoff
    assert all(0 <= b._delay(10, None) <= 4.0 for _ in range(50))


# --- concurrency ---------------------------------------------------------------------------------
def test_cap_adapts_on_429(srv):
    """An overloaded server (capacity 4) pushes back with 429s: the cap halves down to what the
    server takes, so late arrivals find far fewer requests in flight than the first burst did."""
    srv.latency = srv.reject_delay = 0.05
    srv.capacity = 4
    b = backend(srv, model="m", max_concurrency=32, max_retries=100)

    async def main():
        out = await asyncio.gather(*[b.generate(LLMRequest.build(f"q{i}")) for i in range(96)])
        lim = b.limiter()
        await b.aclose()
        return out, lim

    out, lim = run(main())
    assert [r.text for r in out] == [f"echo: q{i}" for i in range(96)]
    arrivals = srv.stats["arrivals"]
    assert max(arrivals[:32]) >= 16                  # the first burst really was concurrent
    assert max(arrivals[-48:]) <= 8                  # ... later ones were held back by the cap
    assert lim.lowest <= 4 and lim.inflight == 0


def test_max_concurrency_is_respected(srv):
    srv.latency = 0.05
    b = backend(srv, model="m", max_concurrency=5)

    async def main():
        await asyncio.gather(*[b.generate(LLMRequest.build(f"q{i}")) for i in range(20)])
        await b.aclose()

    run(main())
    assert srv.stats["max_inflight"] == 5


def test_adaptive_limiter_unit():
    async def main():
        lim = AdaptiveLimiter(4)
        epochs = [await lim.acquire() for _ in range(4)]
        waiter = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        lim.overloaded(epochs[0])
        lim.overloaded(epochs[1])                     # same burst: halves once
        assert lim.limit == 2
        lim.release()
        lim.release()
        await asyncio.sleep(0)
        assert not waiter.done() and lim.inflight == 2   # at the halved cap: still waiting
        lim.release()
        await asyncio.sleep(0)
        assert waiter.done() and lim.inflight == 2
        lim.succeeded()
        lim.succeeded()
        assert lim.limit == 3                         # +1 per window of `limit` successes
        for _ in range(10):
            lim.succeeded()
        assert lim.limit == 4                         # ... capped at the maximum
        blocked = [asyncio.ensure_future(lim.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        assert lim.inflight == 4 and len(lim._waiters) == 1
        blocked[-1].cancel()                          # a cancelled waiter leaks nothing
        await asyncio.sleep(0)
        assert lim.inflight == 4 and not lim._waiters

    run(main())


def test_cancellation_closes_the_http_request(srv):
    srv.add_fault("delay", seconds=30.0, match="hang")
    b = backend(srv, model="m")

    async def main():
        task = asyncio.ensure_future(b.generate(LLMRequest.build("hang")))
        await wait_for(lambda: srv.stats["inflight"] == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: srv.stats["disconnects"] == 1)
        assert b.limiter().inflight == 0
        await b.aclose()

    run(main())


def test_abandoned_stream_closes_the_http_request():
    with FakeOpenAIServer(chunk_delay=0.5) as srv:
        b = backend(srv, model="m")

        async def main():
            gen = b.stream(LLMRequest.build("many words to stream slowly"))
            first = await gen.__anext__()
            await gen.aclose()
            await wait_for(lambda: srv.stats["disconnects"] == 1)
            assert b.limiter().inflight == 0
            await b.aclose()
            return first

        assert run(main()).text == "echo:"


def test_one_backend_many_loops(srv):
    """An AsyncOpenAI is bound to its loop: a shared backend keeps one client per loop."""
    b = backend(srv, model="m")
    results: list[str] = []

    def worker(i: int) -> None:
        async def main():
            r = await b.generate(LLMRequest.build(f"t{i}"))
            results.append(r.text)
        asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worker(9)                                        # and again from this thread, a fresh loop
    assert sorted(results) == ["echo: t0", "echo: t1", "echo: t2", "echo: t3", "echo: t9"]
    b.close()
    b.close()


def test_usage_unknown_is_none_not_zero():
    """A server that ignores stream_options.include_usage (llama-cpp-python's) leaves token counts
    unknown: None on the response and on the run's call record, never 0."""
    from epic_kernel import run as epic_run

    with FakeOpenAIServer(usage=False) as srv:
        b = backend(srv, model="m")
        res = epic_run('a = llm("one two")\nb = llm("three", stream=True)\n[a, "".join(b)]', backend=b)
        assert res.value == ["echo: one two", "echo: three"]
        assert [(c.tokens_in, c.tokens_out) for c in res.calls] == [(None, None), (None, None)]
        b.close()
    with FakeOpenAIServer() as srv:                     # the same server reporting usage: counted
        b = backend(srv, model="m")
        res = epic_run('llm("one two")', backend=b)
        assert (res.calls[0].tokens_in, res.calls[0].tokens_out) == (5, 3)
        b.close()


def test_every_client_shares_one_tls_context() -> None:
    """Each event loop gets 16 shard clients; building a TLS context (the CA bundle) for each cost ~0.4 s
    of CPU per run(). One context per process now serves them all, in every loop."""
    from epic_kernel.llm import openai_backend as ob

    backend = ob.OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="k", max_concurrency=256)

    async def clients() -> list:
        return backend._state().clients

    first, second = asyncio.run(clients()), asyncio.run(clients())
    assert len(first) == len(second) == 16 and first[0] is not second[0]      # one set of clients per loop
    ctx = ob._ssl_context()
    assert ctx is not None and ob._ssl_context() is ctx
    pools = [c._client._transport._pool for c in first + second]
    assert all(p._ssl_context is ctx for p in pools)
