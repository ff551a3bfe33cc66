"""logprobs= against real engines on 127.0.0.1 (llama-server and vLLM's CPU build, as in
tests/test_engines.py): the OpenAI backend asks for them in each endpoint's spelling and reads the
server's own shape, whole and streamed, onto the call's record; on vLLM (fp32 SmolLM2, the same
weights as the local batcher) the values match the batcher's."""

from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("openai")

from epic_kernel import run  # noqa: E402
from epic_kernel.llm.base import LLMRequest, SamplingParams  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module", params=["llama.cpp", "vllm"])
def engine(request, engine_factory):
    srv = engine_factory(request.param)
    srv.kind = request.param
    return srv


def backend(srv, **kw) -> OpenAIBackend:
    return OpenAIBackend(base_url=srv.base_url, api_key="none", model="smollm2", timeout=120.0, **kw)


def _check(log, text: str, k: int) -> None:
    assert log is not None and len(log) > 0
    assert log.text == text                                   # the tokens are the answer
    assert all(lp <= 1e-6 for lp in log.logprobs)
    for step, lp, tok in zip(log.top, log.logprobs, log.tokens, strict=True):
        assert 1 <= len(step) <= k and [b for _, b in step] == sorted((b for _, b in step), reverse=True)
        # greedy: the chosen token is the best alternative, with its own logprob
        assert math.isclose(step[0][1], lp, abs_tol=1e-3) and step[0][0] == tok


@pytest.mark.parametrize("raw", [False, True], ids=["chat", "completions"])
@pytest.mark.parametrize("stream_generate", [True, False], ids=["streamed", "whole"])
def test_backend_reads_the_engines_logprobs(engine, raw, stream_generate):
    b = backend(engine, stream_generate=stream_generate)
    req = LLMRequest.build("Name three colours.", raw=raw, params=SamplingParams(max_tokens=12), logprobs=3)

    async def main():
        try:
            return await b.generate(req)
        finally:
            await b.aclose()
    resp = asyncio.run(main())
    _check(resp.tokens, resp.text, 3)


def test_call_record_carries_the_tokens(engine):
    b = backend(engine)
    try:
        res = run('a = llm("Say hello.", max_tokens=8, logprobs=2)\na', backend=b)
    finally:
        b.close()
    log = res.calls[0].tokens
    _check(log, res.value, 2)
    assert all(res.calls[0].start <= t <= res.calls[0].end for t in log.times)


def test_vllm_logprobs_match_the_local_batcher(engine):
    if engine.kind != "vllm":
        pytest.skip("llama.cpp serves a Q4 model: its numbers differ from the fp32 batcher's")
    from epic_kernel.llm.transformers_backend import TransformersBackend

    req = LLMRequest.build("Name three colours.", params=SamplingParams(max_tokens=12), logprobs=3)
    local = TransformersBackend("smollm2", device="cpu", shared=False)
    b = backend(engine)

    async def main():
        return await local.generate(req), await b.generate(req)
    try:
        mine, theirs = asyncio.run(main())
    finally:
        local.close()
        b.close()
    assert mine.tokens.tokens == theirs.tokens.tokens
    assert max(abs(x - y) for x, y in zip(mine.tokens.logprobs, theirs.tokens.logprobs, strict=True)) < 1e-2
    assert [[a for a, _ in s][:2] for s in mine.tokens.top] == [[a for a, _ in s][:2] for s in theirs.tokens.top]
