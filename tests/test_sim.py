"""The simulated model: deterministic answers, honoured constraints, and a batcher that batches.

No test reads a clock: timing is checked through the sim's own model quantities (`stats.service_s`,
batch sizes and ids), and every latency is tiny so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epic_kernel.llm.base import LLMRequest, SamplingParams, UnsupportedFeature
from epic_kernel.llm.sim import SimBackend, SimScriptError

FAST = dict(prefill_s=0.001, per_token_s=0.0002)


def req(prompt: str = "hello", **params) -> LLMRequest:
    return LLMRequest.build(prompt, params=SamplingParams(**params))


def arun(coro):
    return asyncio.run(coro)


# -- answers -------------------------------------------------------------------------------


def test_same_request_same_answer_across_instances():
    r = req("why is the sky blue?")
    a, b = SimBackend().answer(r), SimBackend().answer(r)
    assert a == b
    assert 8 <= len(a.text.split()) <= 40 and a.finish_reason == "stop"
    assert a.tokens_out == len(a.text.split())


def test_prompt_model_and_backend_seed_change_the_answer():
    base = SimBackend().answer(req("q")).text
    assert SimBackend().answer(req("q2")).text != base
    assert SimBackend().answer(LLMRequest.build("q", model="other")).text != base
    assert SimBackend(seed=1).answer(req("q")).text != base


def test_sampled_requests_differ_by_sample_index_and_seed():
    sim = SimBackend()
    r = req("tell me a story", temperature=0.8)
    texts = {sim.answer(LLMRequest.build("tell me a story", params=r.params, sample_index=i)).text
             for i in range(6)}
    assert len(texts) == 6
    assert sim.answer(r.with_params(seed=1)).text != sim.answer(r.with_params(seed=2)).text
    assert sim.answer(r.with_params(seed=1)).text == sim.answer(r.with_params(seed=1)).text


def test_greedy_ignores_sample_index_like_a_real_decoder():
    sim = SimBackend()
    r0 = LLMRequest.build("q", sample_index=0)
    r1 = LLMRequest.build("q", sample_index=1)
    assert sim.answer(r0).text == sim.answer(r1).text


def test_max_tokens_cuts_a_prefix_and_reports_length():
    sim = SimBackend()
    full = sim.answer(req("q")).text
    short = sim.answer(req("q", max_tokens=3))
    assert short.finish_reason == "length" and short.tokens_out == 3
    assert full.startswith(short.text) and len(short.text.split()) == 3
    assert sim.answer(req("q", max_tokens=0)).text == ""


def test_tokens_per_word():
    sim = SimBackend(tokens_per_word=2)
    r = sim.answer(req("q", max_tokens=7))
    assert len(r.text.split()) == 3 and r.tokens_out == 6 and r.finish_reason == "length"


def test_stop_strings_cut_and_are_not_included():
    sim = SimBackend(answers=[("count", "one two three four five")])
    r = sim.answer(req("count", stop=("four", "three")))
    assert (r.text, r.finish_reason, r.tokens_out) == ("one two ", "stop", 2)
    # a stop beyond the max_tokens budget is never reached
    r = sim.answer(req("count", stop=("five",), max_tokens=2))
    assert (r.text, r.finish_reason) == ("one two", "length")
    # a stop inside the budget wins over the budget
    r = sim.answer(req("count", stop=("two",), max_tokens=3))
    assert (r.text, r.finish_reason) == ("one ", "stop")


def test_tokens_in_counts_every_message_and_the_prefill():
    sim = SimBackend()
    r = LLMRequest.build("a b c", system="be brief", prefill="1.")
    assert sim.answer(r).tokens_in == 6
    assert sim.answer(LLMRequest.build("x y", raw=True)).tokens_in == 2


# -- scripted answers ------------------------------------------------------------------------


def test_scripted_groups_first_match_wins_and_add_answer():
    sim = SimBackend(answers=[(r"capital of (\w+)", r"The capital of \1 is unknown."),
                              (r"capital", "never used")])
    sim.add_answer(r"(\d+) \+ (\d+)", lambda request, m: str(int(m[1]) + int(m[2])))
    assert sim.answer(req("What is the capital of Peru?")).text == "The capital of Peru is unknown."
    assert sim.answer(req("compute 2 + 40 please")).text == "42"
    assert sim.answer(req("unrelated")).text != "42"


def test_scripts_see_the_request_and_match_the_last_user_message():
    seen = []

    def reply(request: LLMRequest, m: re.Match[str]) -> str:
        seen.append((request.params.max_tokens, m.group(0)))
        return "ok"

    sim = SimBackend(answers=[("^second$", reply), ("first", "wrong turn")])
    chat = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "..."},
            {"role": "user", "content": "second"}]
    assert sim.answer(LLMRequest.build(chat, params=SamplingParams(max_tokens=9))).text == "ok"
    assert seen == [(9, "second")]
    assert sim.answer(LLMRequest.build("line one\nfirst", raw=True)).text == "wrong turn"


def test_scripted_dotall_and_callable_type_check():
    sim = SimBackend(answers=[("a.b", "crossed"), ("bad", lambda r, m: 3)])
    assert sim.answer(req("a\nb")).text == "crossed"
    with pytest.raises(TypeError, match="not str"):
        sim.answer(req("bad"))
    with pytest.raises(TypeError):
        sim.add_answer("x", 3)  # type: ignore[arg-type]


def test_prefill_response_is_the_continuation_only():
    sim = SimBackend(answers=[("points", "1. Alpha\n2. Beta"), ("other", "Gamma")])
    assert sim.answer(LLMRequest.build("list points", prefill="1.")).text == " Alpha\n2. Beta"
    assert sim.answer(LLMRequest.build("other", prefill="1.")).text == "Gamma"
    free = sim.answer(LLMRequest.build("free", prefill="The answer")).text
    assert free.startswith(" ") and free[1].islower()          # it continues the sentence
    plain = sim.answer(LLMRequest.build("free", prefill="1.")).text
    assert "\n2. " not in plain                                  # the sim knows no program's conventions


def test_scripts_write_free_text_from_the_seeded_rng():
    from epic_kernel.programs.sot import SKELETON_PROMPT, sim_script

    sim = SimBackend(scripts=[sim_script], answers=[("points", "1. Alpha\n2. Beta")])
    skeleton = sim.answer(LLMRequest.build("free", prefill="1.")).text
    assert skeleton.startswith(" ") and "\n2. " in skeleton      # after "1." SoT's model writes a list
    assert skeleton == sim.answer(LLMRequest.build("free", prefill="1.")).text     # deterministic
    full = sim.answer(LLMRequest.build(SKELETON_PROMPT.format(question="Why?"))).text
    assert full.startswith("1. ") and "\n2. " in full
    assert sim.answer(LLMRequest.build("list points", prefill="1.")).text == " Alpha\n2. Beta"  # rules first
    assert "\n2. " not in sim.answer(LLMRequest.build("free", prefill="The answer")).text      # not SoT's: passed
    with pytest.raises(TypeError, match="callable"):
        sim.add_script("1. a")  # type: ignore[arg-type]


# -- choices and regex ----------------------------------------------------------------------

REGEXES = [
    r"[A-Z]{3}-\d{2,4}", r"(yes|no|maybe)", r"-?\d+(\.\d{1,2})?", r"[a-z]+@[a-z]+\.(com|org)",
    r"(ab)+c?\1", r"[^aeiou\s]{2,5}", r"\w+ \w+", r"\$?\d{1,3}(,\d{3})*", r"(?i)hello world",
    r"[\w.]+", r"x*y*?z?", r"", r".{3}", r'\{"name": "[a-z]{1,8}", "age": \d{1,2}\}', r"[^\W\d]+",
    r"(?:true|false)", r"\S{4}\s\D", r"(a)?(?(1)b|c)", r"(?=\d)\d{2}", r"[0-9a-f]{8}",
]


@settings(max_examples=150, deadline=None)
@given(pattern=st.sampled_from(REGEXES), prompt=st.text(max_size=30),
       index=st.integers(0, 5), temperature=st.sampled_from([0.0, 0.7]))
def test_regex_answers_fullmatch(pattern, prompt, index, temperature):
    r = LLMRequest.build(prompt, params=SamplingParams(regex=pattern, temperature=temperature),
                         sample_index=index)
    assert re.fullmatch(pattern, SimBackend().answer(r).text)


@settings(max_examples=100, deadline=None)
@given(choices=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True),
       prompt=st.text(max_size=20), index=st.integers(0, 5))
def test_choices_answer_is_one_of_the_choices(choices, prompt, index):
    r = LLMRequest.build(prompt, params=SamplingParams(choices=tuple(choices), temperature=1.0),
                         sample_index=index)
    assert SimBackend().answer(r).text in choices


def test_choices_are_hash_picked_and_spread():
    sim = SimBackend()
    picks = {sim.answer(req(f"q{i}", choices=("A", "B", "C"))).text for i in range(30)}
    assert picks == {"A", "B", "C"}


def test_scripted_answers_must_honour_constraints():
    sim = SimBackend(answers=[("sentiment", "positive, clearly"), ("code", "AB-12")])
    assert sim.answer(req("sentiment?", choices=("negative", "positive"))).text == "positive"
    assert sim.answer(req("code?", regex=r"[A-Z]{2}-\d+")).text == "AB-12"
    with pytest.raises(SimScriptError, match="choices"):
        sim.answer(req("sentiment?", choices=("yes", "no")))
    with pytest.raises(SimScriptError, match="regex"):
        sim.answer(req("code?", regex=r"\d+"))
    assert issubclass(SimScriptError, UnsupportedFeature)


def test_choices_and_regex_together_and_impossible_regex():
    sim = SimBackend()
    assert sim.answer(req("q", choices=("cat", "dog", "42"), regex=r"\d+")).text == "42"
    with pytest.raises(SimScriptError):
        sim.answer(req("q", choices=("cat",), regex=r"\d+"))
    with pytest.raises(SimScriptError, match="could not generate"):
        sim.answer(req("q", regex=r"a\bb"))


# -- the batcher ------------------------------------------------------------------------------


def test_concurrent_requests_with_quiescence_form_one_batch():
    sim = SimBackend(flush_ms=60_000, **FAST)   # only quiescence can flush in time

    async def main():
        tasks = [asyncio.create_task(sim.generate(req(f"q{i}", max_tokens=4 + i))) for i in range(8)]
        # signalled before any task has run (the evaluator's order): they must still join the batch,
        # and the 60 s timer must not be what flushes it
        sim.on_all_quiescent()
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)

    out = arun(main())
    assert sim.stats.batch_sizes == [8] and sim.stats.batches == 1 and sim.stats.requests == 8
    assert {r.batch_id for r in out} == {1}
    assert [r.tokens_out for r in out] == [4 + i for i in range(8)]
    assert [r.text for r in out] == [sim.answer(req(f"q{i}", max_tokens=4 + i)).text for i in range(8)]


def test_feeders_and_foreign_threads_trigger_the_flush():
    sim = SimBackend(flush_ms=60_000, **FAST)

    async def main():
        feeder = sim.feeders.join()
        tasks = [asyncio.create_task(sim.generate(req(f"q{i}"))) for i in range(4)]
        await asyncio.sleep(0)
        feeder.quiescent()                    # the last busy run goes quiet: flush
        first = await asyncio.gather(*tasks)
        tasks = [asyncio.create_task(sim.generate(req(f"r{i}"))) for i in range(3)]
        await asyncio.sleep(0)
        t = threading.Thread(target=sim.on_all_quiescent)
        t.start()
        t.join()
        return first, await asyncio.gather(*tasks)

    first, second = arun(main())
    assert sim.stats.batch_sizes == [4, 3]
    assert {r.batch_id for r in first} == {1} and {r.batch_id for r in second} == {2}


def test_flush_timer_and_max_batch_size():
    sim = SimBackend(flush_ms=1, max_batch_size=3, **FAST)

    async def main():
        one = await sim.generate(req("alone"))          # nobody signals quiescence: the timer flushes
        many = await asyncio.gather(*(sim.generate(req(f"q{i}")) for i in range(8)))
        return one, many

    one, many = arun(main())
    assert one.batch_id == 1
    # 3 fill a batch at once; the other 5 wait for it to end, then go 3 + 2
    assert sim.stats.batch_sizes == [1, 3, 3, 2]
    assert [r.batch_id for r in many] == [2, 2, 2, 3, 3, 3, 4, 4]


def test_requests_arriving_during_a_batch_wait_for_the_next():
    sim = SimBackend(flush_ms=60_000, **FAST)

    async def main():
        a = asyncio.create_task(sim.generate(req("a", max_tokens=20)))
        sim.on_all_quiescent()
        while sim.stats.batches == 0:
            await asyncio.sleep(0)
        b = await sim.generate(req("b"))               # starts right after batch 1 ends
        return await a, b

    a, b = arun(main())
    assert (a.batch_id, b.batch_id) == (1, 2) and sim.stats.batch_sizes == [1, 1]


def test_bigger_batches_cost_more_per_request():
    sim = SimBackend(flush_ms=60_000, batch_penalty=0.5, **FAST)

    async def batch(n):
        tasks = [asyncio.create_task(sim.generate(req("same", max_tokens=5))) for _ in range(n)]
        sim.on_all_quiescent()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)

    arun(batch(1))
    alone = sim.stats.service_s[-1]
    arun(batch(8))
    crowded = sim.stats.service_s[-8:]
    assert alone == pytest.approx(0.001 + 5 * 0.0002)
    assert crowded == pytest.approx([(0.001 + 5 * 0.0002) * 4.5] * 8)


def test_fixed_latency_is_batch_independent():
    sim = SimBackend(latency=0.01)

    async def main(n):
        return await asyncio.gather(*(sim.generate(req(f"q{i}")) for i in range(n)))

    one, many = arun(main(1)), arun(main(16))
    assert sim.stats.service_s == [0.01] * 17
    assert sim.stats.batches == 0 and {r.batch_id for r in one + many} == {None}
    assert many[0].text == sim.answer(req("q0")).text


def test_backend_survives_several_event_loops():
    sim = SimBackend(flush_ms=1, **FAST)
    a = arun(sim.generate(req("x")))
    b = arun(sim.generate(req("x")))
    assert a.text == b.text and (a.batch_id, b.batch_id) == (1, 2)


# -- streaming -------------------------------------------------------------------------------


async def collect(sim, r):
    return [c async for c in sim.stream(r)]


@pytest.mark.parametrize("latency", [None, 0.005])
@pytest.mark.parametrize("tokens_per_word", [1, 2])
def test_stream_chunks_concatenate_to_the_answer(latency, tokens_per_word):
    sim = SimBackend(latency=latency, flush_ms=0, tokens_per_word=tokens_per_word,
                     answers=[("poem", "roses are red,\n  violets are blue \n")], **FAST)
    for r in [req("poem"), req("free"), req("free", max_tokens=5), req("free", max_tokens=0)]:
        chunks = arun(collect(sim, r))
        final = chunks[-1].response
        assert final is not None and all(c.response is None for c in chunks[:-1])
        assert "".join(c.text for c in chunks) == final.text == sim.answer(r).text
        assert len(chunks) == max(len(final.text.split()), 1)
        assert final.tokens_out == len(final.text.split()) * tokens_per_word


def test_streams_in_one_batch_finish_in_token_order():
    sim = SimBackend(flush_ms=60_000, **FAST)
    log = []

    async def consume(name, r):
        async for c in sim.stream(r):
            log.append((name, c.response is not None))

    async def main():
        tasks = [asyncio.create_task(consume("short", req("s", max_tokens=3))),
                 asyncio.create_task(consume("long", req("l", max_tokens=12)))]
        await asyncio.sleep(0)
        sim.on_all_quiescent()
        await asyncio.gather(*tasks)

    arun(main())
    assert sim.stats.batch_sizes == [2]
    short_done = log.index(("short", True))
    assert sum(1 for name, _ in log[short_done:] if name == "long") >= 9


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_while_pending_leaves_the_batch():
    sim = SimBackend(flush_ms=60_000, **FAST)

    async def main():
        tasks = [asyncio.create_task(sim.generate(req(f"q{i}"))) for i in range(8)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        sim.on_all_quiescent()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    results = arun(main())
    assert isinstance(results[3], asyncio.CancelledError)
    assert sim.stats.batch_sizes == [7] and sim.stats.cancelled == 1


def test_cancel_while_running_frees_the_slot_and_others_finish():
    sim = SimBackend(flush_ms=60_000, **FAST)

    async def main():
        long = asyncio.create_task(sim.generate(req("long", max_tokens=200, stop=())))
        short = asyncio.create_task(sim.generate(req("short", max_tokens=30)))
        await asyncio.sleep(0)
        sim.on_all_quiescent()
        while sim.stats.batches == 0:
            await asyncio.sleep(0)
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        done = await short
        after = asyncio.create_task(sim.generate(req("next")))
        sim.on_all_quiescent()
        after = await asyncio.wait_for(after, timeout=30)
        return done, after

    done, after = arun(main())
    assert done.batch_id == 1 and after.batch_id == 2
    assert sim.stats.cancelled == 1 and len(sim.stats.service_s) == 2


def test_closing_a_stream_early_leaves_the_batch():
    sim = SimBackend(flush_ms=0, **FAST)

    async def main():
        agen = sim.stream(req("free"))
        first = await agen.__anext__()
        await agen.aclose()
        later = await sim.generate(req("later"))
        return first, later

    first, later = arun(main())
    assert first.response is None and later.batch_id == 2
    assert sim.stats.cancelled == 1 and len(sim.stats.service_s) == 1


def test_cancelling_a_fixed_latency_request():
    sim = SimBackend(latency=60)

    async def main():
        task = asyncio.create_task(sim.generate(req("q")))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert sim.stats.cancelled == 1 and sim.stats.service_s == []


def test_capabilities_and_validation():
    sim = SimBackend()
    assert sim.name == "sim" and sim.default_model == "sim-1"
    assert sim.capabilities == {"stream", "prefill", "raw", "seed", "regex", "choices"}
    sim.check(LLMRequest.build("x", raw=True, prefill="y").with_params(regex="a"))
    with pytest.raises(ValueError):
        SimBackend(max_batch_size=0)
