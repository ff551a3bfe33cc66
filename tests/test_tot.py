"""Tree-of-Thoughts on the Game of 24 (`epic_kernel.programs.tot`): parsing and checking proposals,
the level-by-level BFS, parallel dispatch within a level, and the ways to call it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from epic_kernel import run
from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs import tot24
from epic_kernel.programs.tot import apply_step, fmt, initial_state, parse_proposals, parse_step, parse_value

# Scripted proposals per state (the numbers left, increasing). Lines the program must skip:
# "4 + 9 = 14" (wrong sum), "7 * 2 = 14" (numbers not left), and prose.
PROPOSALS = {
    "4 9 10 13": "13 - 9 = 4 (left: 4 4 10)\n10 - 4 = 6 (left: 6 9 13)\n4 + 9 = 14 (left: 10 13 14)\n"
                 "7 * 2 = 14 (left: 4 10 14)\nLet me think about this.\n13 + 10 = 23 (left: 4 9 23)",
    "4 4 10": "10 - 4 = 6 (left: 4 6)\n4 + 4 = 8 (left: 8 10)",
    "6 9 13": "13 - 9 = 4 (left: 4 6)\n9 + 6 = 15 (left: 13 15)",
    "4 9 23": "23 - 9 = 14 (left: 4 14)",
    "4 6": "4 * 6 = 24 (left: 24)\n6 - 4 = 2 (left: 2)",
    "8 10": "8 + 10 = 18 (left: 18)",
    "13 15": "15 - 13 = 2 (left: 2)",
}
VALUES = {"4 4 10": "sure", "6 9 13": "likely", "4 9 23": "impossible", "4 6": "4 * 6 = 24\nsure",
          "8 10": "likely", "13 15": "impossible"}


def sim(log: list | None = None, proposals=PROPOSALS, latency=0.02) -> SimBackend:
    def propose(request, m):
        if log is not None:
            log.append(("propose", m.group(1)))
        return proposals.get(m.group(1), "")

    def value(request, m):
        if log is not None:
            log.append(("value", m.group(1)))
        return VALUES.get(m.group(1), "impossible")

    return SimBackend(answers=[
        (r"Input: ([^\n]+)\nPossible next steps:\n$", propose),
        (r"^Evaluate if given numbers can reach 24.*\n([^\n]+)\n$", value),
    ], latency=latency)


# ------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("line, step", [
    ("4 + 8 = 12 (left: 6 12)", (4, "+", 8, 12)),
    ("  13 - 9 = 4 (left: 4 4 10)", (13, "-", 9, 4)),
    ("1. 8 / 3 = 8/3 (left: 8/3 5)", (8, "/", 3, Fraction(8, 3))),
    ("- 6 * 4 = 24", (6, "*", 4, 24)),                 # no "(left: ...)" is fine
    ("3 x 8 = 24 (left: 24)", (3, "*", 8, 24)),
    ("1.5 * 16 = 24", (Fraction(3, 2), "*", 16, 24)),
    ("Possible next steps:", None), ("4 + = 12", None), ("", None), ("the answer is 24", None),
])
def test_parse_step(line, step):
    assert parse_step(line) == step


def test_apply_step_checks_operands_and_arithmetic():
    state = initial_state("13 4 10 9")
    assert state["left"] == ["4", "9", "10", "13"]
    child = apply_step(state, (13, "-", 9, 4))
    assert child["left"] == ["4", "4", "10"] and child["steps"] == ["13 - 9 = 4 (left: 4 4 10)"]
    assert apply_step(state, (4, "+", 9, 14)) is None           # wrong result
    assert apply_step(state, (7, "*", 2, 14)) is None           # operands not left
    assert apply_step(state, (4, "+", 4, 8)) is None            # only one 4 left
    assert apply_step(child, (4, "+", 4, 8))["left"] == ["8", "10"]
    assert apply_step(state, (4, "/", 0, 0)) is None


def test_parse_proposals_skips_malformed_and_repeated_lines():
    state = initial_state([4, 9, 10, 13])
    children = parse_proposals(PROPOSALS["4 9 10 13"] + "\n9 + 4 = 13 (left: 10 13 13)\n4 + 9 = 13", state)
    assert [c["left"] for c in children] == [["4", "4", "10"], ["6", "9", "13"], ["4", "9", "23"],
                                             ["10", "13", "13"]]      # "4 + 9 = 13" repeats a state


@pytest.mark.parametrize("reply, score", [("sure", 20.0), ("10 + 14 = 24\nsure", 20.0), ("Likely.", 1.0),
                                          ("impossible", 0.001), ("sure? no: impossible", 0.001), ("", 0.0)])
def test_parse_value(reply, score):
    assert parse_value(reply) == score


def test_fmt():
    assert [fmt(Fraction(x)) for x in ("12", "-3", "3/2", "8/3")] == ["12", "-3", "1.5", "8/3"]


# ------------------------------------------------------------------------------- the search
def test_tot24_solves_level_by_level():
    log: list = []
    res = tot24.run([4, 9, 10, 13], breadth=2, backend=sim(log))
    out = res.value
    assert out["solved"] is True and out["score"] == 20.0
    assert out["steps"] == ["13 - 9 = 4 (left: 4 4 10)", "10 - 4 = 6 (left: 4 6)", "4 * 6 = 24 (left: 24)"]
    assert out["expression"] == "(13 - 9) * (10 - 4) = 24"
    assert [level["proposed"] for level in out["levels"]] == [3, 4, 4]
    assert out["levels"][0]["kept"] == [["4", "4", "10"], ["6", "9", "13"]]     # sure, likely; not 4 9 23
    assert out["explored"] == 11
    # level 1: one proposal, three values; level 2: two proposals, four values; level 3: two
    # proposals, and the states with one number left are valued without a model call
    kinds = [kind for kind, _ in log]
    assert kinds == ["propose"] + ["value"] * 3 + ["propose"] * 2 + ["value"] * 4 + ["propose"] * 2
    assert len(res.calls) == 12


def test_calls_within_a_level_overlap_and_levels_follow_each_other():
    res = tot24.run([4, 9, 10, 13], breadth=2, backend=sim())
    calls = res.calls
    groups = [calls[0:1], calls[1:4], calls[4:6], calls[6:10], calls[10:12]]
    for group in groups:
        assert max(c.start for c in group) < min(c.end for c in group)      # all in flight at once
    for before, after in zip(groups, groups[1:], strict=False):
        assert min(c.start for c in after) >= max(c.end for c in before)    # the next level waits


def test_sequential_gives_the_same_result():
    want = tot24([4, 9, 10, 13], breadth=2, backend=sim())
    res = tot24.run([4, 9, 10, 13], breadth=2, backend=sim(), strategy="sequential")
    assert res.value == want
    assert all(a.end <= b.start for a, b in zip(res.calls, res.calls[1:], strict=False))


def test_unsolvable_returns_the_best_partial_path():
    proposals = {**PROPOSALS, "4 6": "6 - 4 = 2 (left: 2)"}
    out = tot24([4, 9, 10, 13], breadth=2, backend=sim(proposals=proposals))
    assert out["solved"] is False and out["expression"] is None
    assert out["left"] in (["2"], ["18"])


def test_only_malformed_proposals_keep_the_root():
    res = tot24.run("4 9 10 13", backend=sim(proposals={"4 9 10 13": "I think 4 + 9 is 13.\nno idea"}))
    out = res.value
    assert out["solved"] is False and out["steps"] == [] and out["left"] == ["4", "9", "10", "13"]
    assert [level["proposed"] for level in out["levels"]] == [0, 0, 0] and len(res.calls) == 1


def test_n_evaluate_sums_samples():
    log: list = []
    out = tot24([4, 9, 10, 13], breadth=1, depth=1, n_evaluate=3, backend=sim(log))
    assert out["score"] == 60.0 and [k for k, _ in log].count("value") == 9


def test_called_from_epic_code_and_example_runs():
    res = run("[tot24(n, breadth=2)['solved'] for n in [[4, 9, 10, 13], [4, 9, 10, 13]]]",
              backend=sim(), namespace={})
    assert res.value == [True, True] and len(res.calls) == 24
    assert res.calls[1].start < res.calls[0].end                  # the two searches run side by side
    path = Path(__file__).parent.parent / "examples" / "tot24.py"
    res = run(path.read_text(), backend="sim", namespace={}, filename=str(path))   # unscripted
    assert [r["solved"] for r in res.value] == [False, False]
    res = run(path.read_text(), backend=sim(), namespace={}, filename=str(path))
    assert res.value[0]["solved"] is True
