"""What a call's row says: the part of a prompt that tells it from the calls around it (not a shared
few-shot header), a tool call as the call it stands for, and a function by its name, never by an
address that changes on every run."""

from __future__ import annotations

import re

from epic_kernel import run
from epic_kernel.llm import SimBackend
from epic_kernel.llm.shown_prompt import SHARED_MIN, note_prompt, shared_prefix, shown_from
from epic_kernel.runtime.calltable import call_row
from epic_kernel.runtime.events import CallRecord

HEADER = "Answer in one word. Examples:\nQ: colour of grass?\nA: green\nQ: colour of snow?\nA: white\n"


def _rows(res):
    return [call_row(c, res.start, res.start)["prompt"] for c in res.calls]


def test_shared_prefix_and_where_to_show_from():
    assert shared_prefix("abcdef", "abcxyz") == 3
    assert shared_prefix("", "abc") == 0 and shared_prefix("same", "same") == 4
    text = HEADER + "Q: colour of the sky?\n"
    assert text[shown_from(text, len(HEADER) + 13):] == "Q: colour of the sky?\n"
    assert text[shown_from(text, len(text)):] == "Q: colour of the sky?\n"      # all head: its last line


def test_few_shot_prompts_are_shown_by_their_question():
    src = 'qs = ["sky", "coal", "blood"]\n[llm(HEADER + f"Q: colour of {q}?\\n") for q in qs]'
    res = run(src, backend=SimBackend(latency=0.01), namespace={"HEADER": HEADER}, cache=False)
    assert _rows(res) == ["…Q: colour of sky?", "…Q: colour of coal?", "…Q: colour of blood?"]
    assert all(c.args_preview.startswith("Answer in one word.") for c in res.calls)   # the call's name is unchanged
    twice = run('[llm(HEADER + f"Q: colour of {q}?\\n") for q in ["sky", "coal", "coal"]]',
                backend=SimBackend(latency=0.01), namespace={"HEADER": HEADER}, cache=False)
    assert _rows(twice) == ["…Q: colour of sky?", "…Q: colour of coal?", "…Q: colour of coal?"]


def test_prompts_without_a_long_shared_head_show_their_start():
    res = run('[llm(f"One fact about {t}.") for t in ["tides", "owls"]]', backend=SimBackend(latency=0.01),
              cache=False)
    assert _rows(res) == ["One fact about tides.", "One fact about owls."]
    rec, other = CallRecord(id=2, fn="llm", site_line=1, start=0.0), CallRecord(id=1, fn="llm", site_line=1, start=0.0)
    note_prompt([other], other, "x" * (SHARED_MIN - 1) + "a")
    note_prompt([other, rec], rec, "x" * (SHARED_MIN - 1) + "b")
    assert rec.prompt_shown == "" and other.prompt_shown == ""


def test_tool_calls_read_as_calls():
    def reply(request, m):
        seen = re.findall(r"^RESULT: (.*)$", request.messages[-1]["content"], re.MULTILINE)
        return "CALL lookup: capital of Germany" if not seen else f"ANSWER: {seen[0]}"
    sim = SimBackend(answers=[(r"\nQuestion: ([^\n]*)\n", reply)], latency=0.01)
    res = run('answer_with_tools("Capital of Germany?")["answer"]', backend=sim, cache=False)
    assert res.value == "Berlin"
    tool = [c for c in res.calls if c.fn == "run_tool"]
    assert [call_row(c, res.start, res.start)["prompt"] for c in tool] == ['lookup("capital of Germany")']
    first, second = [c for c in res.calls if c.fn == "llm"]
    assert call_row(first, res.start, res.start)["prompt"] == "…Question: Capital of Germany?"
    assert call_row(second, res.start, res.start)["prompt"].startswith("…CALL lookup: capital of Germany")


def test_functions_in_arguments_show_by_name():
    async def work(fns, x):
        return x
    def helper(v):
        return v
    res = run("work({'f': helper}, 1)", backend="sim", namespace={"work": work, "helper": helper}, cache=False)
    assert res.calls[0].args_preview == "{'f': helper}, 1"
    assert "0x" not in res.calls[0].args_preview
