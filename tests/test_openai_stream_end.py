"""How an OpenAI stream ends decides whether it is an answer or a failure (issue 19).

`data: [DONE]` without any finish_reason is a whole answer with an unknown finish reason (None):
one request, no retry. A stream that ends before `[DONE]` was cut, whether the body ended cleanly or
the connection was reset, and is retried. The SDK cannot tell these apart, so the backend reads the
HTTP body itself (`epic_kernel.llm.openai_sse`); the fake server produces each ending on a real
127.0.0.1 socket.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("openai")

from epic_kernel.llm.base import LLMRequest  # noqa: E402
from epic_kernel.llm.errors import MalformedResponse  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402
from epic_kernel.llm.openai_sse import DoneWatch  # noqa: E402
from epic_kernel.runtime.calltable import call_row  # noqa: E402
from epic_kernel.testing.fake_openai import FakeOpenAIServer  # noqa: E402

PROMPT = "tell me about the tides"
ANSWER = "echo: tell me about the tides"


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.clear_faults()
    server.reset_stats()
    yield server
    server.clear_faults()


def backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    return OpenAIBackend(base_url=srv.base_url, api_key="k", model="fake-model", backoff_base=0.01,
                         timeout=5.0, **kw)


async def _generate(b: OpenAIBackend, **kw):
    try:
        return await b.generate(LLMRequest.build(PROMPT, **kw))
    finally:
        await b.aclose()


async def _stream(b: OpenAIBackend):
    try:
        return [c async for c in b.stream(LLMRequest.build(PROMPT))]
    finally:
        await b.aclose()


@pytest.mark.parametrize("raw", [False, True], ids=["chat", "raw"])
def test_done_without_finish_reason_is_a_complete_answer(srv, raw):
    srv.add_fault("no-finish", times=None)
    resp = asyncio.run(_generate(backend(srv), raw=raw))
    assert resp.text == ANSWER
    assert resp.finish_reason is None                 # unknown, not "stop"
    assert resp.tokens_out == len(ANSWER.split())     # the usage chunk still came
    assert srv.stats["requests"] == 1                 # complete at once: no retry


def test_done_without_finish_reason_streamed(srv):
    srv.add_fault("no-finish", times=None)
    chunks = asyncio.run(_stream(backend(srv)))
    assert "".join(c.text for c in chunks) == ANSWER
    assert chunks[-1].response is not None and chunks[-1].response.finish_reason is None
    assert srv.stats["requests"] == 1


@pytest.mark.parametrize("kind", ["end", "reset", "cut"])
def test_a_stream_ended_before_done_is_retried(srv, kind):
    """A clean close without [DONE] ("end"), a TCP reset and a half-close mid-body ("cut", before any
    chunk reached the caller of generate) all cost one more request, and the answer is whole."""
    srv.add_fault(kind, after=2)
    resp = asyncio.run(_generate(backend(srv)))
    assert resp.text == ANSWER
    assert resp.finish_reason == "stop"
    assert srv.stats["requests"] == 2


@pytest.mark.parametrize("kind", ["end", "reset"])
def test_a_stream_that_never_reaches_done_fails_after_the_retries(srv, kind):
    srv.add_fault(kind, after=2, times=None)
    with pytest.raises(MalformedResponse if kind == "end" else Exception) as info:
        asyncio.run(_generate(backend(srv, max_retries=2)))
    assert srv.stats["requests"] == 3
    assert getattr(info.value, "attempts", None) == 3
    if kind == "end":
        assert "before [DONE]" in str(info.value)


def test_a_clean_close_before_done_is_retried_when_streaming(srv):
    """stream(): the cut comes before the first delta here (after=0), so nothing reached the consumer
    and the retry is invisible."""
    srv.add_fault("end", after=0)
    chunks = asyncio.run(_stream(backend(srv)))
    assert "".join(c.text for c in chunks) == ANSWER
    assert srv.stats["requests"] == 2


def test_unknown_finish_and_usage_show_as_question_marks(srv):
    """A server that sends neither usage nor a finish_reason: the call table shows "?" for the tokens
    (unknown, not 0), and the response's finish_reason is None."""
    from epic_kernel import run

    quiet = FakeOpenAIServer(usage=False).start()
    try:
        quiet.add_fault("no-finish", times=None)
        res = run(f'llm("{PROMPT}")', backend=backend(quiet))
    finally:
        quiet.stop()
    assert res.value == ANSWER
    row = call_row(res.calls[0], res.calls[0].start, res.calls[0].end)
    assert (row["tokens_in"], row["tokens_out"]) == ("?", "?")


def test_done_watch_sees_a_done_line_split_across_reads():
    async def body(parts):
        for p in parts:
            yield p

    async def read(parts):
        w = DoneWatch(body(parts))
        seen = [w.done]
        async for _ in w:
            seen.append(w.done)
        return seen

    parts = [b'data: {"choices": []}\n\nda', b"ta: [DO", b"NE]\n\n"]
    assert asyncio.run(read(parts)) == [False, False, False, True]
    assert asyncio.run(read([b'data: {"x": "data: [DONE] inside a string"}\n\n']))[-1] is False
    assert asyncio.run(read([b"data:[DONE]\n\n"]))[-1] is True
