"""Per-token records (`logprobs=`): the batcher's values against a plain transformers forward pass in
the same dtype, no extra tensor work when no row asks, constrained rows' masks, streamed chunks,
and the OpenAI shapes (both of them) in and out."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from epic_kernel.llm.base import LLMRequest, LLMResponse, SamplingParams  # noqa: E402
from epic_kernel.llm.batcher import Batcher  # noqa: E402
from epic_kernel.llm.logprobs import TokenLog, check_k, extend_from_openai  # noqa: E402

PROMPTS = ["The cat reads", "A user sends a long request with care today", "x", "Our team builds a list"]
T = 60.0


def raw(prompt: str, logprobs: int | None = None, **params) -> LLMRequest:
    return LLMRequest.build(prompt, raw=True, params=SamplingParams(**params), logprobs=logprobs)


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, T))


def load(path: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), AutoTokenizer.from_pretrained(path)


def forward_logprobs(model, prompt_ids: list[int], gen_ids: list[int]) -> torch.Tensor:
    """The oracle: one plain forward over prompt + answer; log-softmax (fp32) of the logits that
    predicted each generated token."""
    ids = torch.tensor([prompt_ids + gen_ids])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1)


def run_batch(b: Batcher, requests: list[LLMRequest]):
    async def main():
        tickets = [b.submit(r, ignore_eos=True) for r in requests]
        return tickets, await asyncio.gather(*(t.result() for t in tickets))
    return arun(main())


def _check_steps(log, ref: torch.Tensor, k: int, tol: float, tok, exact_ranks: bool) -> None:
    for i, step in enumerate(log.top):
        ref_top = ref[i].topk(k)
        vals = ref_top.values.tolist()
        assert max(abs(lp - v) for (_, lp), v in zip(step, vals, strict=True)) < tol
        texts = [b_text(tok, j) for j in ref_top.indices.tolist()]
        gaps = [x - y for x, y in zip(vals, vals[1:], strict=False)]
        for rank, (text, _) in enumerate(step):        # same ranks (bf16: where no near-tie decides)
            if exact_ranks or all(g > tol for g in gaps[max(0, rank - 1):rank + 1]):
                assert text == texts[rank], (i, rank, step, texts)


def test_batcher_logprobs_match_a_plain_forward_pass_fp32(tiny_trained_model_dir):
    """fp32: every asking row (greedy and sampled, batched together with rows that do not ask)
    against one plain forward over prompt + answer: within 1e-4, same ranks."""
    model, tok = load(tiny_trained_model_dir, torch.float32)
    b = Batcher(model, tok, name="tiny")
    try:
        reqs = [raw(p, logprobs=5 if i % 2 == 0 else None, max_tokens=10 + i) for i, p in enumerate(PROMPTS)]
        reqs.append(raw("The dog", logprobs=3, max_tokens=9, temperature=0.9, seed=7))   # sampled rows too
        tickets, resps = run_batch(b, reqs)
    finally:
        b.close()
    assert len({r.batch_id for r in resps}) == 1
    checked = 0
    for t, r, req in zip(tickets, resps, reqs, strict=True):
        if req.logprobs is None:
            assert r.tokens is None
            continue
        log = r.tokens
        assert len(log) == len(t.token_ids) == r.tokens_out and log.k == req.logprobs
        ref = forward_logprobs(model, t.prompt_ids, t.token_ids)
        chosen = ref.gather(1, torch.tensor(t.token_ids)[:, None]).squeeze(1)
        assert max(abs(a - b) for a, b in zip(log.logprobs, chosen.tolist(), strict=True)) < 1e-4
        _check_steps(log, ref, req.logprobs, 1e-4, tok, exact_ranks=True)
        assert all(0 <= ms for ms in log.compact()["ms"]) and log.times == sorted(log.times)
        checked += 1
    assert checked == 3


def test_batcher_logprobs_match_transformers_bf16(tiny_trained_model_dir):
    """bf16: against transformers' own cached decoding (`generate(output_logits=True)`) in bf16, within
    2e-2. (A single full forward differs from any cached decode by up to ~0.08 in bf16 on this model,
    from the logits' bf16 rounding alone, so it is no oracle at this tolerance.)"""
    model, tok = load(tiny_trained_model_dir, torch.bfloat16)
    b = Batcher(model, tok, name="tiny")
    try:
        reqs = [raw(p, logprobs=5, max_tokens=12) for p in PROMPTS]
        tickets, resps = run_batch(b, reqs)
    finally:
        b.close()
    for t, r in zip(tickets, resps, strict=True):
        ids = torch.tensor([t.prompt_ids])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=len(t.token_ids),
                                 min_new_tokens=len(t.token_ids), do_sample=False, pad_token_id=0, eos_token_id=None,
                                 output_logits=True, return_dict_in_generate=True)
        assert out.sequences[0, len(t.prompt_ids):].tolist() == t.token_ids
        ref = torch.log_softmax(torch.stack(out.logits)[:, 0].float(), dim=-1)
        chosen = ref.gather(1, torch.tensor(t.token_ids)[:, None]).squeeze(1)
        assert max(abs(a - b) for a, b in zip(r.tokens.logprobs, chosen.tolist(), strict=True)) < 2e-2
        _check_steps(r.tokens, ref, 5, 2e-2, tok, exact_ranks=False)


def b_text(tok, i: int) -> str:
    return tok.decode([i], skip_special_tokens=False)


class _Ops(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def _sample_ops(b: Batcher, requests: list[LLMRequest]) -> list[str]:
    """The tensor operations `_sample` runs over one whole batch."""
    ops = _Ops()
    inner = b._sample

    def traced(rows, logits):
        with ops:
            return inner(rows, logits)
    b._sample = traced
    try:
        run_batch(b, requests)
    finally:
        b._sample = inner
    return list(ops.names)


def test_no_extra_tensor_op_when_no_row_asks(tiny_model_dir):
    model, tok = load(tiny_model_dir, torch.float32)
    b = Batcher(model, tok, name="tiny")
    try:
        plain = _sample_ops(b, [raw(p, max_tokens=6) for p in PROMPTS])
        asked = _sample_ops(b, [raw(p, logprobs=2 if i == 0 else None, max_tokens=6) for i, p in enumerate(PROMPTS)])
    finally:
        b.close()
    steps = 6
    # greedy rows, no hook: exactly one float() and one argmax (+ its tolist) per step, as before logprobs
    assert sorted(set(plain)) == ["argmax", "float", "tolist"] and len(plain) == 3 * steps, plain
    assert {"logsumexp", "topk", "gather"} <= set(asked)           # the test can tell the difference


def test_constrained_rows_record_allowed_counts_and_masked_favourites(tiny_trained_model_dir):
    from epic_kernel.llm.transformers_backend import TransformersBackend

    be = TransformersBackend(tiny_trained_model_dir, shared=False)
    try:
        req = LLMRequest.build("The cat", params=SamplingParams(max_tokens=6, regex="[0-9]{1,4}"), logprobs=3)
        resp = arun(be.generate(req))
        free = arun(be.generate(LLMRequest.build("The cat", params=SamplingParams(max_tokens=6), logprobs=3)))
    finally:
        be.close()
    log = resp.tokens
    assert resp.text.isdigit() and log.text == resp.text
    vocab = len(be.batcher.tokenizer)
    assert log.allowed is not None and len(log.allowed) == len(log) == len(log.masked)
    assert all(0 < n < vocab for n in log.allowed)
    # the unconstrained answer's first token is not a digit: the constraint masked it at step 0
    first = free.tokens.tokens[0]
    assert not first.strip().isdigit() and first in log.masked[0]
    assert free.tokens.allowed is None and "allowed" not in free.tokens.compact()


def test_streamed_chunks_carry_their_tokens(tiny_model_dir):
    model, tok = load(tiny_model_dir, torch.float32)
    b = Batcher(model, tok, name="tiny")

    async def main():
        t = b.submit(raw("The cat reads", logprobs=2, max_tokens=12), stream=True, ignore_eos=True)
        return [c async for c in t.chunks()]
    try:
        chunks = arun(main())
    finally:
        b.close()
    final = chunks[-1].response.tokens
    streamed = [tk for c in chunks if c.tokens is not None for tk in c.tokens.tokens]
    assert len(chunks) > 2 and streamed == final.tokens[:len(streamed)] and len(streamed) >= len(final) - 1


def test_token_log_survives_json_and_the_openai_shapes():
    log = TokenLog(k=2, tokens=[" Hi", "!", "\\xe2\\x80"], logprobs=[-0.1, -1.5, -3.0], times=[1.0, 1.02, 1.05],
                   top=[[(" Hi", -0.1), (" Hello", -2.5)], [("!", -1.5), (".", -1.6)], [("\\xe2\\x80", -3.0), ("?", -3.1)]])
    resp = LLMResponse("Hi!", tokens=log)
    back = LLMResponse(**json.loads(json.dumps(asdict(resp))))
    assert back.tokens == log
    for shape in (log.to_openai_chat(), log.to_openai_completion()):
        got = TokenLog(k=2)
        extend_from_openai(got, json.loads(json.dumps(shape)), 5.0)
        assert got.tokens == log.tokens and got.logprobs == log.logprobs and got.top == log.top
    c = log.compact()
    assert c["ms"] == [0, 20, 50] and c["top"][0][0] == [" Hi", -0.1]


def test_logprobs_argument_is_checked():
    assert check_k(None) is None and check_k(True) == 0 and check_k(5) == 5
    for bad in (-1, 21, 2.5, "3"):
        with pytest.raises(ValueError, match="logprobs="):
            check_k(bad)


def test_cache_key_without_logprobs_is_unchanged():
    req = raw("hi", max_tokens=3)
    assert "logprobs" not in json.dumps(asdict(req)) or req.key("x") != raw("hi", logprobs=0, max_tokens=3).key("x")
    assert req.key("x") != raw("hi", logprobs=1, max_tokens=3).key("x")
    assert math.isfinite(len(req.key("x")))
