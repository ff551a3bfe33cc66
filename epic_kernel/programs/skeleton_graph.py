"""Skeleton graphs: the plain-Python half of `sot(question, graph=True)`.

Skeleton-of-Thought expands every point on its own, so a question whose points build on each other
(SoT-R's class "B") gets normal decoding. A skeleton *graph* keeps SoT's speed where it can: the
skeleton says, for each point, which earlier points it needs, and each point is expanded with the
text of those points in its prompt (Skeleton-Graph Decoding, arXiv 2402.12280). The program in
`sot.py` is plain epic code; no line of it schedules anything. An expansion that reads another
one's text waits for it because it needs the value, and every other one is dispatched at once.

This module holds what that program calls inline: the skeleton prompt and its `regex=` constraint,
the skeleton's parser, the graph's checks (an edge to a missing, later or own point is dropped and
said why), the critical path, and the sim's script for graph skeletons.

A skeleton line reads ``3. Compare three models. (depends on: 1, 2)``; ``(depends on: none)``, or
no parenthesis at all, means no dependencies. The parser also takes square brackets and the words
"after", "needs" or "uses" for "depends on", since unconstrained models vary them.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ..llm.base import LLMRequest, UnsupportedFeature
from ..llm.builtin import llm
from ..llm.constrained import ConstraintIncomplete
from ..llm.sim import VOCAB, prompt_text
from ..runtime.context import current_run

__all__ = ["GRAPH_SKELETON_PROMPT", "critical_path", "dependency_line", "graph_regex", "graph_sim_script", "graph_skeleton_llm",
           "parse_graph", "parse_graph_point", "plain_skeleton"]

GRAPH_SKELETON_PROMPT = (
    "You're an organizer responsible for only giving the skeleton (not the full content) for answering "
    "the question. Provide the skeleton in a list of points (numbered 1., 2., 3., etc.) to answer the "
    "question. Instead of writing a full sentence, each skeleton point should be very short with only "
    "3~5 words. Generally, the skeleton should have 3~10 points. After each point, say in parentheses "
    "which earlier points must be written before it, because it uses what they say: "
    "(depends on: 1, 2), or (depends on: none) when it can be written on its own.\n\n"
    "Question:\nHow do I choose a laptop for programming?\nSkeleton:\n"
    "1. List your workloads. (depends on: none)\n2. Set a budget. (depends on: none)\n"
    "3. Pick processor and memory. (depends on: 1)\n4. Compare three models. (depends on: 2, 3)\n"
    "5. Buy the best fit. (depends on: 4)\n\n"
    "Question:\nWhat are the typical types of Chinese dishes?\nSkeleton:\n"
    "1. Dumplings. (depends on: none)\n2. Noodles. (depends on: none)\n3. Dim Sum. (depends on: none)\n"
    "4. Hot Pot. (depends on: none)\n\n"
    "Now, please provide the skeleton for the following question.\n{question}\nSkeleton:\n"
)
GRAPH_MARKER = "must be written before it"       # how the sim script recognises the prompt

_LINE = r" [A-Za-z][^\n()\[\]]{0,47} \(depends on: (none|[0-9]{1,2}(, [0-9]{1,2}){0,8})\)"
TOKENS_PER_LINE = 24                               # a generous bound on one constrained line's tokens

_GRAPH_POINT = re.compile(r"^\s*(\d+)[.)](?!\d)\s*(.*\S)")
_DEPS = re.compile(r"\s*[(\[]\s*(?:depends\s+on|after|needs|uses)?\s*:?\s*(none|-|[\d\s,&and]*)\s*[)\]]\s*\.?\s*$",
                   re.IGNORECASE)


def graph_regex(max_points: int, max_tokens: int, prefilled: bool) -> str:
    """The constraint for the skeleton's reply: 2 to n lines of "k. point (depends on: ...)", n the
    most that fit `max_tokens` (a constrained call fails rather than stop mid-line). After the prefill
    "1." the reply starts with the first point's text."""
    n = max(2, min(max_points, max_tokens // TOKENS_PER_LINE))
    first = _LINE if prefilled else r"1\." + _LINE
    return first + r"(\n[0-9]{1,2}\." + _LINE + r"){1," + str(n - 1) + r"}\n?"


async def graph_skeleton_llm(prompt: str, prefill: bool, max_tokens: int, stop: tuple, constrained: Any,
                             max_points: int) -> str:
    """The skeleton call: `llm()` with the graph regex where the backend supports `regex=`
    (`constrained=None`), always (True) or never (False). Named "llm" in the calls table: it is one
    model call. A constrained reply that ran out of tokens is an empty skeleton (normal decoding).
    An OpenAI backend with guided="auto" promises `regex=` until it has probed the server; if the
    server turns out to have no constraint dialect, the call is refused before anything is sent and
    the skeleton is asked for unconstrained."""
    run = current_run()
    backend = await run.backend() if run is not None and constrained is None else None
    use = constrained if constrained is not None else "regex" in getattr(backend, "capabilities", ())
    kw: dict[str, Any] = {"max_tokens": max_tokens, "stop": stop, "prefill": "1." if prefill else None}
    if use:
        kw["regex"] = graph_regex(max_points, max_tokens, prefill)
    try:
        return await llm(prompt, **kw)
    except ConstraintIncomplete:
        return ""
    except UnsupportedFeature:
        if constrained or "regex" not in kw or "regex" in getattr(backend, "capabilities", ()):
            raise                                 # not a probe that took `regex=` back
        del kw["regex"]
        return await llm(prompt, **kw)


graph_skeleton_llm.__epic_name__ = "llm"


def parse_graph_point(line: str) -> tuple[int, str, list[int]] | None:
    """(index, text, the indices it depends on) of a line such as "3. Compare. (depends on: 1, 2)"."""
    m = _GRAPH_POINT.match(line)
    if not m:
        return None
    text, deps = m.group(2), []
    d = _DEPS.search(text)
    if d:
        text = text[:d.start()].strip()
        deps = [int(x) for x in re.findall(r"\d+", d.group(1))]
    return (int(m.group(1)), text, deps) if text else None


def parse_graph(skeleton: str, max_points: int = 10) -> dict[str, Any]:
    """The skeleton's points and edges: {"points": [(index, text)], "needs": [[position, ...]] (per
    point, the positions in `points` of the points it depends on), "edges": [(from index, to index)],
    "dropped": [why, ...]}. Repeated numbers or texts are skipped, as in plain SoT. An edge to a point
    that does not exist, to the point itself, or to a later point (which could close a cycle) is
    dropped and said; edges only ever point backwards, so the graph has no cycle."""
    points: list[tuple[int, str]] = []
    wanted: list[list[int]] = []
    for line in skeleton.splitlines():
        parsed = parse_graph_point(line)
        if parsed is None or len(points) >= max_points:
            continue
        index, text, deps = parsed
        if any(i == index or t.lower() == text.lower() for i, t in points):
            continue
        points.append((index, text))
        wanted.append(deps)
    position = {index: k for k, (index, _) in enumerate(points)}
    needs: list[list[int]] = []
    edges: list[tuple[int, int]] = []
    dropped: list[str] = []
    for k, ((index, _), deps) in enumerate(zip(points, wanted, strict=True)):
        mine: list[int] = []
        for d in dict.fromkeys(deps):
            why = ("itself" if d == index else "a point that does not exist" if d not in position
                   else "a later point (a possible cycle)" if position[d] > k else None)
            if why:
                dropped.append(f"point {index} named {why}, {d}: edge dropped")
            else:
                mine.append(position[d])
                edges.append((d, index))
        needs.append(sorted(mine))
    return {"points": points, "needs": needs, "edges": edges, "dropped": dropped}


def plain_skeleton(points: list) -> str:
    """The skeleton without its dependency notes, as a point's prompt shows it (plain SoT's form)."""
    return "\n".join(f"{i}. {t}" for i, t in points)


def dependency_line(point: tuple, expansion: str) -> str:
    """A written point that another depends on, as its prompt shows it: "i. text expansion". Called
    per dependency, so a point waits for the expansions it needs and for no other."""
    return f"{point[0]}. {point[1]} {expansion}".rstrip()


def critical_path(needs: list, weights: list) -> list[int]:
    """The positions on the graph's critical path: the longest chain of dependencies, counted in
    points, ties broken by the larger total weight (the expansions' lengths). Its length is the
    fewest rounds of expansions any schedule needs; a graph without edges has a path of one point."""
    best: list[tuple[int, float, list[int]]] = []
    for k, deps in enumerate(needs):
        before = max((best[d] for d in deps), key=lambda b: (b[0], b[1]), default=(0, 0.0, []))
        best.append((before[0] + 1, before[1] + weights[k], before[2] + [k]))
    return max(best, key=lambda b: (b[0], b[1]))[2] if best else []


def graph_sim_script(request: LLMRequest, rng: random.Random) -> str | None:
    """Script the simulated model to write graph skeletons: `SimBackend(scripts=[graph_sim_script])`.
    3-6 points of 3-5 words, each depending on every earlier point with probability 0.3, in the form
    `graph_regex` allows (the sim checks scripted replies against a constraint). Other requests are
    left to the sim."""
    if GRAPH_MARKER not in prompt_text(request):
        return None
    lines = []
    for k in range(1, rng.randint(3, 6) + 1):
        words = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 5)))[:40].strip().capitalize()
        deps = [str(d) for d in range(1, k) if rng.random() < 0.3]
        lines.append(f"{k}. {words} (depends on: {', '.join(deps) or 'none'})")
    text = "\n".join(lines) + "\n"
    return text[2:] if (request.prefill or "").strip() == "1." else text
