"""Nested tool use (`epic_kernel.programs.tools`): the tools, parsing replies, multi-level chains,
parallel sub-questions, tool errors as observations, and the depth limit."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from epic_kernel import run
from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs import answer_all, answer_with_tools
from epic_kernel.programs.tools import calculator, evaluate_arithmetic, lookup, parse_answer, parse_calls


def results(prompt: str) -> list[str]:
    return re.findall(r"^RESULT: (.*)$", prompt, re.MULTILINE)


def model(script, log: list | None = None, latency=0.02) -> SimBackend:
    """A sim whose reply is `script(question, results_so_far, prompt)`."""
    def reply(request, m):
        prompt = request.messages[-1]["content"]
        if log is not None:
            log.append(prompt)
        return script(m.group(1), results(prompt), prompt)

    return SimBackend(answers=[(r"\nQuestion: ([^\n]*)\n", reply)], latency=latency)


def capital_population(question, seen, prompt):
    """Two levels: the capital, then its population, then the answer."""
    country = question.split()[-1].rstrip("?")
    if not seen:
        return f"CALL lookup: capital of {country}"
    if len(seen) == 1:
        return f"CALL lookup: population of {seen[0]}"
    return f"ANSWER: {seen[1]}"


# ------------------------------------------------------------------------------- the tools
@pytest.mark.parametrize("expr, value", [("2*(3+4)", 14), ("7/2", 3.5), ("-3 + 10 // 3", 0), ("2^10", 1024),
                                         ("17 * 23 + 4", 395), ("2 ** -1", 0.5), (" 1.5 × 2 ", 3.0)])
def test_evaluate_arithmetic(expr, value):
    assert evaluate_arithmetic(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "x + 1", "abs(-1)", "(1).real", "2 ** 1000",
                                  "9 ** 9 ** 9", "[1, 2]", "1 +", "'a' * 3", "True + 1", ""])
def test_evaluate_arithmetic_rejects_everything_else(expr):
    with pytest.raises(ValueError):
        evaluate_arithmetic(expr)


def test_tools_are_async_and_raise_on_bad_input():
    assert asyncio.run(calculator("2*(3+4)")) == "14" and asyncio.run(calculator("1/4")) == "0.25"
    assert asyncio.run(lookup("  The capital of FRANCE? ")) == "Paris"
    with pytest.raises(ValueError, match="division by zero"):
        asyncio.run(calculator("1/0"))
    with pytest.raises(LookupError, match="no entry for 'capital of Atlantis'"):
        asyncio.run(lookup("capital of Atlantis"))


@pytest.mark.parametrize("reply, calls", [
    ("CALL calculator: 2*(3+4)", [("calculator", "2*(3+4)")]),
    ("Let me check.\ncall Lookup: capital of France \nCALL ask: why?", [("lookup", "capital of France"),
                                                                         ("ask", "why?")]),
    ("CALL lookup:\nCALL calculator 1+1", []),                     # empty input, no colon
    ("ANSWER: 14\nCALL calculator: 1+1", []),                      # an answer ends the reply
    ("The answer is 14.", []),
])
def test_parse_calls(reply, calls):
    assert parse_calls(reply) == calls


def test_parse_calls_keeps_at_most_max_calls_and_parse_answer():
    assert len(parse_calls("\n".join(f"CALL calculator: {k}" for k in range(9)), 3)) == 3
    assert parse_answer("Thinking...\nANSWER: Paris ") == "Paris"
    assert parse_answer(" Paris.\n") == "Paris."


# ------------------------------------------------------------------------------- chains
def test_multi_level_chain_feeds_each_result_to_the_next_call():
    log: list = []
    res = answer_with_tools.run("Population of the capital of Germany?", backend=model(capital_population, log))
    assert res.value == {"answer": "3878100", "depth_limited": False, "steps": [
        {"tool": "lookup", "input": "capital of Germany", "observation": "Berlin"},
        {"tool": "lookup", "input": "population of Berlin", "observation": "3878100"}]}
    assert [c.fn for c in res.calls] == ["llm", "run_tool", "llm", "run_tool", "llm"]
    assert all(a.end <= b.start for a, b in zip(res.calls, res.calls[1:], strict=False))   # a chain
    assert "CALL lookup: capital of Germany\nRESULT: Berlin\n" in log[1]
    assert "calculator:" in log[0] and "ask:" in log[0]


def sum_of_populations(question, seen, prompt):
    """The question is split into two sub-questions, each a two-level chain of its own."""
    if question.startswith("Population of the capital"):
        return capital_population(question, seen, prompt)
    if not seen:
        return ("CALL ask: Population of the capital of France?\n"
                "CALL ask: Population of the capital of Germany?")
    if len(seen) == 2:
        return f"CALL calculator: {seen[0]} + {seen[1]}"
    return f"ANSWER: {seen[2]}"


def test_nested_sub_questions_run_in_parallel():
    res = answer_with_tools.run("How many people live in both capitals?", backend=model(sum_of_populations))
    out = res.value
    assert out["answer"] == str(2102650 + 3878100) and out["depth_limited"] is False
    ask1, ask2, calc = out["steps"]
    assert (ask1["tool"], ask1["observation"]) == ("ask", "2102650")
    assert [s["observation"] for s in ask1["steps"]] == ["Paris", "2102650"]
    assert [s["observation"] for s in ask2["steps"]] == ["Berlin", "3878100"]
    assert calc == {"tool": "calculator", "input": "2102650 + 3878100", "observation": "5980750"}
    llms = [c for c in res.calls if c.fn == "llm"]
    assert len(llms) == 1 + 2 * 3 + 2                             # ask twice; 3 turns each; add; answer
    sub = llms[1:7]
    for a, b in zip(sub[0::2], sub[1::2], strict=True):          # the two sub-chains, turn by turn
        assert a.start < b.end and b.start < a.end
    assert llms[-2].start >= max(c.end for c in sub)


def test_independent_questions_overlap_and_match_sequential():
    questions = ["Population of the capital of France?", "Population of the capital of Japan?"]
    res = answer_all.run(questions, backend=model(capital_population))
    assert [o["answer"] for o in res.value] == ["2102650", "14187176"]
    first = [c for c in res.calls if c.fn == "llm"][:2]
    assert first[0].start < first[1].end and first[1].start < first[0].end
    seq = answer_all.run(questions, backend=model(capital_population), strategy="sequential")
    assert seq.value == res.value
    assert all(a.end <= b.start for a, b in zip(seq.calls, seq.calls[1:], strict=False))


def test_tool_errors_become_observations():
    def script(question, seen, prompt):
        plan = ["CALL calculator: 2 * (3 + ", "CALL lookup: capital of Atlantis", "CALL search: anything",
                "CALL calculator: 1/0", "CALL broken: x", "CALL calculator: 2*(3+4)"]
        return plan[len(seen)] if len(seen) < len(plan) else f"ANSWER: {seen[-1]}"

    async def broken(text):
        raise RuntimeError("tool crashed")

    tools = {"calculator": calculator, "lookup": lookup, "broken": broken}
    out = answer_with_tools("What is 2*(3+4)?", tools=tools, max_depth=6, backend=model(script))
    obs = [s["observation"] for s in out["steps"]]
    assert out["answer"] == "14" and obs[-1] == "14"
    assert obs[0].startswith("Error: calculator failed: not an arithmetic expression")
    assert obs[1] == "Error: lookup failed: no entry for 'capital of Atlantis'"
    assert obs[2] == "Error: unknown tool 'search'; the tools are calculator, lookup, broken"
    assert obs[3] == "Error: calculator failed: division by zero"
    assert obs[4] == "Error: broken failed: tool crashed"


def test_depth_limit():
    log: list = []

    def stubborn(question, seen, prompt):
        return "CALL calculator: 1+1"

    res = answer_with_tools.run("Loop forever?", max_depth=2, backend=model(stubborn, log))
    assert res.value["depth_limited"] is True and res.value["answer"] == ""
    assert len(res.value["steps"]) == 2 and len([c for c in res.calls if c.fn == "llm"]) == 3
    assert "You cannot call tools any more" in log[-1] and "You cannot" not in log[0]

    def polite(question, seen, prompt):
        return "ANSWER: 2" if "cannot call tools" in prompt else "CALL calculator: 1+1"

    out = answer_with_tools("Add?", max_depth=1, backend=model(polite))
    assert out == {"answer": "2", "depth_limited": False,
                   "steps": [{"tool": "calculator", "input": "1+1", "observation": "2"}]}


def test_ask_is_not_offered_at_the_last_level():
    log: list = []

    def asker(question, seen, prompt):
        return "CALL ask: sub?" if not seen else f"ANSWER: {seen[0]}"

    out = answer_with_tools("Top?", max_depth=1, backend=model(asker, log))
    assert out["answer"].startswith("Error: unknown tool 'ask'")
    assert "ask:" not in log[0]


def test_called_from_epic_code_and_examples_run():
    src = "answer_with_tools('Population of the capital of Spain?')['answer']"
    assert run(src, backend=model(capital_population), namespace={}).value == "3460491"
    path = Path(__file__).parent.parent / "examples" / "nested_tools.py"
    res = run(path.read_text(), backend="sim", namespace={}, filename=str(path))    # unscripted
    assert len(res.value) == 3 and all(r["tool_calls"] == 0 for r in res.value)
