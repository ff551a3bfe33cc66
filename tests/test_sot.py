"""Skeleton-of-Thought (`epic_kernel.programs.sot`): parsing, routing, parallel and streaming dispatch,
the widget's events, and the ways to call it (Python, epic code, `epic run`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from epic_kernel import EpicError, run
from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs import sot
from epic_kernel.programs.sot import assemble, parse_skeleton, router_choice

QUESTION = "How can I sleep better?"
SKELETON = "1. Fixed schedule.\n2. Dark room.\n3. No late coffee.\n4. Wind down.\n"
POINTS = [(1, "Fixed schedule."), (2, "Dark room."), (3, "No late coffee."), (4, "Wind down.")]


def expansion(request, m) -> str:
    """A scripted expansion whose length grows with the point number (point 4 finishes last)."""
    k = int(m.group(1))
    return " ".join(["more"] * (2 * k)) + f" about point {k}."


def point_expansion(request, m) -> str:
    """`expand_with="point"`: the point is named, not numbered; find its number in POINTS."""
    k = next(i for i, t in POINTS if t == m.group(1))
    return " ".join(["more"] * (2 * k)) + f" about point {k}."


def sim(skeleton: str = SKELETON, router: str = "A", normal: str = "One plain answer.", log: list | None = None,
        **kw) -> SimBackend:
    def record(reply):
        def answer(request, m):
            if log is not None:
                log.append(request)
            return reply(request, m) if callable(reply) else m.expand(reply)
        return answer

    return SimBackend(answers=[
        (r"^You're an organizer", record(skeleton)),
        (r"^You're responsible for continuing.*writing of point (\d+)\.", record(expansion)),
        (r"^You're responsible for continuing.*The point is: (.*?)\n", record(point_expansion)),
        (r"^Question: .*Just say A, B, or C", record(router)),
        (r".*", record(normal)),
    ], **kw)


def expected_answer(points=POINTS) -> str:
    return "\n".join(f"{i}. {t} " + " ".join(["more"] * (2 * i)) + f" about point {i}." for i, t in points)


# ------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("skeleton, points", [
    ("1. A\n2. B\n3. C", [(1, "A"), (2, "B"), (3, "C")]),
    ("1. A \n\n2. B. \n", [(1, "A"), (2, "B.")]),                                  # blank lines, trailing spaces
    ("1. A\n3. C\n7. G", [(1, "A"), (3, "C"), (7, "G")]),                          # numbering gaps keep the numbers
    ("1. A\n2. B\n2. B again\n3. A", [(1, "A"), (2, "B")]),                        # repeated number, repeated text
    ("Sure! Here is the skeleton:\n1. A\n2. B", [(1, "A"), (2, "B")]),             # text before the list
    ("1) A\n  2) B\n", [(1, "A"), (2, "B")]),                                      # "1)" style, indented
    ("1. A\nsee section 4. below\n2. B\nIn summary, done.", [(1, "A"), (2, "B")]),  # anchored at line starts
    ("1. A\n3.5 kg of rice\n2.\n", [(1, "A")]),                                    # a decimal, an empty point
    ("1.\n2. B", [(2, "B")]),
    ("Just one sentence without a list.", []),
    ("", []),
])
def test_parse_skeleton(skeleton, points):
    assert parse_skeleton(skeleton) == points


def test_parse_skeleton_keeps_at_most_max_points():
    assert parse_skeleton("\n".join(f"{k}. P{k}" for k in range(1, 20)), 3) == [(1, "P1"), (2, "P2"), (3, "P3")]


@pytest.mark.parametrize("reply, letter", [
    ("A", "A"), (" B.", "B"), ("C", "C"), ("Answer: A", "A"), ("I would pick B.", "B"), ("A. Organize", "A"),
    ("", None), ("a", None), ("Organize the answer as a list", None), ("ABC", None),
])
def test_router_choice(reply, letter):
    assert router_choice(reply) == letter


def test_assemble_keeps_skeleton_order():
    assert assemble([(2, "B"), (1, "A")], ["b.", ""]) == "2. B b.\n1. A"


# ------------------------------------------------------------------------------- plain SoT
def test_sot_expands_every_point_in_parallel_and_assembles_in_order():
    log: list = []
    res = sot.run(QUESTION, backend=sim(log=log))
    out = res.value
    assert out == {"answer": expected_answer(), "points": POINTS,
                   "expansions": [" ".join(["more"] * (2 * i)) + f" about point {i}." for i in range(1, 5)],
                   "used_sot": True}
    skeleton, *expansions = res.calls
    assert len(expansions) == 4
    assert all(e.start >= skeleton.end for e in expansions)       # they need the whole skeleton
    assert max(e.start for e in expansions) < min(e.end for e in expansions)   # all in flight together
    assert [e.end for e in expansions] == sorted(e.end for e in expansions)    # point 4 finished last
    # the paper's partial answers: "1." for the skeleton, "k. <point>" for point k
    assert [r.prefill for r in log] == ["1.", "1. Fixed schedule.", "2. Dark room.", "3. No late coffee.",
                                        "4. Wind down."]
    assert "Question:\nWhat are the typical types of Chinese dishes?" in log[0].messages[-1]["content"]
    assert log[0].messages[-1]["content"].endswith(f"{QUESTION}\nSkeleton:\n")
    point2 = log[2].messages[-1]["content"]
    assert f"\n\n{QUESTION}\n\nThe skeleton of the answer is\n\n{SKELETON.strip()}\n\n" in point2
    assert "Continue and only continue the writing of point 2." in point2


@pytest.mark.parametrize("stream", [False, True])
def test_expand_with_point_shows_each_expansion_only_its_point(stream):
    log: list = []
    out = sot(QUESTION, stream=stream, expand_with="point", backend=sim(log=log))
    assert out["answer"] == expected_answer() and out["used_sot"]
    skeleton, *expansions = log
    assert skeleton.prefill == "1."                               # the skeleton is still prefilled
    assert len(expansions) == 4 and all(r.prefill is None for r in expansions)
    prompts = [r.messages[-1]["content"] for r in expansions]
    assert sorted(re.search(r"The point is: (.*)\n", p).group(1) for p in prompts) == sorted(t for _, t in POINTS)
    assert not any("The skeleton of the answer" in p or "Please start your answer from" in p for p in prompts)


def test_skeleton_stops_at_a_blank_line_or_a_new_few_shot_block():
    log: list = []
    sot(QUESTION, backend=sim(log=log))
    assert log[0].params.stop == ("\n\n", "\nQuestion:", "\nSkeleton:")
    assert all(r.params.stop == ("\n\n",) for r in log[1:])


def test_unknown_expand_with_is_a_clear_error():
    with pytest.raises(EpicError, match="expand_with must be 'auto', 'skeleton'.*not 'points'"):
        sot(QUESTION, expand_with="points", backend=sim())


@pytest.mark.parametrize("stream", [False, True])
def test_same_answer_under_every_strategy(stream):
    want = sot(QUESTION, stream=stream, backend=sim())
    for strategy in ("sequential", "opportunistic-dfs", "random"):
        res = sot.run(QUESTION, stream=stream, backend=sim(), strategy=strategy)
        assert res.value == want
    calls = sot.run(QUESTION, stream=stream, backend=sim(), strategy="sequential").calls
    assert all(a.end <= b.start for a, b in zip(calls, calls[1:], strict=False))   # one at a time


def test_max_points_drops_the_rest():
    out = sot(QUESTION, max_points=2, backend=sim())
    assert out["points"] == POINTS[:2] and len(out["expansions"]) == 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("skeleton", ["1. Sleep more, that is all there is to it.", "Just sleep.", ""])
def test_fewer_than_two_points_falls_back_to_normal_decoding(skeleton, stream):
    log: list = []
    res = sot.run(QUESTION, stream=stream, backend=sim(skeleton=skeleton, log=log))
    assert res.value == {"answer": "One plain answer.", "points": [], "expansions": [], "used_sot": False}
    normal = [r for r in log if r.messages[-1]["content"] == QUESTION]
    assert len(normal) == 1 and normal[0].prefill is None         # the question as it is, one call
    if not stream:
        assert len(res.calls) == 2                                # skeleton, then the normal answer


def test_without_prefill_the_prompts_ask_for_the_start():
    log: list = []

    def echo(request, m):                    # a model that repeats the start it was asked for
        return f"{m.group(1)}. {dict(POINTS)[int(m.group(1))]} " + expansion(request, m)

    backend = SimBackend(answers=[
        (r"^You're an organizer", lambda r, m: log.append(r) or "Here you go:\n" + SKELETON),
        (r"^You're responsible for continuing.*writing of point (\d+)\.", lambda r, m: log.append(r) or echo(r, m)),
    ])
    out = sot(QUESTION, prefill=False, backend=backend)
    assert out["answer"] == expected_answer()
    assert all(r.prefill is None for r in log)
    assert 'Please start your answer from "1."' in log[0].messages[-1]["content"]
    assert 'Please start your answer from "3. No late coffee."' in log[3].messages[-1]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_streaming_without_prefill_asks_for_the_start_too(stream):
    log: list = []
    backend = SimBackend(answers=[
        (r"^You're an organizer", lambda r, m: log.append(r) or "Sure.\n" + SKELETON),
        (r"writing of point (\d+)\.", expansion),
    ])
    out = sot(QUESTION, stream=stream, prefill=False, backend=backend)
    assert out["answer"] == expected_answer()
    (skeleton,) = log
    assert skeleton.prefill is None and 'Please start your answer from "1."' in skeleton.messages[-1]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_expansion_ends_at_its_first_blank_line(stream):
    backend = SimBackend(answers=[
        (r"^You're an organizer", SKELETON),
        (r"writing of point (\d+)\.", r"Point \1 in short.\n\nHere is the whole answer again: 1. ..."),
    ])
    out = sot(QUESTION, stream=stream, backend=backend)
    assert out["expansions"] == [f"Point {k} in short." for k in range(1, 5)]


# ------------------------------------------------------------------------------- SoT-R
@pytest.mark.parametrize("reply, used_sot", [("A", True), ("A.", True), ("B", True), ("C", False),
                                             ("I cannot tell.", False), ("", False)])
def test_router_decides_between_sot_and_normal_decoding(reply, used_sot):
    """A: SoT; B (points that depend on each other): a skeleton graph (tests/test_sot_graph.py;
    unconstrained here, since this sim's skeleton has no dependency notes); anything else: normal."""
    log: list = []
    res = sot.run(QUESTION, router=True, constrained=False, backend=sim(router=reply, log=log))
    assert res.value["used_sot"] is used_sot
    assert ("edges" in res.value) is (reply == "B")
    router_call, *rest = log
    assert "Just say A, B, or C." in router_call.messages[-1]["content"]
    assert router_call.params.max_tokens == 10
    if used_sot:
        assert res.value["answer"] == expected_answer() and len(rest) == 5
    else:                                # no skeleton was asked for: the router call, then the answer
        assert res.value["answer"] == "One plain answer." and len(res.calls) == 2
        assert rest[0].messages[-1]["content"] == QUESTION


def test_no_router_call_unless_asked():
    log: list = []
    sot(QUESTION, backend=sim(router="C", log=log))
    assert not any("Just say A, B, or C" in r.messages[-1]["content"] for r in log)


# ------------------------------------------------------------------------------- streaming SoT
def test_streaming_dispatches_each_expansion_while_the_skeleton_streams():
    log: list = []
    res = sot.run(QUESTION, stream=True, backend=sim(log=log, per_token_s=0.01))
    assert res.value == sot(QUESTION, backend=sim())               # same result as plain SoT here
    skeleton, *expansions = res.calls
    assert skeleton.streamed == SKELETON[2:] and len(expansions) == 4
    # a line is complete when the next one starts: points 1-3 were expanding before the skeleton ended
    assert all(e.start < skeleton.end for e in expansions[:3])
    assert [e.start for e in expansions] == sorted(e.start for e in expansions)
    # point k's prompt holds the skeleton so far: points 1..k
    for k, request in enumerate(log[1:], 1):
        prompt = request.messages[-1]["content"]
        assert "\n".join(f"{i}. {t}" for i, t in POINTS[:k]) + "\n\nContinue" in prompt


def test_streaming_sequential_waits_for_the_skeleton():
    res = sot.run(QUESTION, stream=True, backend=sim(per_token_s=0.01), strategy="sequential")
    skeleton, *expansions = res.calls
    assert all(e.start >= skeleton.end for e in expansions)


# ------------------------------------------------------------------------------- widget events
def sot_events(res) -> list[tuple]:
    out = []
    for ev in res.trace:
        if ev.kind.startswith("program.sot."):
            data = {k: v for k, v in ev.data.items() if k != "chunk"}
            out.append((ev.kind[len("program.sot."):], data, "chunk" in ev.data))
    return out


def test_events_for_the_sot_panel():
    seen: list = []
    res = sot.run(QUESTION, backend=sim(), observers=[seen.append])
    events = sot_events(res)
    assert [e.kind for e in seen if e.kind.startswith("program.sot.")] == [
        "program.sot." + kind for kind, _, _ in events]
    assert events[0] == ("question", {"text": QUESTION}, False)
    assert [d for kind, d, _ in events if kind == "point"] == [{"index": i, "text": t} for i, t in POINTS]
    done = {d["index"]: d["text"] for kind, d, _ in events if kind == "expansion"}
    assert done == dict(zip(range(1, 5), res.value["expansions"], strict=True))
    assert all(d["done"] for kind, d, _ in events if kind == "expansion")
    assert events[-1] == ("answer", {"text": res.value["answer"]}, False)


def test_streaming_events_feed_the_widget_model():
    from epic_kernel.widgets import RunModel

    model = RunModel()
    res = sot.run(QUESTION, stream=True, backend=sim(), observers=[model.on_event])
    events = sot_events(res)
    assert any(chunk for _, _, chunk in events)              # the expansions streamed too
    skeleton = res.calls[0]
    points = [ev.t for ev in res.trace if ev.kind == "program.sot.point"]
    assert len(points) == 4 and points[0] < skeleton.end     # points appear as the skeleton streams
    panel = model.snapshot()["sot"]
    assert panel["question"] == QUESTION and panel["answer"] == res.value["answer"]
    assert [(p["index"], p["text"], p["expansion"], p["done"]) for p in panel["points"]] == [
        (i, t, e, True) for (i, t), e in zip(POINTS, res.value["expansions"], strict=True)]


def test_fallback_emits_the_normal_answer():
    res = sot.run(QUESTION, backend=sim(skeleton="Sleep."))         # one point: "1.Sleep."
    assert [kind for kind, _, _ in sot_events(res)] == ["question", "point", "answer"]


# ------------------------------------------------------------------------------- ways to call it
def test_called_from_epic_code_without_an_import():
    src = f"out = sot({QUESTION!r}, stream=True)\nout['answer']"
    res = run(src, backend=sim(), namespace={})
    assert res.value == expected_answer()
    assert len(res.calls) == 5                   # inlined: its calls are the program's calls


def test_two_questions_from_epic_code_run_together():
    src = "[sot(q)['used_sot'] for q in ['How can I sleep better?', 'How can I rest better?']]"
    res = run(src, backend=sim(), namespace={"sot": sot})
    assert res.value == [True, True] and len(res.calls) == 10
    skeletons = [c for c in res.calls if "organizer" in c.args_preview]
    assert skeletons[1].start < skeletons[0].end          # both skeletons in flight at once


def test_python_call_options_and_errors():
    assert sot(QUESTION, backend=sim(), strategy="sequential")["used_sot"] is True
    with pytest.raises(EpicError, match="unexpected keyword argument 'colour'"):
        sot(QUESTION, colour="blue", backend=sim())
    assert "epic function sot" in repr(sot) and sot.__doc__.startswith("Answer `question`")


def test_example_runs_on_the_sim():
    path = Path(__file__).parent.parent / "examples" / "sot_streaming.py"
    res = run(path.read_text(), backend=sim(), namespace={}, filename=str(path))
    assert res.value == expected_answer()
    res = run(path.read_text(), backend="sim", namespace={}, filename=str(path))   # unscripted: no list
    assert isinstance(res.value, str) and res.value


# ------------------------------------------------------------------------------- a real (tiny) model
@pytest.mark.parametrize("stream", [False, True])
def test_tiny_model_end_to_end(tiny_model_dir, stream):
    from epic_kernel.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_model_dir, device="cpu", shared=False)
    res = sot.run(QUESTION, stream=stream, max_tokens=24, backend=backend)
    out = res.value
    assert set(out) == {"answer", "points", "expansions", "used_sot"}
    assert isinstance(out["answer"], str) and len(out["points"]) == len(out["expansions"])
    assert out["used_sot"] == (len(out["points"]) >= 2)
    assert all(re.fullmatch(r"[^\n]+", text) for _, text in out["points"])
    assert all(c.state == "done" for c in res.calls)


# ------------------------------------------------------------------ expand_with="auto" (the default)
@pytest.mark.parametrize("weak", ["", "2. Dark room.\n3. No late coffee."])
@pytest.mark.parametrize("stream", [False, True])
def test_auto_expands_again_with_one_point_when_the_skeleton_prompt_gives_nothing(weak, stream):
    """What SmolLM2-135M does with the paper's prompt (an empty expansion, or the skeleton copied
    out): "auto" asks again with the one-point prompt, and the SoT panel says so."""
    from epic_kernel.widgets import RunModel

    log: list = []
    weak_sim = SimBackend(answers=[
        (r"^You're an organizer", SKELETON),
        (r"^You're responsible for continuing.*writing of point (\d+)\.", weak),
        (r"^You're responsible for continuing.*The point is: (.*?)\n", lambda req, m: (log.append(req), point_expansion(req, m))[1]),
    ])
    model = RunModel()
    res = sot.run(QUESTION, stream=stream, backend=weak_sim, observers=[model.on_event])
    assert res.value["answer"] == expected_answer() and res.value["used_sot"]
    assert len(log) == 4 and len(res.calls) == 1 + 4 + 4            # skeleton, weak tries, one-point tries
    panel = model.snapshot()["sot"]
    assert [(p["expansion"], p["done"]) for p in panel["points"]] == [
        (e, True) for e in res.value["expansions"]]
    reason = "empty" if weak == "" else "copied the skeleton"
    assert panel["note"].startswith("points 1, 2, 3, 4: the paper's skeleton prompt gave no expansion") and reason in panel["note"]


def test_auto_keeps_good_expansions_without_a_second_call():
    res = sot.run(QUESTION, backend=sim())
    assert res.value["answer"] == expected_answer() and len(res.calls) == 5
    assert not any(ev.kind == "program.sot.retry" for ev in res.trace)


@pytest.mark.parametrize("text, index, reason", [
    ("", 1, "empty"), (" . ", 1, "empty"), ("Sleep.", 1, "empty"),
    ("2. Dark room.\n3. Coffee.", 1, "copied the skeleton"),
    ("Keep a fixed bedtime every day.", 1, None), ("1. Fixed schedule: go to bed at ten.", 1, None),
])
def test_weak_reason(text, index, reason):
    from epic_kernel.programs.sot import weak_reason

    assert weak_reason(text, index) == reason


def test_the_result_prints_its_answer_with_line_breaks():
    from IPython.lib.pretty import pretty

    out = sot(QUESTION, backend=sim())
    assert isinstance(out, dict) and out == {**out}                  # still a plain dict for code
    text = pretty(out)
    assert text.startswith("sot answer (4 points expanded in parallel") and "\\n" not in text
    assert text.endswith(expected_answer()) and text.count("\n") == 4
    direct = sot(QUESTION, backend=sim(skeleton="Sleep."))
    assert pretty(direct).startswith("sot answer (answered directly")
