"""The reduction recorder (runtime/recorder.py) and the stepper's renderings (widgets/_stepper.py):
what the stepper shows at step k must be exactly the evaluator's state there, rebuilt from plain data."""

from __future__ import annotations

import json

import pytest
from epic_kernel.widgets import Stepper, stepper_html, stepper_text

from epic_kernel import EpicError, run
from epic_kernel.llm.sim import SimBackend
from epic_kernel.runtime.evaluator import STRATEGIES
from epic_kernel.runtime.recorder import Recorder, iter_states, state_at

BRANCH = '''mood = "calm"
a = llm("Name a colour.")
if mood == "angry":
    reply = llm("Write an apology.")
else:
    reply = llm("Say something kind about " + a)
reply
'''

LOOP = '''total = 0
for i in range(200):
    total += i
total
'''


def recorded(src: str, **kw):
    rec = Recorder(max_steps=kw.pop("max_steps", 3000))
    res = run(src, backend=kw.pop("backend", "sim"), recorder=rec, **kw)
    return res, rec.recording(source=src)


def rule_steps(recording: dict) -> list[str]:
    return [s["r"] for s in recording["steps"] if s["r"] in ("beta", "delta", "dispatch", "resolve", "project")]


def test_recording_follows_the_evaluators_own_trace():
    res, r = recorded(BRANCH)
    trace = [ev.data["rule"] for ev in res.trace if ev.kind == "step"]
    assert rule_steps(r) == trace and len(trace) == res.steps
    assert r["total"] == len(r["steps"]) and not r["truncated"]
    # the untaken branch's call is never a node, never a call
    assert not any("apology" in c[3] for c in r["calls"])
    assert [c[1] for c in r["calls"]] == ["llm", "llm"]


def test_recording_is_plain_json():
    _res, r = recorded(BRANCH)
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_node_about_to_fire_is_the_one_the_strategy_takes_from_the_queue(strategy):
    res, r = recorded(BRANCH, strategy=strategy)
    plain = run(BRANCH, backend="sim", strategy=strategy)
    assert res.value == plain.value                  # recording changes nothing about the run
    for k, state in enumerate(iter_states(r)):
        if k == len(r["steps"]):
            break
        step = r["steps"][k]
        if step["r"] == "resolve":                   # a call answers: it was in flight
            assert step["c"] in state["flight"]
            continue
        assert step["n"] in state["queue"]
        if strategy == "opportunistic":
            assert step["n"] == state["queue"][0]    # FIFO
        elif strategy in ("sequential", "opportunistic-dfs"):
            assert step["n"] == state["queue"][-1]   # LIFO
    end = state_at(r, len(r["steps"]))
    assert end["queue"] == [] and end["parked"] == {} and end["flight"] == []


def test_calls_are_in_flight_from_dispatch_to_resolve_and_waiting_nodes_name_what_they_wait_for():
    _res, r = recorded(BRANCH)
    nodes = r["nodes"]
    kinds = [s["r"] for s in r["steps"]]
    first_dispatch = kinds.index("dispatch")
    first_resolve = kinds.index("resolve")
    assert first_dispatch < first_resolve
    for k in range(first_dispatch + 1, first_resolve + 1):
        assert state_at(r, k)["flight"] == [1]
    assert state_at(r, first_resolve + 1)["flight"] == []
    # before the colour arrives, the prompt that needs it waits on the llm call's output
    parked = state_at(r, first_resolve)["parked"]
    waiting = {nodes[n][1]: label for n, (_producer, label) in parked.items()}
    assert any("a)" in label for label in waiting.values()), waiting
    producers = {producer for producer, _label in parked.values()}
    assert r["steps"][first_dispatch]["n"] in producers
    # the resolve's answer shows up as a bound value
    bound = state_at(r, first_resolve + 1)["bound"]
    assert r["steps"][first_resolve]["n"] in bound


def test_stepping_back_is_exact():
    """Any state rebuilt from scratch equals the one reached by stepping forward through all others."""
    _res, r = recorded(BRANCH, strategy="random", seed=3)
    forward = [json.loads(json.dumps(s, sort_keys=True)) for s in iter_states(r)]
    for k in reversed(range(len(forward))):
        again = json.loads(json.dumps(state_at(r, k), sort_keys=True))
        assert again == forward[k]


def test_long_runs_are_capped_and_say_so():
    res, r = recorded(LOOP, max_steps=50)
    assert res.value == sum(range(200))
    assert r["truncated"] and len(r["steps"]) == 50 and r["total"] > 50
    _res, full = recorded(LOOP, max_steps=100_000)     # the cap stops recording, not counting
    assert not full["truncated"] and r["total"] == full["total"] == len(full["steps"])
    assert [s["r"] for s in r["steps"]] == [s["r"] for s in full["steps"][:50]]
    html = stepper_html(r)
    assert "too long to record in full" in html and f"first 50 of its {r['total']} positions" in html
    assert "too long to record in full" in stepper_text(r) and "[truncated]" in stepper_text(r)


def test_a_runaway_loop_reports_its_true_call_count_not_the_recorded_one():
    src = "n = 0\nfor i in range(60):\n    n += len(llm(f'Say {i}.', max_tokens=2))\nn\n"
    res, r = recorded(src, max_steps=40)
    assert r["truncated"] and len(r["calls"]) < 60
    assert r["calls_total"] == len(res.calls) == 60
    assert "60 calls" in stepper_text(r) and "60 calls" in stepper_html(r)


def test_one_step_count_everywhere():
    """The stepper's steps are the evaluator's (what --compare and the live view show); waits are
    counted apart."""
    res, r = recorded(BRANCH)
    assert r["rule_steps"] == res.steps
    waits = sum(s["r"] not in ("beta", "delta", "dispatch", "resolve", "project") for s in r["steps"])
    assert f"{res.steps} steps (and {waits} waits" in stepper_text(r)


POEM = '''colour = llm("Name a colour.")
words = ", ".join(["a", colour])
llm("Write a poem about " + colour)
'''


def test_the_term_folds_constants_and_host_names_into_their_uses():
    res, r = recorded(POEM)
    rows = [text for _d, text, *_ in r["ir"]]
    assert any(":= %add('Write a poem about ', v" in t for t in rows), rows
    assert any(":= llm('Name a colour.')" in t for t in rows), rows
    assert not any(t.split(" := ")[-1] in ("%add", "global llm") for t in rows)     # no rows of their own
    values = [v for s in r["steps"] for _n, v in s.get("b", ())]
    assert not any(" at 0x" in v for v in values), values
    assert "', '.join  (a method)" in values
    assert not any(v.startswith("(?") or "?, " in v for v in values)          # no bare "(?, ?, ?)"


def test_loop_plumbing_is_marked_and_the_users_calls_are_not():
    src = '''found = ""
for w in ["a", "b", "c"]:
    x = llm("Is " + w + " good?")
    if len(x) > 2:
        found = x
        break
found
'''
    _res, r = recorded(src)
    plumbing = {text for _d, text, _l, p in r["ir"] if p}
    assert any("%next(" in t for t in plumbing) and any("%loop_again(" in t for t in plumbing)
    assert not any("llm(" in t or "%add(" in t for t in plumbing)
    marked = [s for s in r["steps"] if s["n"] >= 0 and r["ir"][r["nodes"][s["n"]][3]][3]]
    assert 0 < len(marked) < len(r["steps"])


def test_a_failed_and_an_interrupted_run_are_labelled():
    _res, r = recorded(BRANCH)
    assert "[done]" in stepper_text(r)
    assert "[failed]" in stepper_text({**r, "state": "failed"})
    html = stepper_html({**r, "state": "cancelled"})
    assert 'data-state="interrupted"' in html and "was interrupted" in html


def test_streams_resolve_chunk_by_chunk_and_end_out_of_flight():
    src = 'parts = [c for c in llm("Write three words.", stream=True)]\n"".join(parts)\n'
    res, r = recorded(src, backend=SimBackend())
    resolves = [s for s in r["steps"] if s["r"] == "resolve"]
    assert len(resolves) >= 2 and all(s["c"] == 1 for s in resolves)
    assert state_at(r, len(r["steps"]))["flight"] == []
    assert rule_steps(r) == [ev.data["rule"] for ev in res.trace if ev.kind == "step"]


def test_stepper_html_carries_the_recording_safely_and_a_static_table():
    src = 'x = llm("</script><b>hi</b>")\nx\n'
    _res, r = recorded(src)
    html = Stepper(r)._repr_mimebundle_()["text/html"]
    data = html.split('class="epic-stepper-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data) == r                     # the prompt cannot close the script element
    assert html.count("</script>") == 2 and "epicStepper(" in html
    assert html.count("<tr data-rule=") == len(r["steps"])         # the script-free fallback
    assert "&lt;/script&gt;" in html


def test_recorder_program_errors_are_steps_too():
    src = 'x = llm("a")\ny = undefined_name + x\ny\n'
    rec = Recorder()
    with pytest.raises(EpicError):
        run(src, backend="sim", recorder=rec)
    r = rec.recording(source=src)
    assert r["steps"] and any(s["r"] == "dispatch" for s in r["steps"])


def test_states_are_independent_snapshots():
    _res, r = recorded(BRANCH)
    states = list(iter_states(r))
    assert len(states) == len(r["steps"]) + 1
    assert states[0]["flight"] == [] and any(s["flight"] for s in states)
    assert states[-1]["bound"] != states[0]["bound"]
