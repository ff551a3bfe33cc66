"""regex= and choices= on the local transformers backend (tiny offline Llama, built once per session).

The oracle is Python's `re.fullmatch` / membership in `choices`: whatever the model, the sampling
parameters or the batch companions, a constrained answer must satisfy its constraint, or the call
must fail with `ConstraintIncomplete`. The tiny model is random, so it exercises the mask on
arbitrary token choices rather than on sensible answers.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llguidance")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from epic_kernel import EpicError, run  # noqa: E402
from epic_kernel.llm import SimBackend  # noqa: E402
from epic_kernel.llm.base import LLMRequest, SamplingParams, UnsupportedFeature  # noqa: E402
from epic_kernel.llm.constrained import ConstraintIncomplete, InvalidConstraint, constrainer_for  # noqa: E402
from epic_kernel.llm.transformers_backend import TransformersBackend  # noqa: E402

T = 60.0
SAMPLING = [dict(), dict(temperature=0.8, seed=1), dict(temperature=1.5, top_p=0.9, seed=7)]
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    """One private backend for the module. One torch thread: the tiny model gains nothing from two,
    and on a busy 2-core machine two spinning OpenMP threads made these tests 50-80x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    b = TransformersBackend(tiny_model_dir, device="cpu", shared=False)
    yield b
    b.close()
    torch.set_num_threads(threads)


def req(prompt: str = "The cat reads", *, prefill: str | None = None, raw: bool = False, **params) -> LLMRequest:
    return LLMRequest.build(prompt, raw=raw, prefill=prefill, params=SamplingParams(**params))


def arun(coro):
    return asyncio.run(asyncio.wait_for(coro, T))


def generate_all(backend, requests, *, errors: bool = False):
    """Generate concurrently (one batch); with errors=True, ConstraintIncomplete is returned, not raised."""
    async def main():
        return await asyncio.gather(*(backend.generate(r) for r in requests), return_exceptions=errors)
    out = arun(main())
    other = [r for r in out if isinstance(r, BaseException) and not isinstance(r, ConstraintIncomplete)]
    if other:
        raise other[0]
    return out


# ---------------------------------------------------------------------------- property tests

_literal = st.text(alphabet="abcyesno XYZ.-é日", min_size=1, max_size=6)
_CLASSES = {"[a-z]": 1, "[0-9]": 1, "[A-Za-z ]": 1, "\\d": 1, "\\w": 1, "[^a-z\\n]": 4, ".": 4}   # bytes/char
# bounded parts as (regex, most UTF-8 bytes a match can take): a byte-level BPE token holds >= 1 byte,
# so that many tokens (+1 for EOS) always suffice
_bounded = st.one_of(
    st.lists(_literal, min_size=1, max_size=4).map(
        lambda xs: ("(" + "|".join(map(re.escape, xs)) + ")", max(len(x.encode()) for x in xs))),
    st.tuples(st.sampled_from(sorted(_CLASSES)), st.integers(0, 3), st.integers(0, 4)).map(
        lambda t: (f"{t[0]}{{{t[1]},{t[1] + t[2]}}}", _CLASSES[t[0]] * (t[1] + t[2]))),
    st.sampled_from([("(yes|no)", 3), ("-?[0-9]{1,3}(\\.[0-9]{1,2})?", 7), ("[a-z]{1,4} [a-z]{1,4}", 9)]),
)
# unbounded tails from whose every state one more token can reach a full match (the last-token rule)
_tail = st.sampled_from(["", "[0-9]+", "[a-z ]*", "(ab)*c?"])


@HYP
@given(parts=st.lists(_bounded, min_size=1, max_size=3), tail=_tail,
       prompt=st.sampled_from(["The cat reads", "Beautiful is", "x"]), raw=st.booleans())
def test_regex_answers_fully_match(backend, parts, tail, prompt, raw):
    """Greedy and sampled answers to the same prompt all fully match, given max_tokens enough for the
    bounded part; an unbounded tail is closed by the last-token rule when the model never stops."""
    rx = "".join(p for p, _ in parts) + tail
    n = sum(b for _, b in parts) + 1 + (4 if tail else 0)
    rs = generate_all(backend, [req(prompt, raw=raw, regex=rx, max_tokens=n, **s) for s in SAMPLING])
    for r in rs:
        assert re.fullmatch(rx, r.text), (rx, r.text)


@HYP
@given(parts=st.lists(st.one_of(_bounded.map(lambda p: p[0]), _tail.filter(bool), st.just("[a-z]+ [a-z]+")),
                      min_size=1, max_size=3),
       max_tokens=st.integers(1, 12))
def test_regex_answer_matches_or_the_call_fails(backend, parts, max_tokens):
    """Whatever the budget: a full match, or ConstraintIncomplete; never a non-matching answer."""
    rx = "".join(parts)
    rs = generate_all(backend, [req(regex=rx, max_tokens=max_tokens, **s) for s in SAMPLING], errors=True)
    for r in rs:
        assert isinstance(r, ConstraintIncomplete) or re.fullmatch(rx, r.text), (rx, r)


_choice = st.one_of(st.text(alphabet="ab é日\n\"\\.*|(", min_size=1, max_size=8),
                    st.text(st.characters(codec="utf-8"), min_size=1, max_size=4))


@HYP
@given(choices=st.lists(_choice, min_size=1, max_size=5), cut=st.integers(1, 7))
def test_choices_answer_is_one_choice(backend, choices, cut):
    """Exactly one of the strings, also when one choice is a prefix of another ("a" and "ab")."""
    choices = [*choices, choices[0][:cut]]
    rs = generate_all(backend, [req(choices=tuple(choices), max_tokens=64, **s) for s in SAMPLING])
    for r in rs:
        assert r.text in choices and r.finish_reason == "stop", (choices, r.text)


# ---------------------------------------------------------------------------- semantics


def test_prefix_choices_and_the_empty_choice(backend):
    rs = generate_all(backend, [req(choices=c, max_tokens=16, **s) for c in [("a", "ab", "abc"), ("", "x y")]
                                for s in SAMPLING])
    assert all(r.text in ("a", "ab", "abc") for r in rs[:3]) and all(r.text in ("", "x y") for r in rs[3:])


def test_prefill_is_not_part_of_the_constrained_text(backend):
    """As in the sim: the constraint applies to the continuation after the prefill."""
    rs = generate_all(backend, [req(prefill="Answer: ", choices=("yes", "no")),
                                req("Count:", raw=True, prefill=" 1, 2,", regex=" [0-9]{1,2}", max_tokens=8)])
    assert rs[0].text in ("yes", "no") and re.fullmatch(" [0-9]{1,2}", rs[1].text)


def test_regex_and_choices_together_pick_a_matching_choice(backend):
    r, = generate_all(backend, [req(choices=("yes", "no", "maybe"), regex="m.*")])
    assert r.text == "maybe"


def test_stop_strings_do_not_cut_a_constrained_answer(backend):
    r, = generate_all(backend, [req(choices=("a b c",), stop=[" "], max_tokens=16)])
    assert r.text == "a b c"


def test_last_token_must_complete_the_match(backend):
    """With the budget nearly spent, the final token is one that leaves a full match."""
    rs = generate_all(backend, [req(regex="[0-9]+", max_tokens=n, **s) for n in (1, 2, 5) for s in SAMPLING])
    assert all(re.fullmatch("[0-9]+", r.text) and r.tokens_out <= n for r, n in
               zip(rs, [n for n in (1, 2, 5) for _ in SAMPLING], strict=True))


def test_too_small_max_tokens_is_an_error_not_a_partial_answer(backend):
    with pytest.raises(ConstraintIncomplete, match=r"max_tokens=3.*raise max_tokens"):
        generate_all(backend, [req(regex=r"[A-Z][a-z ]{10,40}\.", max_tokens=3)])
    with pytest.raises(ConstraintIncomplete):
        generate_all(backend, [req(regex="x{5}", max_tokens=0)])

    async def streamed():
        return [c.text async for c in backend.stream(req(regex=r"[A-Z][a-z ]{10,40}\.", max_tokens=3))]

    with pytest.raises(ConstraintIncomplete):        # a stream fails at its end instead of finishing
        arun(streamed())


def test_seeded_constrained_samples_ignore_batch_companions(backend):
    sample = req(regex="[a-z ]{4,12}", temperature=1.0, seed=11, max_tokens=16)
    alone, = generate_all(backend, [sample])
    crowd = generate_all(backend, [req(p, regex="[0-9]{2}") for p in ("x", "The cat", "Beautiful")] + [sample])
    assert crowd[-1].text == alone.text and re.fullmatch("[a-z ]{4,12}", alone.text)


@pytest.mark.parametrize("params, match", [
    (dict(regex="(ab"), "unclosed group"),
    (dict(regex="a(?=b)"), "look-around"),
    (dict(regex=r"(a)\1"), "backreferences"),
    (dict(choices=()), "empty"),
    (dict(choices=("yes", "no"), regex="[0-9]"), "no choice"),
])
def test_invalid_constraints_fail_before_dispatch(backend, params, match):
    with pytest.raises(InvalidConstraint, match=match) as e:
        backend.check(req(**params))
    assert isinstance(e.value, UnsupportedFeature) and isinstance(e.value, ValueError)
    queued = backend.stats()["requests"]
    with pytest.raises(InvalidConstraint):
        generate_all(backend, [req(**params)])
    assert backend.stats()["requests"] == queued              # refused before it reached the batcher


def test_mixed_batch_constrains_only_its_own_rows(backend):
    """Constrained and plain rows share one decode batch; plain rows decode as if alone."""
    alone, = generate_all(backend, [req("Beautiful is", max_tokens=12)])
    before = backend.stats()["batches"]
    rs = generate_all(backend, [req("Beautiful is", max_tokens=12),
                                req(regex="[a-z]{3,8}", max_tokens=16),
                                req(choices=("left", "right"), temperature=1.0, seed=3),
                                req("x", max_tokens=12, temperature=1.0, seed=5)])
    assert rs[0].text == alone.text
    assert re.fullmatch("[a-z]{3,8}", rs[1].text) and rs[2].text in ("left", "right")
    assert len({r.batch_id for r in rs}) == 1 and backend.stats()["batches"] == before + 1


def test_streaming_a_constrained_answer(backend):
    async def main():
        return [c async for c in backend.stream(req(regex="[a-z ]{20,40}", max_tokens=48, temperature=1.0,
                                                    seed=2))]

    chunks = arun(main())
    final = chunks[-1].response
    assert final is not None and "".join(c.text for c in chunks) == final.text
    assert re.fullmatch("[a-z ]{20,40}", final.text)


def test_cancelling_a_constrained_stream_frees_its_row(backend):
    async def main():
        async def consume():
            async for _ in backend.stream(req(regex="[a-z ]*", max_tokens=2000)):
                started.set()

        started = asyncio.Event()
        task = asyncio.ensure_future(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await backend.generate(req(choices=("ok",)))    # the batcher is still serving

    cancelled = backend.stats()["cancelled"]
    assert arun(main()).text == "ok"
    deadline = time.monotonic() + 5              # the worker evicts the row at its next step boundary
    while ((st := backend.stats())["cancelled"] == cancelled or st["running"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert st["cancelled"] == cancelled + 1 and st["running"] == 0


def test_unconstrained_requests_get_no_hook(backend):
    assert backend.logits_hook(req(max_tokens=4)) is None           # the batcher keeps its argmax fast path
    assert backend.logits_hook(req(regex="a")) is not None


# ---------------------------------------------------------------------------- through llm() in a program

PROGRAM = '''
words = ["cat", "oak", "iron", "dog", "fern", "gold", "owl", "moss"]
kinds = [llm(f"Is a {w} an animal, a plant or a mineral?", choices=["animal", "plant", "mineral"]) for w in words]
year = llm("A year?", regex="[12][0-9]{3}", max_tokens=8)
yes = llm("Is the sky blue?", choices=["yes", "no"], temperature=1.0, seed=4, stream=True)
'''


def test_an_epic_program_with_constraints(backend):
    compiler = constrainer_for(backend.batcher)
    before = compiler.compiles
    res = run(PROGRAM, backend=backend, cache=False)
    ns = res.namespace
    assert all(k in ("animal", "plant", "mineral") for k in ns["kinds"]) and len(ns["kinds"]) == 8
    assert re.fullmatch("[12][0-9]{3}", ns["year"]) and "".join(ns["yes"]) in ("yes", "no")
    assert compiler.compiles - before <= 3                   # one compile per distinct constraint
    assert len({c.batch_id for c in res.calls if c.fn == "llm"}) <= 2
    sim = run(PROGRAM, backend=SimBackend(), cache=False).namespace   # the sim honours the same contract
    assert all(k in ("animal", "plant", "mineral") for k in sim["kinds"]) and re.fullmatch("[12][0-9]{3}", sim["year"])


def test_an_invalid_regex_is_reported_at_its_call_site(backend):
    with pytest.raises(EpicError) as e:
        run('x = llm("hi", regex="[0-9")\n', backend=backend, cache=False)
    failure, = e.value.failures
    assert failure.site_line == 1 and "regex='[0-9'" in str(failure.error)
