"""`%%epic --compare`'s engine (llm/compare.py) and view (widgets/_compare.py): four strategies, the
same answers, disagreements shown as failures. No timing thresholds: overlap is checked by the order
of call starts and ends."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from epic_kernel.widgets import CompareView

from epic_kernel.llm.base import Backend, LLMRequest, LLMResponse
from epic_kernel.llm.compare import COMPARE_STRATEGIES, compare
from epic_kernel.llm.sim import SimBackend

FANOUT = '''topics = ["tides", "rainbows", "eclipses"]
facts = [llm(f"One fact about {t}.") for t in topics]
summary = llm("Summarise: " + " ".join(facts))
len(facts)
'''


def overlapping(calls) -> bool:
    """Some call started before another one ended."""
    return any(a is not b and a.start < b.end and b.start < a.end for a in calls for b in calls)


def test_four_strategies_same_value_same_calls_and_a_bound():
    cmp = compare(FANOUT, backend=SimBackend(latency=0.05))
    assert [r.strategy for r in cmp.runs] == list(COMPARE_STRATEGIES)
    assert cmp.ok, cmp.problems()
    assert {r.result.value for r in cmp.runs} == {3}
    seq = cmp.run("sequential").result
    assert not overlapping(seq.calls)                 # one call at a time
    for s in ("opportunistic", "opportunistic-dfs", "random"):
        assert overlapping(cmp.run(s).result.calls)   # the three facts together
    assert cmp.critical_path is not None and cmp.bound_result is not None
    assert overlapping(cmp.bound_result.calls) and len(cmp.bound_result.calls) == 4
    assert cmp.speedup(cmp.run("sequential")) == pytest.approx(1.0)


class Drifting(Backend):
    """Fault injection: a model that never answers the same twice (as batch-dependent numerics can)."""

    name = "drifting"

    def __init__(self):
        super().__init__()
        self.n = itertools.count(1)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        await asyncio.sleep(0.01)
        return LLMResponse(text=f"answer {next(self.n)}", tokens_in=1, tokens_out=2)


def test_every_strategy_sees_the_reference_answers():
    backend = Drifting()
    cmp = compare(FANOUT.replace("len(facts)", "summary"), backend=backend)
    assert cmp.ok, cmp.problems()
    values = {r.result.value for r in cmp.runs}
    assert len(values) == 1                             # pinned: the same summary everywhere
    assert next(backend.n) > 4 * 4                      # ... though every run really called the model


def test_a_schedule_dependent_program_fails_the_comparison():
    """A tool with a side effect (how many calls are in flight at its start) makes the value depend
    on the schedule: the comparison must say so, not hide it."""
    state = {"now": 0}

    async def busy(x):
        state["now"] += 1
        seen = state["now"]
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return seen

    cmp = compare("max([busy(i) for i in range(3)])\n", backend="sim", namespace={"busy": busy})
    assert not cmp.ok
    assert cmp.run("sequential").ok and cmp.run("sequential").result.value == 1
    bad = cmp.run("opportunistic")
    assert "value differs from sequential" in bad.mismatch
    html = CompareView(cmp)._repr_mimebundle_()["text/html"]
    assert 'data-state="failed"' in html and "do not agree" in html


def test_a_failing_strategy_is_a_failure_in_the_view():
    async def flaky(x):
        raise RuntimeError("tool down")

    cmp = compare("flaky(1)\n", backend="sim", namespace={"flaky": flaky})
    assert not cmp.ok and all(r.error.startswith("failed") for r in cmp.runs)
    text = repr(CompareView(cmp))
    assert "FAILED" in text


def test_view_draws_every_strategy_on_one_axis():
    cmp = compare(FANOUT, backend=SimBackend(latency=0.02))
    view = CompareView(cmp, title="In [4]")
    html = view._repr_mimebundle_()["text/html"]
    for s in COMPARE_STRATEGIES:
        assert f'data-strategy="{s}"' in html
    assert 'data-strategy="critical path"' in html and "speedup bound" in html
    spans = {row["header"]["span"] for row in view.snap["rows"]}
    assert spans == {view.snap["span"]}                 # a shared time axis
    assert view.snap["span"] >= max(r.result.elapsed for r in cmp.runs)
    assert "agree" in repr(view) and "critical path" in repr(view)


def test_batches_over_time_on_a_local_model(tiny_model_dir):
    from epic_kernel.llm import TransformersBackend

    backend = TransformersBackend(tiny_model_dir, device="cpu")
    src = FANOUT.replace('t}.")', 't}.", max_tokens=6)').replace('facts))', 'facts), max_tokens=6)')
    assert src.count("max_tokens=6") == 2
    cmp = compare(src, backend=backend)
    assert cmp.ok, cmp.problems()
    view = CompareView(cmp)
    opp = next(r for r in view.snap["rows"] if r["strategy"] == "opportunistic")
    seq = next(r for r in view.snap["rows"] if r["strategy"] == "sequential")
    assert max(b[3] for b in opp["batches"]) >= 2         # the facts decoded together
    assert max(b[3] for b in seq["batches"]) == 1         # one at a time
    assert 'class="epic-compare-batches"' in view._repr_mimebundle_()["text/html"]
