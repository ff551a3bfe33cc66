"""Nested tool use as an epic program: the model answers, or calls tools whose results it reads.

Each turn the model either answers (`ANSWER: ...`) or calls tools, one line per call:

    CALL calculator: 2*(3+4)
    CALL lookup: capital of France
    CALL ask: What is the population of Paris?

The tools run, their results are added to the transcript as observations, and the model is asked
again, up to `max_depth` rounds. `ask` is the nested case: the sub-question gets its own chain of
turns and tool calls (with one level less), and its answer is the observation. Calls written in the
same reply do not depend on each other, so the evaluator runs them together, sub-chains included;
`answer_all` runs independent questions side by side the same way. No `gather` anywhere.

    from epic_kernel.programs import answer_with_tools
    out = answer_with_tools("What is 2*(3+4)?", backend="sim")   # from Python: runs the evaluator
    out["answer"], out["steps"], out["depth_limited"]

Tools are `async def name(text) -> str` Python functions (plain functions work too), in a dict
{name: function}; `tools=None` means `TOOLS`: a safe `calculator` (arithmetic parsed with `ast`,
never `eval`) and `lookup` in the small knowledge table `KNOWLEDGE`. A tool that fails (a bad
expression, an unknown key, an unknown tool, any exception) gives an "Error: ..." observation that
the model reads and can react to; the run goes on.

Options
    max_depth   rounds of tool calls in a chain; a sub-question gets one less, and `ask` is offered
                only while a sub-chain could still call a tool. When the rounds are used up the
                model is asked for its answer without tools; if it still calls one, "answer" is ""
                and "depth_limited" is True.
    max_calls   tool calls read from one reply (the rest are dropped).
    max_tokens  the budget of every model turn.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import operator
import re

from ..llm.builtin import llm
from ._program import emit_event, program

__all__ = ["KNOWLEDGE", "TOOLS", "answer_all", "answer_with_tools", "calculator", "evaluate_arithmetic",
           "lookup", "parse_calls", "parse_answer", "run_tool"]

PROMPT = (
    "Answer the question. You may use tools. To call a tool, reply with one line per call, exactly\n"
    "CALL <tool>: <input>\n"
    "and nothing else; you will see each result and can then call more tools or answer. "
    "To answer, reply with one line\nANSWER: <your answer>\n\n"
    "Tools:\n{tools}\n\n"
    "Question: {question}\n"
)
NO_MORE_TOOLS = "You cannot call tools any more. Reply with ANSWER: <your answer>.\n"
TOOL_HELP = {
    "calculator": "calculator: evaluates arithmetic such as 2*(3+4)/5 (+ - * / // % ** and parentheses)",
    "lookup": "lookup: looks up a fact, such as 'capital of France' or 'population of Paris'",
    "ask": "ask: answers a sub-question on its own (with tools); use it for independent parts",
}

# A small local knowledge table for `lookup`: keys are lower case, without a leading "the".
KNOWLEDGE = {
    "capital of france": "Paris",
    "capital of germany": "Berlin",
    "capital of italy": "Rome",
    "capital of japan": "Tokyo",
    "capital of spain": "Madrid",
    "population of paris": "2102650",
    "population of berlin": "3878100",
    "population of rome": "2755309",
    "population of tokyo": "14187176",
    "population of madrid": "3460491",
    "height of the eiffel tower in m": "330",
    "boiling point of water in c": "100",
    "speed of light in m/s": "299792458",
    "days in a leap year": "366",
    "author of hamlet": "William Shakespeare",
}


# ----------------------------------------------------------------------------------- the program
@program
def answer_with_tools(question, tools=None, max_depth=3, max_calls=4, max_tokens=128):
    """Answer `question`, letting the model call tools; see the module docstring for the options.

    Returns {"answer": str, "steps": [{"tool", "input", "observation"(, "steps")}],
    "depth_limited": bool}, the steps in call order ("steps" inside a step: the sub-question's own)."""
    tools = TOOLS if tools is None else tools
    emit_event("program.tools.question", text=question)
    out = chain(question, tools, [], max_depth, max_depth, max_calls, max_tokens)
    emit_event("program.tools.answer", text=out["answer"])
    return out


@program
def answer_all(questions, tools=None, max_depth=3, max_calls=4, max_tokens=128):
    """`answer_with_tools` for each question; independent questions run side by side."""
    return [answer_with_tools(q, tools, max_depth, max_calls, max_tokens) for q in questions]


@program
def chain(question, tools, steps, rounds_left, max_depth, max_calls, max_tokens):
    """One model turn on the transcript so far, then (if it called tools) their results and the
    next turn, until the model answers or `rounds_left` is spent."""
    reply = llm(transcript(question, tools, steps, rounds_left, max_depth), max_tokens=max_tokens)
    calls = parse_calls(reply, max_calls)
    if not calls:
        return {"answer": parse_answer(reply), "steps": steps, "depth_limited": False}
    if rounds_left <= 0:
        return {"answer": "", "steps": steps, "depth_limited": True}
    observations = [observe(call, tools, max_depth, max_calls, max_tokens) for call in calls]
    return chain(question, tools, steps + observations, rounds_left - 1, max_depth, max_calls, max_tokens)


@program
def observe(call, tools, max_depth, max_calls, max_tokens):
    """The step of one tool call: a sub-question's own chain for `ask`, else the tool's result."""
    name, text = call
    emit_event("program.tools.call", tool=name, input=text)
    if name == "ask" and max_depth > 1:
        sub = chain(text, tools, [], max_depth - 1, max_depth - 1, max_calls, max_tokens)
        answer = sub["answer"] if sub["answer"] else "Error: the sub-question got no answer"
        return {"tool": name, "input": text, "observation": answer, "steps": sub["steps"]}
    return {"tool": name, "input": text, "observation": run_tool(tools, name, text)}


# --------------------------------------------------------- plain Python helpers (called inline)
_CALL = re.compile(r"^[ \t]*CALL[ \t]+([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*?)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_ANSWER = re.compile(r"^\s*ANSWER\s*:\s*", re.MULTILINE | re.IGNORECASE)


def parse_calls(reply: str, max_calls: int = 4) -> list[tuple[str, str]]:
    """The (tool, input) of each "CALL tool: input" line of a reply, in order, at most `max_calls`;
    tool names are lower-cased. Lines with an empty input, and lines after an "ANSWER:", are dropped."""
    reply = _ANSWER.split(reply, maxsplit=1)[0]
    calls = [(m.group(1).lower(), m.group(2)) for m in _CALL.finditer(reply) if m.group(2)]
    return calls[:max_calls]


def parse_answer(reply: str) -> str:
    """The text after the last "ANSWER:", else the whole reply, stripped."""
    parts = _ANSWER.split(reply)
    return parts[-1].strip()


def transcript(question: str, tools: dict, steps: list, rounds_left: int, max_depth: int) -> str:
    """The prompt of a turn: instructions, tools, question, then each call and its result."""
    names = [*tools, "ask"] if max_depth > 1 else list(tools)
    help_lines = "\n".join(TOOL_HELP.get(name, name) for name in names)
    text = PROMPT.format(tools=help_lines, question=question)
    for step in steps:
        text += f"CALL {step['tool']}: {step['input']}\nRESULT: {step['observation']}\n"
    return text + (NO_MORE_TOOLS if rounds_left <= 0 else "")


async def run_tool(tools: dict, name: str, text: str) -> str:
    """The observation of one tool call: its result as text, or "Error: ..." (never an exception)."""
    if name not in tools:
        return f"Error: unknown tool {name!r}; the tools are {', '.join(tools)}"
    try:
        result = tools[name](text)
        if inspect.isawaitable(result):
            result = await result
    except Exception as e:  # noqa: BLE001 - a failing tool is an observation for the model
        return f"Error: {name} failed: {e}"
    return str(result)


def _tool_call_text(tools: dict, name: str, text: str) -> str:
    """How a tool call reads in the call table: `lookup("capital of Germany")`."""
    return f"{name}({json.dumps(text, ensure_ascii=False)})"


run_tool.__epic_preview__ = _tool_call_text        # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------- the tools
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPONENT = 100
_MAX_MAGNITUDE = 10 ** 100


def evaluate_arithmetic(expression: str) -> int | float:
    """The value of an arithmetic expression: numbers, + - * / // % **, parentheses; nothing else
    (names, calls, attributes raise ValueError). The tree is walked here: nothing is `eval`ed."""
    expression = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from e

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
                raise ValueError(f"exponent too large: {right}")
            value = _BINARY[type(node.op)](left, right)
            if isinstance(value, complex) or abs(value) > _MAX_MAGNITUDE:
                raise ValueError("result out of range")
            return value
        raise ValueError(f"not allowed in arithmetic: {ast.unparse(node)!r}")

    return walk(tree.body)


async def calculator(expression: str) -> str:
    """The calculator tool: the value of an arithmetic expression, as text ("14", "2.5")."""
    try:
        value = evaluate_arithmetic(expression)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("result out of range")
        if value.is_integer():
            return str(int(value))
        return f"{value:.10g}"
    return str(value)


def _key(text: str) -> str:
    key = " ".join(text.lower().strip().strip("?.!'\"").split())
    return key[4:] if key.startswith("the ") else key


async def lookup(query: str) -> str:
    """The lookup tool: the entry of `KNOWLEDGE` for the query (case, spaces and a leading "the"
    do not matter)."""
    key = _key(query)
    if key not in KNOWLEDGE:
        raise LookupError(f"no entry for {query.strip()!r}")
    return KNOWLEDGE[key]


TOOLS = {"calculator": calculator, "lookup": lookup}
