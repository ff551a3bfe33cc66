"""`epic serve` answers logprobs in OpenAI's shapes (chat and completions, whole and streamed), read
by the official `openai` client; `OpenAIBackend` asks for them and reads them back onto the call."""

from __future__ import annotations

import asyncio
import math

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from epic_kernel.llm.base import LLMRequest, SamplingParams  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402
from epic_kernel.llm.server import ServerThread  # noqa: E402
from epic_kernel.llm.transformers_backend import TransformersBackend  # noqa: E402


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    be = TransformersBackend(tiny_model_dir, device="cpu", shared=False)
    with ServerThread(be, model_name="tiny") as srv:
        yield be, srv, openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
    be.close()


def local(be, prompt: str, raw: bool, k: int):
    req = LLMRequest.build(prompt, raw=raw, params=SamplingParams(max_tokens=8, temperature=0.0), logprobs=k)
    return asyncio.run(be.generate(req)).tokens


def test_chat_logprobs_whole_and_streamed(served):
    be, _srv, client = served
    want = local(be, "The cat", raw=False, k=3)
    msgs = [{"role": "user", "content": "The cat"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(e.token for e in content) == r.choices[0].message.content == want.text
    assert [round(e.logprob, 4) for e in content] == [round(x, 4) for x in want.logprobs]
    assert [[a.token for a in e.top_logprobs] for e in content] == [[a for a, _ in s] for s in want.top]
    assert all(e.bytes == list(e.token.encode()) for e in content)
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0,
                                                 logprobs=True, top_logprobs=3, stream=True))
    streamed = [e for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert [e.token for e in streamed] == want.tokens
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == want.text
    plain = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    assert plain.choices[0].logprobs is None


def test_completions_logprobs_whole_and_streamed(served):
    be, _srv, client = served
    want = local(be, "The cat reads", raw=True, k=2)
    r = client.completions.create(model="tiny", prompt="The cat reads", max_tokens=8, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp.tokens == want.tokens and "".join(lp.tokens) == r.choices[0].text
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(lp.token_logprobs, want.logprobs, strict=True))
    assert [sorted(d, key=d.get, reverse=True) for d in lp.top_logprobs] == [[a for a, _ in s] for s in want.top]
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])
    chunks = list(client.completions.create(model="tiny", prompt="The cat reads", max_tokens=8, temperature=0,
                                            logprobs=2, stream=True))
    toks = [t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.tokens]
    offsets = [o for c in chunks for ch in c.choices if ch.logprobs for o in ch.logprobs.text_offset]
    assert toks == want.tokens and offsets == lp.text_offset


def test_bad_logprobs_fields_are_400(served):
    _be, _srv, client = served
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="tiny", messages=msgs, max_tokens=2, top_logprobs=3)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.completions.create(model="tiny", prompt="hi", max_tokens=2, logprobs=99)


@pytest.mark.parametrize("stream_generate", [True, False])
@pytest.mark.parametrize("raw", [False, True])
def test_openai_backend_reads_logprobs_from_epic_serve(served, stream_generate, raw):
    be, srv, _client = served
    want = local(be, "The cat", raw=raw, k=2)
    remote = OpenAIBackend(base_url=srv.base_url, model="tiny", stream_generate=stream_generate)

    async def main():
        try:
            req = LLMRequest.build("The cat", raw=raw, params=SamplingParams(max_tokens=8), logprobs=2)
            return await remote.generate(req)
        finally:
            await remote.aclose()
    resp = asyncio.run(main())
    got = resp.tokens
    assert got.tokens == want.tokens and got.text == resp.text
    assert all(math.isclose(a, b, abs_tol=1e-3) for a, b in zip(got.logprobs, want.logprobs, strict=True))
    assert [[a for a, _ in s] for s in got.top] == [[a for a, _ in s] for s in want.top]
    assert got.times == sorted(got.times) and got.rows is None
