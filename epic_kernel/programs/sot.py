"""Skeleton-of-Thought (Ning et al., ICLR 2024) as an epic program.

SoT answers in two stages: one call writes a short numbered *skeleton* of the answer, then one call
per point *expands* it in a sentence or two, and the expansions are joined in skeleton order. The
expansions do not depend on each other, so the evaluator dispatches them together (one batch on a
local model); the answer takes about as long as the skeleton plus the longest point.

    from epic_kernel.programs import sot
    out = sot("How do I fall asleep faster?", backend="sim")     # from Python: runs the evaluator
    out["answer"], out["points"], out["expansions"], out["used_sot"]

Epic code (a `%%epic` cell, `epic run`) calls it the same way, without run options:
`sot(question, stream=True, router=True)`. Its calls then join the caller's schedule.

Options
    stream      expand each point the moment its skeleton line is complete, while the skeleton is
                still being generated; each expansion then streams too. A point's prompt shows the
                skeleton so far (the points after it do not exist yet).
    router      SoT-R: first ask the model whether the answer is a list of independent points (the
                paper's prompting router, A/B/C). "A": SoT; "B" (points that build on earlier ones):
                a skeleton graph (`graph=True`); "C", or no clear letter: normal decoding.
    graph       a skeleton graph (`programs.skeleton_graph`): the skeleton also says which earlier
                points each point depends on, and a point's prompt holds those points' expansions,
                so it waits for them and for nothing else. With `router=True` too, "A" and "B" both
                get the graph.
    constrained the graph skeleton's `regex=` constraint: None (the default) uses it where the
                backend supports `regex=` (local models, the sim, vLLM/SGLang/llama.cpp servers),
                True always, False never.
    max_points  points beyond this many are dropped.
    max_tokens  the budget of every generated part: skeleton, each expansion, a normal answer.
    prefill     True: start the model's answers ourselves (the paper's partial answer, "1." for the
                skeleton and "3. <point>" for point 3) with `llm(prefill=...)`, which the transformers
                and sim backends support (the OpenAI backend only with guided="vllm").
                False: ask for that start in the prompt instead (the paper's variant for GPT-4 and
                Claude); use it for chat APIs that reject a partial assistant message.
    expand_with "skeleton" (the paper): a point's prompt shows the whole skeleton and asks to continue
                point i, and its answer is prefilled with "i. <point>".
                "point": a point's prompt shows only its own point, with no prefill. Small models
                (SmolLM2-135M, the default local model) given the whole skeleton copy it out instead
                of expanding their point, or stop at once after the prefilled sentence; shown one
                point they write the one or two sentences asked for. The benchmark uses it for SmolLM2.
                "auto" (the default): the paper's prompt first; a point whose expansion comes back
                empty, or as a copy of other skeleton points (`weak_expansion`), is expanded again
                with the "point" prompt, and the view's SoT panel says so (a `program.sot.retry`
                event). Models that follow the paper's prompt pay nothing; on SmolLM2 the failed
                first attempts are short (an empty answer stops after a token or two).

The skeleton stops at its first blank line, or where the model starts another few-shot block
("Question:", "Skeleton:"), so a model that would run on to its token budget does not.

Skeleton lines are read by `parse_point`: a number at the start of a line, then "." or ")", then the
point. Repeated numbers and repeated points are dropped; other lines (a preamble, a closing remark)
are skipped. With fewer than two points the question is answered by normal decoding instead.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ..llm.base import LLMRequest
from ..llm.builtin import llm
from ..llm.sim import VOCAB, prompt_text
from ..runtime.context import builtin
from ._program import emit_event, program
from .skeleton_graph import (
    GRAPH_SKELETON_PROMPT,
    critical_path,
    dependency_line,
    graph_skeleton_llm,
    parse_graph,
    plain_skeleton,
)

__all__ = ["SoTResult", "assemble", "check_expand_with", "parse_point", "parse_skeleton", "router_choice", "sot",
           "sim_script", "weak_expansion", "weak_reason"]

lines = builtin("lines")     # the language's `lines(s)`, for the epic code below

# The paper's prompts, open-model variant (prompts/sot_opensource.json in the authors' repository).
SKELETON_PROMPT = (
    "You're an organizer responsible for only giving the skeleton (not the full content) for answering "
    "the question. Provide the skeleton in a list of points (numbered 1., 2., 3., etc.) to answer the "
    "question. Instead of writing a full sentence, each skeleton point should be very short with only "
    "3~5 words. Generally, the skeleton should have 3~10 points.\n\n"
    "Question:\nWhat are the typical types of Chinese dishes?\nSkeleton:\n"
    "1. Dumplings. \n2. Noodles. \n3. Dim Sum. \n4. Hot Pot. \n5. Wonton. \n6. Ma Po Tofu. \n"
    "7. Char Siu. \n8. Fried Rice. \n\n"
    "Question:\nWhat are some practical tips for individuals to reduce their carbon emissions?\nSkeleton:\n"
    "1. Energy conservation. \n2. Efficient transportation. \n3. Home energy efficiency. \n"
    "4. Reduce water consumption. \n5. Sustainable diet. \n6. Sustainable travel. \n\n"
    "Now, please provide the skeleton for the following question.\n{question}\nSkeleton:\n"
)
EXPAND_POINT_PROMPT = (
    "You're responsible for continuing the writing of one and only one point in the overall answer to "
    "the following question.\n\n{question}\n\nThe point is: {point}\n\n"
    "Write it **very shortly** in 1~2 sentences."
)
SKELETON_STOP = ("\n\n", "\nQuestion:", "\nSkeleton:")
EXPAND_PROMPT = (
    "You're responsible for continuing the writing of one and only one point in the overall answer to "
    "the following question.\n\n{question}\n\nThe skeleton of the answer is\n\n{skeleton}\n\n"
    "Continue and only continue the writing of point {index}. Write it **very shortly** in 1~2 sentence "
    "and do not continue with other points!"
)
ROUTER_PROMPT = (
    "Question: {question}\n\nHow would you like to answer the question?\n"
    "A. Organize the answer as a list of points or perspectives (in the format of 1., 2., 3., etc.), and "
    "the points or perspectives can be answered independently without referring to the contents of the "
    "previous points.\n"
    "B. Organize the answer as a list of points or perspectives (in the format of 1., 2., 3., etc.), and "
    "the contents of later points or perspectives cannot be answered independently without referring to "
    "the contents of the previous ones.\n"
    "C. Do not organize the answer as a list of points or perspectives.\n\n"
    "Just say A, B, or C. Do not explain. Do not provide an answer to the question."
)
CONTEXT = ("\n\nThis point builds on these points of the answer, already written:\n\n{context}\n\n"
           "Use what they say; do not repeat them.")
START_FROM = '\n\nPlease start your answer from "{start}" and do not output other things before that'


# ----------------------------------------------------------------------------------- the program
@program
def sot(question, stream=False, router=False, max_points=10, max_tokens=256, prefill=True,
        expand_with="auto", graph=False, constrained=None):
    """Answer `question` with Skeleton-of-Thought; see the module docstring for the options.

    Returns {"answer": str, "points": [(index, text)], "expansions": [str], "used_sot": bool}
    (no points and no expansions when it decoded normally); a skeleton graph's answer adds
    "edges", "dropped" and "critical_path"."""
    emit_event("program.sot.question", text=question)
    check_expand_with(expand_with)
    choice = "A"
    if router:
        choice = route(question)
    if choice == "B" or (graph and choice == "A"):
        return graph_answer(question, stream, max_points, max_tokens, prefill, expand_with, constrained)
    if choice != "A":
        return normal(question, max_tokens)
    if stream:
        points, expansions = stream_points(question, max_points, max_tokens, prefill, expand_with)
    else:
        points, expansions = plain_points(question, max_points, max_tokens, prefill, expand_with)
    if len(points) < 2:
        return normal(question, max_tokens)
    answer = assemble(points, expansions)
    emit_event("program.sot.answer", text=answer)
    return sot_result(answer, points, expansions, True)


@program
def plain_points(question, max_points, max_tokens, prefill, expand_with="auto"):
    """Plain SoT: the whole skeleton, then every point's expansion at once."""
    skeleton = answer_from(SKELETON_PROMPT.format(question=question), "1.", max_tokens, prefill, SKELETON_STOP)
    points = parse_skeleton(skeleton, max_points)
    for index, text in points:
        emit_event("program.sot.point", index=index, text=text)
    # Statement order does not order calls: an expansion written above this test would be dispatched
    # as soon as its point is known, whatever the test says. So the test comes first.
    if len(points) < 2:
        return points, []                         # too few to expand: `sot` answers normally
    return points, [expand(question, skeleton, point, max_tokens, prefill, expand_with) for point in points]


@program
def stream_points(question, max_points, max_tokens, prefill, expand_with="auto"):
    """Streaming SoT: each point's expansion is dispatched as soon as its skeleton line is complete."""
    prompt = with_start(SKELETON_PROMPT.format(question=question), "1.", prefill)
    skeleton = ""                                 # the lines so far
    points = []
    expansions = []
    skeleton_reply = llm(prompt, stream=True, max_tokens=max_tokens, stop=SKELETON_STOP,
                         prefill="1." if prefill else None)
    for line in lines(skeleton_reply):
        if skeleton == "" and prefill:
            line = "1." + line                    # the reply continues our "1."
        skeleton = skeleton + line + "\n"
        point = new_point(line, points, max_points)
        if point is not None:
            emit_event("program.sot.point", index=point[0], text=point[1])
            points.append(point)
            expansions.append(expand(question, skeleton, point, max_tokens, prefill, expand_with, stream=True))
    return points, expansions


@program
def graph_answer(question, stream, max_points, max_tokens, prefill, expand_with, constrained):
    """A skeleton graph: each point is expanded with the text of the points it depends on."""
    skeleton, needs, expansions = graph_points(question, stream, max_points, max_tokens, prefill, expand_with,
                                               constrained)
    points = skeleton["points"]
    if len(points) < 2:
        return normal(question, max_tokens)
    answer = assemble(points, expansions)
    emit_event("program.sot.answer", text=answer)
    critical = [points[k][0] for k in critical_path(needs, [len(e) for e in expansions])]
    emit_event("program.sot.graph", edges=skeleton["edges"], dropped=skeleton["dropped"], critical=critical)
    return graph_result(answer, points, expansions, skeleton, critical)


@program
def graph_points(question, stream, max_points, max_tokens, prefill, expand_with, constrained):
    """The graph's skeleton, then one expansion per point whose prompt holds the expansions of the
    points it depends on. Nothing here orders the calls: an expansion waits for exactly the texts
    its prompt needs, so independent points run together, as in plain SoT."""
    prompt = with_start(GRAPH_SKELETON_PROMPT.format(question=question), "1.", prefill)
    reply = graph_skeleton_llm(prompt, prefill, max_tokens, SKELETON_STOP, constrained, max_points)
    skeleton = parse_graph(("1." + reply) if prefill else reply, max_points)
    points = skeleton["points"]
    needs = skeleton["needs"]
    for index, text in points:
        emit_event("program.sot.point", index=index, text=text)
    emit_event("program.sot.graph", edges=skeleton["edges"], dropped=skeleton["dropped"], critical=[])
    if len(points) < 2:
        return skeleton, needs, []
    plain = plain_skeleton(points)
    expansions = []
    for k in range(len(points)):
        context = "\n".join([dependency_line(points[d], expansions[d]) for d in needs[k]])
        expansions.append(expand(question, plain, points[k], max_tokens, prefill, expand_with, stream, context))
    return skeleton, needs, expansions


@program
def expand(question, skeleton, point, max_tokens, prefill, expand_with="auto", stream=False, context=""):
    """Point `index`'s expansion; with "auto", a weak one (empty, or a copy of the skeleton) is
    asked for again with the one-point prompt. `context` (the skeleton graph's points this one
    depends on, already written out) goes into the prompt; empty, the prompt is plain SoT's."""
    if expand_with != "auto":
        return expand_once(question, skeleton, point, max_tokens, prefill, expand_with, stream, context)
    first = expand_once(question, skeleton, point, max_tokens, prefill, "skeleton", stream, context)
    if not weak_expansion(first, point[0]):
        return first
    emit_event("program.sot.retry", index=point[0], reason=weak_reason(first, point[0]))
    emit_event("program.sot.expansion", index=point[0], text="")
    return expand_once(question, skeleton, point, max_tokens, prefill, "point", stream, context)


@program
def expand_once(question, skeleton, point, max_tokens, prefill, expand_with, stream=False, context=""):
    """One expansion of point `index`: the text the model writes after "index. text", up to its
    first blank line (the prompt asks for 1~2 sentences; small models go on to write the whole answer)."""
    index, text = point
    if expand_with == "point":
        start = ""                                # nothing to prefill or ask for: the reply is the expansion
        prompt = with_context(EXPAND_POINT_PROMPT.format(question=question, point=text), context)
    else:
        start = f"{index}. {text}"
        prompt = with_context(EXPAND_PROMPT.format(question=question, skeleton=skeleton.strip(), index=index),
                              context)
    if stream:
        chunks = llm(with_start(prompt, start, prefill), stream=True, max_tokens=max_tokens, stop="\n\n",
                     prefill=start if prefill and start else None)
        for chunk in chunks:
            emit_event("program.sot.expansion", index=index, chunk=chunk)
        reply = "".join(chunks)
    else:
        reply = answer_from(prompt, start, max_tokens, prefill, "\n\n")
    expansion = without_start(reply, start)
    emit_event("program.sot.expansion", index=index, text=expansion, done=True)
    return expansion


@program
def answer_from(prompt, start, max_tokens, prefill, stop=None):
    """The model's answer beginning with `start`: prefilled, or asked for in the prompt."""
    if prefill and start:
        return start + llm(prompt, prefill=start, max_tokens=max_tokens, stop=stop)
    return llm(with_start(prompt, start, prefill), max_tokens=max_tokens, stop=stop)


@program
def route(question):
    """SoT-R's prompting router: "A" (independent points: use SoT), "B", "C", or None if unclear."""
    return router_choice(llm(ROUTER_PROMPT.format(question=question), max_tokens=10))


@program
def normal(question, max_tokens):
    """Normal decoding: the question as it is, one call."""
    answer = llm(question, max_tokens=max_tokens)
    emit_event("program.sot.answer", text=answer)
    return sot_result(answer, [], [], False)


# --------------------------------------------------------- plain Python helpers (called inline)
class SoTResult(dict):
    """sot()'s result: a plain dict (answer, points, expansions, used_sot) that prints as the
    answer with its line breaks, not as a one-line repr full of "\\n" (a notebook's Out[n])."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        if cycle:
            p.text("SoTResult(...)")
            return
        how = f"{len(self['points'])} points expanded in parallel" if self["used_sot"] else "answered directly"
        if "edges" in self:
            how = (f"a skeleton graph: {len(self['points'])} points, {len(self['edges'])} edges, "
                   f"critical path {len(self['critical_path'])} points")
        keys = "answer, points, expansions, used_sot" + (", edges, dropped, critical_path" if "edges" in self else "")
        p.text(f"sot answer ({how}; a dict: {keys}):\n{self['answer']}")


def sot_result(answer: str, points: list, expansions: list, used_sot: bool) -> SoTResult:
    return SoTResult(answer=answer, points=points, expansions=expansions, used_sot=used_sot)


def graph_result(answer: str, points: list, expansions: list, skeleton: dict, critical: list) -> SoTResult:
    """A skeleton graph's result: sot_result's keys, plus its edges (from index, to index), the
    edges it dropped (why, in words) and its critical path (point indices)."""
    return SoTResult(answer=answer, points=points, expansions=expansions, used_sot=True,
                     edges=skeleton["edges"], dropped=skeleton["dropped"], critical_path=critical)


_POINT = re.compile(r"^\s*(\d+)[.)](?!\d)\s*(.*\S)")     # "3. Point", " 3) Point"; not "3.5 kg"
_LETTER = re.compile(r"\b([ABC])\b")


def parse_point(line: str) -> tuple[int, str] | None:
    """(index, text) of a skeleton line such as "3. Sleep hygiene.", else None."""
    m = _POINT.match(line)
    return (int(m.group(1)), m.group(2).strip()) if m else None


def new_point(line: str, points: list, max_points: int) -> tuple[int, str] | None:
    """The line's point if it is one, is not a repeat (number or text) of `points`, and fits."""
    point = parse_point(line)
    if point is None or len(points) >= max_points:
        return None
    index, text = point
    if any(i == index or t.lower() == text.lower() for i, t in points):
        return None
    return point


def parse_skeleton(skeleton: str, max_points: int = 10) -> list[tuple[int, str]]:
    """The points of a skeleton, in order: `new_point` applied line by line."""
    points: list[tuple[int, str]] = []
    for line in skeleton.splitlines():
        point = new_point(line, points, max_points)
        if point is not None:
            points.append(point)
    return points


def check_expand_with(expand_with: str) -> None:
    if expand_with not in ("auto", "skeleton", "point"):
        raise ValueError(f"expand_with must be 'auto', 'skeleton' (the paper's prompt) or 'point', "
                         f"not {expand_with!r}")


def weak_reason(expansion: str, index: int | None = None) -> str | None:
    """Why an expansion is no expansion: "empty" (nothing, or a lone word or mark), "copied the
    skeleton" (it lists other numbered points), else None."""
    words = expansion.split()
    if len(words) < 2:
        return "empty"
    for line in expansion.splitlines():
        point = parse_point(line)
        if point is not None and point[0] != index:
            return "copied the skeleton"
    return None


def weak_expansion(expansion: str, index: int | None = None) -> bool:
    return weak_reason(expansion, index) is not None


def router_choice(reply: str) -> str | None:
    """The router's letter: the first standalone A, B or C in its reply (None for anything else)."""
    m = _LETTER.search(reply)
    return m.group(1) if m else None


def with_context(prompt: str, context: str) -> str:
    """A point's prompt with the points it depends on written out (skeleton graphs); unchanged
    without any, so a graph without edges sends plain SoT's prompts."""
    return prompt + CONTEXT.format(context=context) if context else prompt


def with_start(prompt: str, start: str, prefill: bool) -> str:
    """Without a prefill, the prompt asks the model to begin its answer with `start`."""
    return prompt if prefill or not start else prompt + START_FROM.format(start=start)


def without_start(reply: str, start: str) -> str:
    """The reply after `start` (which a model may repeat even when prefilled), stripped."""
    reply = reply.strip()
    return reply[len(start):].strip() if reply.startswith(start) else reply


def assemble(points: list, expansions: list) -> str:
    """The final answer: "index. text expansion" per point, one per line, in skeleton order."""
    return "\n".join(f"{i}. {t} {e}".rstrip() for (i, t), e in zip(points, expansions, strict=True))


# ----------------------------------------------------------------------------------- the sim
def sim_script(request: LLMRequest, rng: random.Random) -> str | None:
    """Script the simulated model to answer like one that follows SoT's skeleton prompt:
    `SimBackend(scripts=[sim_script])`. A skeleton request (SKELETON_PROMPT, or the partial answer
    "1.") gets a numbered list of 3-6 short points drawn with the request's own `rng`; anything else
    is left to the sim (None). SoT knows its prompts; the sim knows no program."""
    prefill = (request.prefill or "").strip()
    if prefill != "1." and "giving the skeleton" not in prompt_text(request).lower():
        return None
    points = [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 5))) for _ in range(rng.randint(3, 6))]
    text = "\n".join(f"{k}. {p.capitalize()}" for k, p in enumerate(points, 1)) + "\n"
    return text[2:] if prefill == "1." else text       # after the prefill "1." the list goes on
