"""`%%epic --compare`'s engine (llm/compare.py) and view (widgets/_compare.py): four strategies, the
same answers, disagreements shown as failures. No timing thresholds: overlap is checked by the order
of call starts and ends."""

from __future__ import annotations

import asyncio
import itertools
import json

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


def charts(html: str) -> str:
    """The charts' markup, which travels JSON-quoted for the view's script to insert."""
    return json.loads(html.split('class="epic-compare-data">', 1)[1].split("</script>", 1)[0])


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
    assert cmp.critical_path is not None and cmp.warmup is not None and len(cmp.warmup.calls) == 4
    assert [lk.fn for lk in cmp.chain.links] == ["llm", "llm"]        # one fact, then the summary
    assert cmp.speedup(cmp.run("sequential")) == pytest.approx(1.0)
    assert sorted(cmp.order) == sorted(COMPARE_STRATEGIES)


CHAIN_FANOUT = '''plan = llm("Name a topic.", max_tokens=4)
parts = [llm(f"Part {i} of {plan}", max_tokens=4) for i in range(4)]
llm("Join: " + " ".join(parts), max_tokens=4)
'''
FOLD = '''acc = "start"
for w in ["a", "b", "c"]:
    acc = llm("Extend " + acc + " with " + w, max_tokens=4)
acc
'''
PROGRAMS = {"fan-out": FANOUT, "chain into a fan-out": CHAIN_FANOUT, "fold": FOLD}


def assert_bound_holds(cmp) -> None:
    assert cmp.ok, cmp.problems()
    assert cmp.critical_path is not None and cmp.chain.links
    for r in cmp.runs:                                   # by construction: no run beats the bound
        assert r.result.elapsed >= cmp.critical_path, (r.strategy, r.result.elapsed, cmp.critical_path)
        assert cmp.speedup(r) <= cmp.bound + 1e-9
    assert cmp.critical_path == pytest.approx(sum(lk.latency for lk in cmp.chain.links), abs=1e-5)


@pytest.mark.parametrize("name", PROGRAMS)
def test_no_run_beats_the_bound_on_the_sim(name):
    assert_bound_holds(compare(PROGRAMS[name], backend=SimBackend(latency=0.03)))


def test_no_run_beats_the_bound_on_a_tiny_model(tiny_model_dir):
    from epic_kernel.llm import TransformersBackend

    backend = TransformersBackend(tiny_model_dir, device="cpu")
    short = FANOUT.replace('t}.")', 't}.", max_tokens=4)').replace('facts))', 'facts), max_tokens=4)')
    for i, src in enumerate((short, CHAIN_FANOUT, FOLD)):
        assert_bound_holds(compare(src, backend=backend, rotation=i))


@pytest.mark.smollm2
@pytest.mark.timeout(900)             # loads SmolLM2, then 2 programs x (a warm-up and 4 strategies)
def test_no_run_beats_the_bound_on_the_default_model():
    for i, src in enumerate((CHAIN_FANOUT, FOLD)):
        assert_bound_holds(compare(src, backend="transformers", model="smollm2", rotation=i))


def test_strategies_run_in_a_rotated_order_after_a_warm_up():
    a = compare(FANOUT, backend=SimBackend(latency=0.01), rotation=1)
    b = compare(FANOUT, backend=SimBackend(latency=0.01), rotation=2)
    assert a.order[0] != b.order[0] and a.order[1:] + a.order[:1] == b.order
    assert [r.strategy for r in a.runs] == list(COMPARE_STRATEGIES)      # shown in the usual order


def test_a_program_with_no_calls_gets_no_speedup_and_no_bound():
    cmp = compare("x = sum(range(50))\nx\n", backend="sim")
    assert cmp.ok and cmp.critical_path is None and cmp.bound is None
    assert all(cmp.speedup(r) is None for r in cmp.runs)
    view = CompareView(cmp)
    assert "no calls" in view._repr_mimebundle_()["text/html"]
    assert "x" not in "".join(f"{r['speedup']}" for r in view.snap["rows"] if r["speedup"] is not None)


def test_progress_names_the_run_and_counts_its_calls():
    seen, texts = [], []

    def hear(p):
        seen.append((p.strategy, p.index, p.done, p.total))
        texts.append(p.text())

    cmp = compare(FANOUT, backend=SimBackend(latency=0.01), on_progress=hear)
    assert f"finished: {cmp.order[0]} " in texts[-1] and cmp.order[-1] in texts[-1]
    assert seen[0] == ("warm-up", 0, 0, None)
    for s in COMPARE_STRATEGIES:
        assert (s, COMPARE_STRATEGIES.index(s) + 1 - 0, 4, 4) in seen or any(x[0] == s and x[2:] == (4, 4)
                                                                            for x in seen)


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
    assert 'data-strategy="critical chain"' in html and "speedup at most" in html
    for row in view.snap["rows"]:                       # each on an axis that fits it ...
        assert row["header"]["span"] >= row["elapsed"] and row["header"]["span"] < row["elapsed"] + 1e-3
    assert view.snap["span"] >= max(r.result.elapsed for r in cmp.runs)
    assert "one shared time axis" in charts(html)               # ... and the shared one a click away
    assert "agree" in repr(view) and "critical chain" in repr(view)


def test_the_untrusted_fallback_is_a_table_and_the_charts_need_a_script():
    """A sanitizer drops <script>: what is left must read as a table, never SVG label text run together."""
    import re

    html = CompareView(compare(FANOUT, backend=SimBackend(latency=0.01)))._repr_mimebundle_()["text/html"]
    no_scripts = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert "<svg" not in no_scripts and "<table" in no_scripts and "Scripts do not run here" in no_scripts
    assert "<svg" not in html.split("<script", 1)[0]


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
    assert 'class="epic-compare-batches"' in charts(view._repr_mimebundle_()["text/html"])
