"""The answer cache is keyed by the backend's identity (class and every setting that changes an
answer), not by its name: two differently scripted sims, a sim that fails, and two OpenAI backends
on different URLs (two real HTTP servers on 127.0.0.1) never share answers; the same configuration
does, across instances."""

from __future__ import annotations

import asyncio

import pytest

from epic_kernel import EpicError, run
from epic_kernel.llm.base import LLMRequest
from epic_kernel.llm.cache import CachedBackend
from epic_kernel.llm.sim import SimBackend

PROGRAM = 'answers = [llm(f"Capital of {c}?") for c in ["France", "Peru", "Japan"]]\nanswers'


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EPIC_CACHE_DIR", str(tmp_path / "cache"))


def cached_run(backend):
    res = run(PROGRAM, backend=backend, cache=True)
    return res.value, sum(c.cached for c in res.calls)


def test_differently_scripted_sims_do_not_share_answers():
    paris = SimBackend(answers=[(r"Capital", "Paris")])
    lima = SimBackend(answers=[(r"Capital", "Lima")])
    assert cached_run(paris) == (["Paris"] * 3, 0)
    assert cached_run(paris) == (["Paris"] * 3, 3)                     # the same backend: cached
    assert cached_run(SimBackend(answers=[(r"Capital", "Paris")])) == (["Paris"] * 3, 3)   # same config
    assert cached_run(lima) == (["Lima"] * 3, 0)                       # another script: its own answers
    assert cached_run(SimBackend(seed=7))[1] == 0                      # another seed is another model
    assert cached_run(SimBackend())[1] == 0


def test_callable_replies_are_told_apart_by_code_and_closure():
    def scripted(word):
        return SimBackend(answers=[(r"Capital of (\w+)", lambda req, m: f"{word} {m.group(1)}")])

    assert cached_run(scripted("near"))[0][0] == "near France"
    assert cached_run(scripted("far")) == (["far France", "far Peru", "far Japan"], 0)
    assert cached_run(scripted("far"))[1] == 3


def test_a_failing_sim_fails_instead_of_returning_cached_answers():
    assert cached_run(SimBackend(answers=[(r"Capital", "Paris")]))[1] == 0

    def boom(req, m):
        raise RuntimeError("model is down")

    with pytest.raises(EpicError) as info:
        run(PROGRAM, backend=SimBackend(answers=[(r"Capital", boom)]), cache=True)
    calls = info.value.result.calls
    # the first failure in program order stops the run: the other calls failed or were cancelled,
    # and none was answered from the cache
    assert calls[0].state == "failed" and {c.state for c in calls[1:]} <= {"failed", "cancelled"}
    assert not any(c.cached for c in calls)


def test_openai_backends_on_different_urls_do_not_share_answers(tmp_path):
    from epic_kernel.llm.openai_backend import OpenAIBackend
    from epic_kernel.testing.fake_openai import FakeOpenAIServer

    q = LLMRequest.build("What is the capital of France?")
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        def ask(srv):
            backend = CachedBackend(OpenAIBackend(base_url=srv.base_url, api_key="k", model="fake-model"),
                                    tmp_path / "c.sqlite")
            try:
                return asyncio.run(backend.generate(q))
            finally:
                backend.close()

        assert not ask(one).cached and one.stats["requests"] == 1
        assert ask(one).cached and one.stats["requests"] == 1        # same URL and model: a hit
        second = ask(two)                                              # same model name, other server
        assert not second.cached and two.stats["requests"] == 1
        assert ask(two).cached and two.stats["requests"] == 1


def test_identity_names_what_changes_answers():
    from epic_kernel.llm.openai_backend import OpenAIBackend

    a = OpenAIBackend(base_url="http://127.0.0.1:1/v1", api_key="k", model="m").identity()
    b = OpenAIBackend(base_url="http://127.0.0.1:2/v1", api_key="k", model="m").identity()
    assert a != b and a["base_url"] == "http://127.0.0.1:1/v1" and a["model"] == "m"
    assert "api_key" not in str(a)                                    # never a secret in the key data
    sim = SimBackend(answers=[("x", "y")], seed=3).identity()
    assert sim["class"] == "epic_kernel.llm.sim.SimBackend" and sim["seed"] == 3
    assert SimBackend(latency=1.0).identity() == SimBackend(latency=0.0).identity()   # timing is not an answer
