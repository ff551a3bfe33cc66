"""Skeleton graphs (`sot(question, graph=True)`): parsing and checking the graph, the schedule the
evaluator finds from the dependencies alone, SoT-R's class B, the panel, and an OpenAI-compatible
server."""

from __future__ import annotations

import re

import pytest

from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs import sot
from epic_kernel.programs.skeleton_graph import (
    critical_path,
    graph_regex,
    graph_sim_script,
    parse_graph,
    parse_graph_point,
)

QUESTION = "How should I plan a week of meals?"
GRAPH = ("1. List dietary needs. (depends on: none)\n2. Check the budget. (depends on: none)\n"
         "3. Pick recipes. (depends on: 1, 2)\n4. Write a shopping list. (depends on: 3)\n")
POINTS = [(1, "List dietary needs."), (2, "Check the budget."), (3, "Pick recipes."), (4, "Write a shopping list.")]
PLAIN = "1. Fixed schedule.\n2. Dark room.\n3. No late coffee.\n4. Wind down.\n"


def expansion(request, m) -> str:
    k = int(m.group(1))
    return " ".join(["more"] * (2 * k)) + f" about point {k}."


def graph_sim(skeleton: str = GRAPH, log: list | None = None, router: str = "A", **kw) -> SimBackend:
    def logged(reply):
        def answer(request, m):
            if log is not None:
                log.append(request)
            return reply(request, m) if callable(reply) else reply
        return answer

    return SimBackend(answers=[
        (r"^You're an organizer", logged(skeleton)),
        (r"^You're responsible for continuing.*writing of point (\d+)\.", logged(expansion)),
        (r"^Question: .*Just say A, B, or C", logged(router)),
        (r".*", logged("One plain answer.")),
    ], **kw)


def prompt(request) -> str:
    return request.messages[-1]["content"]


# ------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("line, want", [
    ("3. Pick recipes. (depends on: 1, 2)", (3, "Pick recipes.", [1, 2])),
    ("1. Needs. (depends on: none)", (1, "Needs.", [])),
    ("2) Budget [after 1]", (2, "Budget", [1])),
    ("4. Shop (needs: 2 and 3).", (4, "Shop", [2, 3])),
    ("5. Plain point without a note", (5, "Plain point without a note", [])),
    ("6. Sleep (8 hours)", (6, "Sleep (8 hours)", [])),
    ("not a point", None), ("7. (depends on: 1)", None),
])
def test_parse_graph_point(line, want):
    assert parse_graph_point(line) == want


def test_parse_graph_drops_missing_later_and_self_edges_and_says_so():
    g = parse_graph("1. A (depends on: 2)\n2. B (depends on: 1, 9)\n3. C (depends on: 3, 1, 1)\n3. Again\n")
    assert g["points"] == [(1, "A"), (2, "B"), (3, "C")]
    assert g["edges"] == [(1, 2), (1, 3)] and g["needs"] == [[], [0], [0]]
    assert g["dropped"] == ["point 1 named a later point (a possible cycle), 2: edge dropped",
                            "point 2 named a point that does not exist, 9: edge dropped",
                            "point 3 named itself, 3: edge dropped"]


def test_a_cycle_loses_its_backward_edge():
    g = parse_graph("1. A (depends on: 3)\n2. B (depends on: 1)\n3. C (depends on: 2)")
    assert g["edges"] == [(1, 2), (2, 3)] and len(g["dropped"]) == 1


def test_critical_path_is_the_longest_chain_then_the_heaviest():
    assert critical_path([[], [], [0, 1], [2]], [5, 9, 1, 1]) == [1, 2, 3]
    assert critical_path([[], [], []], [1, 7, 3]) == [1]                # no edges: one point
    assert critical_path([], []) == []


@pytest.mark.parametrize("prefilled", [True, False])
def test_graph_regex_accepts_the_format_and_bounds_the_points(prefilled):
    rx = graph_regex(10, 256, prefilled)
    text = GRAPH if not prefilled else GRAPH[2:]
    assert re.fullmatch(rx, text)
    assert not re.fullmatch(rx, text.replace(" (depends on: 3)", ""))      # every line says its dependencies
    assert re.fullmatch(graph_regex(10, 48, prefilled), text) is None     # 48 tokens fit two lines, not four


# ------------------------------------------------------------------------------- the schedule
def test_dependencies_alone_decide_what_runs_together():
    log: list = []
    res = sot.run(QUESTION, graph=True, backend=graph_sim(log=log, per_token_s=0.01))
    out = res.value
    assert out["points"] == POINTS and out["edges"] == [(1, 3), (2, 3), (3, 4)] and out["dropped"] == []
    assert out["critical_path"] == [2, 3, 4]                 # 2's expansion is longer than 1's
    skeleton, *calls = res.calls
    by_point = {int(re.search(r"about point (\d+)", c.result_preview).group(1)): c for c in calls}
    one, two, three, four = (by_point[k] for k in (1, 2, 3, 4))
    assert one.start < two.end and two.start < one.end       # 1 and 2 together
    assert three.start >= max(one.end, two.end) and four.start >= three.end
    # point 3's prompt holds what 1 and 2 say; 1's holds nothing extra
    p3 = next(prompt(r) for r in log if "writing of point 3." in prompt(r))
    assert "1. List dietary needs. more more about point 1.\n2. Check the budget. more more more more about point 2." in p3
    p1 = next(prompt(r) for r in log if "writing of point 1." in prompt(r))
    assert "builds on" not in p1
    assert "(depends on" not in p1 and "1. List dietary needs.\n2. Check the budget." in p1   # plain skeleton
    assert out["answer"].splitlines()[2].startswith("3. Pick recipes. more")


@pytest.mark.parametrize("stream", [False, True])
def test_without_edges_the_expansions_are_plain_sots(stream):
    """The same skeleton text, k independent points: the same expansion calls, dispatched the same way."""
    plain_log: list = []
    graph_log: list = []
    plain = sot.run(QUESTION, stream=False, backend=graph_sim(PLAIN, log=plain_log), strategy="opportunistic")
    graph = sot.run(QUESTION, graph=True, constrained=False, stream=stream,
                    backend=graph_sim(PLAIN, log=graph_log))
    assert graph.value["answer"] == plain.value["answer"] and graph.value["edges"] == []
    assert len(graph.value["critical_path"]) == 1
    expansions = [(prompt(r), r.prefill, r.params) for r in plain_log[1:]]
    got = [(prompt(r), r.prefill, r.params) for r in graph_log[1:]]
    assert got == expansions                                  # same prompts, prefills, parameters, order
    for res in (plain, graph):                                # same schedule: all at once after the skeleton
        skeleton, *calls = res.calls
        assert len(calls) == 4 and all(c.start >= skeleton.end for c in calls)
        assert max(c.start for c in calls) < min(c.end for c in calls)
    assert [c.path for c in plain.calls[1:]] != [] and len(graph.calls) == len(plain.calls)


def test_sequential_strategy_gives_the_same_answer():
    want = sot(QUESTION, graph=True, backend=graph_sim())
    assert sot(QUESTION, graph=True, backend=graph_sim(), strategy="sequential") == want


def test_constrained_on_the_sim_and_unconstrained_when_told():
    log: list = []
    sot(QUESTION, graph=True, backend=graph_sim(log=log))
    assert log[0].params.regex == graph_regex(10, 256, True) and log[0].prefill == "1."
    log.clear()
    sot(QUESTION, graph=True, constrained=False, backend=graph_sim(log=log))
    assert log[0].params.regex is None


def test_unscripted_sim_writes_a_well_formed_graph_skeleton():
    out = sot(QUESTION, graph=True, backend=SimBackend(scripts=[graph_sim_script]))
    assert out["used_sot"] and 3 <= len(out["points"]) <= 6 and out["dropped"] == []
    out = sot(QUESTION, graph=True, backend="sim")             # the sim's own regex sample
    assert out["used_sot"] and len(out["points"]) >= 2


def test_fewer_than_two_points_decode_normally():
    out = sot(QUESTION, graph=True, constrained=False, backend=graph_sim("1. Only one. (depends on: none)"))
    assert out == {"answer": "One plain answer.", "points": [], "expansions": [], "used_sot": False}


# ------------------------------------------------------------------------------- SoT-R
@pytest.mark.parametrize("letter, kind", [("A", "sot"), ("B", "graph"), ("C", "normal"), ("maybe", "normal")])
def test_router_sends_class_b_to_the_graph(letter, kind):
    out = sot(QUESTION, router=True, constrained=False, backend=graph_sim(PLAIN, router=letter))
    assert {"sot": lambda: out["used_sot"] and "edges" not in out,
            "graph": lambda: out["used_sot"] and "edges" in out,
            "normal": lambda: not out["used_sot"]}[kind]()


# ------------------------------------------------------------------------------- the panel
def test_the_panel_draws_the_graph_and_escapes_model_text():
    from epic_kernel.widgets import RunModel
    from epic_kernel.widgets._snapshot import snapshot_html

    model = RunModel()
    skeleton = GRAPH.replace("Pick recipes.", "Pick <b>recipes</b> & co.") + "5. Extra (depends on: 7)\n"
    res = sot.run(QUESTION, graph=True, stream=True, constrained=False, backend=graph_sim(skeleton),
                  observers=[model.on_event])
    panel = model.snapshot()["sot"]
    g = panel["graph"]
    assert [(n["index"], n["depth"], n["state"], n["critical"]) for n in g["nodes"]] == [
        (1, 1, "done", False), (2, 1, "done", True), (3, 2, "done", True), (4, 3, "done", True), (5, 1, "done", False)]
    assert [(e["from"], e["to"], e["critical"]) for e in g["edges"]] == [(1, 3, False), (2, 3, True), (3, 4, True)]
    assert "point 5 named a point that does not exist, 7: edge dropped" in panel["note"]
    assert any("chunk" in ev.data for ev in res.trace if ev.kind == "program.sot.expansion")   # streamed
    html = snapshot_html(model.snapshot())
    assert "Skeleton graph (5 points, 3 edges)" in html and "critical path: 2 → 3 → 4 (3 of 5 points" in html
    assert "Pick &lt;b&gt;recipes&lt;/b&gt; &amp; co." in html and "<b>recipes</b>" not in html


def test_the_panel_shows_waiting_nodes_while_dependencies_run():
    from epic_kernel.widgets._sot_graph import graph_layout

    points = [{"index": 1, "text": "A", "expansion": "half", "done": False},
              {"index": 2, "text": "B", "expansion": "", "done": False}]
    g = graph_layout(points, [(1, 2), (1, 9)], [])
    assert [n["state"] for n in g["nodes"]] == ["running", "waiting"] and len(g["edges"]) == 1
    assert g["depth"] == 2


# ------------------------------------------------------------------------------- an OpenAI-compatible server
def test_over_an_openai_compatible_server():
    """The fake OpenAI server (real HTTP on 127.0.0.1) echoes each prompt, so the skeleton it
    "writes" is the prompt's own first example: five points, 3 after 1, 4 after 2 and 3, 5 after 4.
    It has no constraint dialect: the skeleton is asked for unconstrained (after the probe) and
    parsed, and each dependent expansion waits for exactly the expansions it names."""
    from epic_kernel.llm.openai_backend import OpenAIBackend
    from epic_kernel.testing.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(latency=0.05) as server:
        backend = OpenAIBackend(base_url=server.base_url, model="fake", api_key="x")
        res = sot.run(QUESTION, graph=True, prefill=False, expand_with="point", backend=backend)
    out = res.value
    assert [t for _, t in out["points"]] == ["List your workloads.", "Set a budget.", "Pick processor and memory.",
                                            "Compare three models.", "Buy the best fit."]
    assert out["edges"] == [(1, 3), (2, 4), (3, 4), (4, 5)] and out["dropped"] == []
    assert out["critical_path"] == [1, 3, 4, 5]
    skeleton, *calls = res.calls
    assert all(c.fn == "llm" and c.state == "done" for c in res.calls) and len(calls) == 5
    by_point = dict(zip(range(1, 6), calls, strict=True))   # dispatch order: 1 and 2, then 3, 4, 5
    assert by_point[1].start < by_point[2].end and by_point[2].start < by_point[1].end     # 1, 2 together
    assert by_point[3].start >= by_point[1].end
    assert by_point[4].start >= max(by_point[2].end, by_point[3].end) and by_point[5].start >= by_point[4].end


@pytest.mark.engines
@pytest.mark.timeout(900)                  # six SmolLM2 calls on a shared 2-core machine
def test_on_llama_server_with_the_default_model(engine_factory):
    """A real engine: llama-server serving SmolLM2 (GGUF). Its dialect has no `regex=`, so after the
    probe the skeleton is asked for unconstrained; whatever the model writes, the run ends cleanly
    with a graph whose edges all point backwards, or a normal answer when the skeleton has fewer than
    two points."""
    from epic_kernel.llm.openai_backend import OpenAIBackend

    srv = engine_factory("llama.cpp")
    backend = OpenAIBackend(base_url=srv.base_url, api_key="none", model="smollm2", timeout=120.0)
    res = sot.run("How do I plan a birthday party for a friend?", graph=True, prefill=False, expand_with="point",
                  max_tokens=48, backend=backend)
    out = res.value
    assert all(c.state == "done" for c in res.calls) and backend.dialect == "llama.cpp"
    assert res.calls[0].fn == "llm"                                      # one skeleton call, unconstrained
    if out["used_sot"]:
        assert len(out["expansions"]) == len(out["points"]) >= 2 and len(res.calls) == 1 + len(out["points"])
        order = [i for i, _ in out["points"]]
        assert all(order.index(a) < order.index(b) for a, b in out["edges"])
        assert 1 <= len(out["critical_path"]) <= len(out["points"])
    else:
        assert out["points"] == [] and len(res.calls) == 2
