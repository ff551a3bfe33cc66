"""Tree-of-Thoughts (Yao et al., NeurIPS 2023) on the Game of 24, as an epic program.

The Game of 24: combine four numbers with + - * / (each number used once) to make 24. ToT searches
breadth-first: a state is the numbers still left (plus the steps that led there); at each level
every state of the frontier asks the model to *propose* next steps ("4 + 8 = 12 (left: 6 12)"), the
model *values* every new state (sure / likely / impossible that 24 is still reachable), and the
`breadth` best states are the next frontier. After `depth` levels (three for four numbers) a state
with the single number 24 left is a solution.

    from epic_kernel.programs import tot24
    out = tot24([4, 9, 10, 13], backend="sim")            # from Python: runs the evaluator
    out["solved"], out["steps"], out["expression"]

Epic code calls it the same way, without run options: `tot24([4, 9, 10, 13], breadth=5)`.

The search is written as plain loops over the frontier. The proposals of all frontier states do not
depend on each other, nor do the evaluations of all new states, so the evaluator dispatches each
group together (one batch on a local model); only the choice of the `breadth` best waits for a
whole level. An evaluation starts as soon as its own state exists, not when the level's last
proposal is back.

Options
    breadth      states kept per level (the paper's b = 5).
    depth        levels (three steps take four numbers down to one).
    n_evaluate   value samples per state, summed (the paper's 3; the first greedy, the rest sampled).
    max_tokens   the budget of every proposal and evaluation.

Proposals are read by `parse_step` (a regex for "a op b = c", with an optional "(left: ...)") and
checked in plain Python: both operands must be among the numbers left and c must equal a op b,
exactly (fractions, not floats). Wrong or malformed lines are skipped; the numbers left are computed,
not copied from the model. A state with one number left is valued exactly, without a model call.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ..llm.builtin import llm
from ._program import emit_event, program

__all__ = ["apply_step", "fmt", "initial_state", "parse_proposals", "parse_step", "parse_value",
           "tot24", "VALUE_SCORES"]

# The paper's prompts for the Game of 24 (src/tot/prompts/game24.py in the authors' repository),
# the value prompt's examples shortened.
PROPOSE_PROMPT = (
    "Input: 2 8 8 14\nPossible next steps:\n"
    "2 + 8 = 10 (left: 8 10 14)\n8 / 2 = 4 (left: 4 8 14)\n14 + 2 = 16 (left: 8 8 16)\n"
    "2 * 8 = 16 (left: 8 14 16)\n8 - 2 = 6 (left: 6 8 14)\n14 - 8 = 6 (left: 2 6 8)\n"
    "14 / 2 = 7 (left: 7 8 8)\n14 - 2 = 12 (left: 8 8 12)\n"
    "Input: {numbers}\nPossible next steps:\n"
)
VALUE_PROMPT = (
    "Evaluate if given numbers can reach 24 (sure/likely/impossible)\n"
    "10 14\n10 + 14 = 24\nsure\n"
    "11 12\n11 + 12 = 23\n12 - 11 = 1\n11 * 12 = 132\n11 / 12 = 0.91\nimpossible\n"
    "4 4 10\n4 + 4 + 10 = 8 + 10 = 18\n4 * 10 - 4 = 40 - 4 = 36\n(10 - 4) * 4 = 6 * 4 = 24\nsure\n"
    "5 7 8\n5 + 7 + 8 = 12 + 8 = 20\n(8 - 5) * 7 = 3 * 7 = 21\n"
    "I cannot obtain 24 now, but numbers are within a reasonable range\nlikely\n"
    "10 10 11\n10 + 10 + 11 = 31\n(11 - 10) * 10 = 10\n"
    "10 10 10 are all too big\nimpossible\n"
    "1 3 3\n1 * 3 * 3 = 9\n(1 + 3) * 3 = 12\n1 3 3 are all too small\nimpossible\n"
    "{numbers}\n"
)
VALUE_SCORES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}     # the paper's value map


# ----------------------------------------------------------------------------------- the program
@program
def tot24(numbers, breadth=5, depth=3, n_evaluate=1, max_tokens=256):
    """Solve the Game of 24 for `numbers` (a list, or a string such as "4 9 10 13") with ToT's BFS.

    Returns {"solved": bool, "steps": [str], "expression": str | None, "left": [str],
    "score": float, "levels": [{"proposed": int, "kept": [[str]]}], "explored": int}:
    the best state found and its path; "expression" only when it reaches 24."""
    root = initial_state(numbers)
    emit_event("program.tot.start", numbers=root["left"])
    frontier = [root]
    best = (0.0, root)
    levels = []
    for level in range(depth):
        candidates = [child for state in frontier for child in propose(state, max_tokens)]
        scores = [value(state, n_evaluate, max_tokens) for state in candidates]
        ranked = sorted([(-score, i) for i, score in enumerate(scores)])[:breadth]
        frontier = [candidates[i] for _, i in ranked]
        if ranked:
            best = (-ranked[0][0], frontier[0])
        levels.append({"proposed": len(candidates), "kept": [state["left"] for state in frontier]})
        emit_event("program.tot.level", level=level, proposed=len(candidates),
                   kept=[state["steps"] for state in frontier])
    score, state = best
    out = result(state, score, levels)
    emit_event("program.tot.answer", solved=out["solved"], steps=out["steps"])
    return out


@program
def propose(state, max_tokens):
    """The valid next states the model proposes from `state` (none once a single number is left)."""
    if len(state["left"]) < 2:
        return []
    reply = llm(PROPOSE_PROMPT.format(numbers=" ".join(state["left"])), max_tokens=max_tokens)
    return parse_proposals(reply, state)


@program
def value(state, n_evaluate, max_tokens):
    """How likely 24 is still reachable from `state`: the model's sure/likely/impossible, summed
    over `n_evaluate` samples; exact (no model call) when one number is left."""
    if len(state["left"]) == 1:
        return VALUE_SCORES["sure"] if is_24(state) else 0.0
    prompt = VALUE_PROMPT.format(numbers=" ".join(state["left"]))
    replies = [llm(prompt, max_tokens=max_tokens, temperature=0.0 if k == 0 else 0.7, seed=k)
               for k in range(n_evaluate)]
    return sum([parse_value(reply) for reply in replies])


# --------------------------------------------------------- plain Python helpers (called inline)
_NUM = r"-?\d+(?:\.\d+)?(?:/\d+)?"
_STEP = re.compile(rf"^\s*(?:[-*]\s*|\d+[.)]\s+)?({_NUM})\s*([-+*/×x÷−])\s*({_NUM})\s*=\s*({_NUM})"
                   r"(?:\s*\(left:\s*([^)]*)\))?", re.IGNORECASE)
_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "x": "*", "X": "*", "×": "*", "/": "/", "÷": "/"}


def fmt(x: Fraction) -> str:
    """A number as the model writes it: "12", "-3", "1.5", else "8/3"."""
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    return f"{float(x):g}" if d == 1 else f"{x.numerator}/{x.denominator}"


def number(text: str) -> Fraction:
    return Fraction(text)


def initial_state(numbers) -> dict:
    """The root state: {"left": ["4", "9", ...] (increasing), "exprs": same, "steps": []}."""
    items = numbers.split() if isinstance(numbers, str) else list(numbers)
    left = [fmt(v) for v in sorted(number(str(n)) for n in items)]
    return {"left": left, "exprs": list(left), "steps": []}


def parse_step(line: str) -> tuple[Fraction, str, Fraction, Fraction] | None:
    """(a, op, b, c) of a line such as "4 + 8 = 12 (left: 6 12)", else None."""
    m = _STEP.match(line)
    if not m:
        return None
    try:
        return number(m.group(1)), _OPS[m.group(2)], number(m.group(3)), number(m.group(4))
    except (ValueError, ZeroDivisionError):
        return None


def compute(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def apply_step(state: dict, step: tuple) -> dict | None:
    """The state after `step` if it is valid from `state` (operands among the numbers left, the
    result right), else None. The numbers left are computed here, whatever the model wrote, and kept
    in increasing order."""
    a, op, b, c = step
    if compute(a, op, b) != c:
        return None
    values = [number(x) for x in state["left"]]
    exprs = list(state["exprs"])
    if a not in values:
        return None
    i = values.index(a)
    ea = exprs[i]
    del values[i], exprs[i]
    if b not in values:
        return None
    j = values.index(b)
    eb = exprs[j]
    del values[j], exprs[j]
    pairs = sorted(zip([*values, c], [*exprs, f"({ea} {op} {eb})"], strict=True), key=lambda p: p[0])
    left = [fmt(v) for v, _ in pairs]
    text = f"{fmt(a)} {op} {fmt(b)} = {fmt(c)} (left: {' '.join(left)})"
    return {"left": left, "exprs": [e for _, e in pairs], "steps": state["steps"] + [text]}


def parse_proposals(reply: str, state: dict) -> list[dict]:
    """The valid, distinct next states in a propose reply, in order. Other lines are skipped."""
    children: list[dict] = []
    seen: set[tuple[str, ...]] = set()
    for line in reply.splitlines():
        step = parse_step(line)
        child = apply_step(state, step) if step is not None else None
        if child is not None:
            key = tuple(sorted(child["left"]))
            if key not in seen:
                seen.add(key)
                children.append(child)
    return children


def parse_value(reply: str) -> float:
    """The score of a value reply: its last sure/likely/impossible word (0 when there is none)."""
    words = re.findall(r"\b(sure|likely|impossible)\b", reply.lower())
    return VALUE_SCORES[words[-1]] if words else 0.0


def is_24(state: dict) -> bool:
    return len(state["left"]) == 1 and number(state["left"][0]) == 24


def result(state: dict, score: float, levels: list) -> dict:
    solved = is_24(state)
    expression = state["exprs"][0][1:-1] + " = 24" if solved and state["steps"] else None
    return {"solved": solved, "steps": state["steps"], "expression": expression, "left": state["left"],
            "score": score, "levels": levels, "explored": sum(level["proposed"] for level in levels)}
