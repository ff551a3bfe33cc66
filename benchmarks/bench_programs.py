"""Library programs on replayed model calls: Tree-of-Thoughts, nested tool use, constrained decoding.

Each workload was run once against the real default model (SmolLM2-135M-Instruct, greedy, on this
machine's CPU, through `TransformersBackend` and its shared batcher) with the opportunistic strategy,
every call recorded by `RecordingBackend` (`--record`; the files are benchmarks/recordings/*.jsonl).
The measurement replays the recording with `ReplayBackend`: every call answers with its recorded
text after its recorded latency (divided by `--speed`), so the strategies see the same model minus
its noise. Three modes are measured side by side in every repetition (order rotated):

    sequential     `run(src, strategy="sequential")`: each call awaited before anything else (plain Python)
    opportunistic  `run(src, strategy="opportunistic")`: the default
    asyncio        the same program written by hand with asyncio.gather wherever calls are
                   independent, issuing the same requests (the programs' own prompt templates and
                   parsing helpers): the ideal hand-parallelised baseline

Every repetition checks that the modes return the same value and issue the same multiset of
requests (a mismatch is a bug and stops the benchmark). Critical path: the asyncio version replayed
on a virtual clock (each call advances its own chain by its recorded latency; a gather waits for its
slowest branch), i.e. the makespan with unlimited parallelism; bound = sum of the recorded latencies
/ critical path, the best speedup over sequential any schedule can reach on these latencies.

Recorded latencies come from the opportunistic run, i.e. from calls that shared decode batches.
Replaying them one at a time is what a remote API with load-independent latency gives. On a local
CPU model a call decoded alone is much faster than inside a batch, so `--record` also runs every
workload under the sequential strategy against the real model (`<name>.sequential.jsonl`); when it
made the same requests, a fourth mode ("solo") replays it under the sequential strategy, and the
report gives the speedup over that too, beside the real wall times of both recording runs.

Workloads

    tot          `tot24("4 9 10 13", breadth=5, depth=3)` (the paper's settings; one value sample per
                 state, greedy, max_tokens 128): per level every frontier state proposes next steps
                 (one call), every valid new state is valued (one call each), the 5 best are kept.
                 SmolLM2-135M almost never proposes a valid step (see tot-model), so the proposals
                 are scripted (`scripted_tot_reply`: the valid steps a capable model lists); their
                 latency is real: SmolLM2 decoded the actual prompt, in the shared batcher, for
                 exactly as many tokens as the scripted reply. The values are SmolLM2's own replies.
    tot-model    the same search on SmolLM2's own proposals: one valid step per level, so a chain of
                 5 calls (nothing to parallelise; reported for honesty).
    tools        `answer_all` over six questions with calculator / lookup tools and `ask`
                 sub-questions (sub-chains of their own). SmolLM2-135M never writes "CALL tool: ..."
                 lines for this prompt, so the replies are scripted (`TOOL_SCRIPT`: what a tool-using
                 model answers, given the question and the results so far), with real latencies as
                 for tot's proposals.
    constrained  12 reviews classified with `choices=`; each negative one then gets a star rating
                 (`regex="[1-5]"`) and a complaint topic (`choices=`); one summary call reads them
                 all. SmolLM2's own (constrained) replies.

Targets (ToT only, from the issue): opportunistic >= 4x over sequential (the paper: 6.2x over the
original ToT code); opportunistic within 5 % of the hand-written asyncio version. The other
workloads have no stated target; the same ratios are reported.

    python -m benchmarks.bench_programs [--quick] [--reps N] [--speed S] [--only tot,tools] [--out DIR]
    python -m benchmarks.bench_programs --record [--only ...] [--no-sequential] [--threads 1]

The full run replays latencies divided by 10 (ToT's sequential replay would otherwise take 27
minutes a repetition; the ratios do not depend on the scale beyond the evaluator's own overhead, a
few ms per run). Writes DIR/programs.json and DIR/programs.md (DIR = benchmarks/results, or
benchmarks/results/quick with --quick: 1 repetition, latencies divided by 100).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import itertools
import json
import os
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from benchmarks.report import write_results
from epic_kernel import run
from epic_kernel.llm.base import Backend, LLMRequest, LLMResponse, SamplingParams
from epic_kernel.llm.replay import RecordingBackend, ReplayBackend
from epic_kernel.programs.tools import TOOLS, parse_answer, parse_calls, run_tool, transcript
from epic_kernel.programs.tot import (
    PROPOSE_PROMPT,
    VALUE_PROMPT,
    VALUE_SCORES,
    apply_step,
    compute,
    initial_state,
    is_24,
    parse_proposals,
    parse_value,
    result,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECORDINGS = HERE / "recordings"
META = RECORDINGS / "meta.json"
MODES = ("sequential", "opportunistic", "asyncio")
TARGET_TOT_SPEEDUP, TARGET_VS_ASYNCIO = 4.0, 1.05


# ------------------------------------------------------------------- the hand-written asyncio side
# A virtual clock for the critical path: `vsleep` (ReplayBackend's sleep) advances the calling
# task's own time; `vgather` waits for every branch and continues at the latest branch's time. With
# real sleeps `_VT` is bookkeeping only.
_VT: contextvars.ContextVar[float] = contextvars.ContextVar("virtual_time", default=0.0)


async def vsleep(seconds: float) -> None:
    _VT.set(_VT.get() + seconds)


async def vgather(*aws: Awaitable[Any]) -> list[Any]:
    """asyncio.gather that also carries the virtual clock: the caller continues at the latest branch."""
    async def branch(aw: Awaitable[Any]) -> tuple[Any, float]:
        value = await aw
        return value, _VT.get()

    got = await asyncio.gather(*(branch(aw) for aw in aws))
    _VT.set(max([_VT.get(), *(t for _, t in got)]))
    return [v for v, _ in got]


class Caller:
    """What `llm()` does, without the evaluator: build the same LLMRequest and ask the backend.
    The k-th identical sampled request gets sample_index k, as `llm()` numbers them within a run."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.counts: dict[str, int] = {}

    async def __call__(self, prompt: str | list, *, max_tokens: int = 256, temperature: float = 0.0,
                       top_p: float = 1.0, stop: Any = None, seed: int | None = None, regex: str | None = None,
                       choices: Any = None, system: str | None = None, prefill: str | None = None,
                       raw: bool = False, model: str | None = None) -> str:
        stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
        params = SamplingParams(max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                                stop=stops, seed=seed, regex=regex,
                                choices=tuple(choices) if choices is not None else None)
        request = LLMRequest.build(prompt, system=system, raw=raw, model=model, params=params, prefill=prefill)
        if not params.greedy:
            key = request.key("")
            k = self.counts.get(key, 0)
            self.counts[key] = k + 1
            request = LLMRequest(messages=request.messages, prompt=request.prompt, model=request.model,
                                 params=request.params, prefill=request.prefill, raw=request.raw, sample_index=k)
        self.backend.check(request)
        return (await self.backend.generate(request)).text


# ---------------------------------------------------------------------------------- tot
TOT = {"numbers": "4 9 10 13", "breadth": 5, "depth": 3, "n_evaluate": 1, "max_tokens": 128}
TOT_SRC = """
tot24(numbers, breadth=breadth, depth=depth, n_evaluate=n_evaluate, max_tokens=max_tokens)
"""


async def tot_asyncio(backend: Backend, numbers, breadth=5, depth=3, n_evaluate=1, max_tokens=256) -> dict:
    """`tot24` by hand: each frontier state's proposal, then (as soon as it is back) the values of its
    children; the level's ranking waits for all of them."""
    llm = Caller(backend)

    async def propose(state: dict) -> list[dict]:
        if len(state["left"]) < 2:
            return []
        reply = await llm(PROPOSE_PROMPT.format(numbers=" ".join(state["left"])), max_tokens=max_tokens)
        return parse_proposals(reply, state)

    async def value(state: dict) -> float:
        if len(state["left"]) == 1:
            return VALUE_SCORES["sure"] if is_24(state) else 0.0
        prompt = VALUE_PROMPT.format(numbers=" ".join(state["left"]))
        replies = await vgather(*(llm(prompt, max_tokens=max_tokens, temperature=0.0 if k == 0 else 0.7, seed=k)
                                  for k in range(n_evaluate)))
        return sum([parse_value(reply) for reply in replies])

    async def expand(state: dict) -> list[tuple[dict, float]]:
        children = await propose(state)
        scores = await vgather(*(value(child) for child in children))
        return list(zip(children, scores, strict=True))

    root = initial_state(numbers)
    frontier = [root]
    best = (0.0, root)
    levels = []
    for _level in range(depth):
        groups = await vgather(*(expand(state) for state in frontier))
        candidates = [child for group in groups for child, _ in group]
        scores = [score for group in groups for _, score in group]
        ranked = sorted([(-score, i) for i, score in enumerate(scores)])[:breadth]
        frontier = [candidates[i] for _, i in ranked]
        if ranked:
            best = (-ranked[0][0], frontier[0])
        levels.append({"proposed": len(candidates), "kept": [state["left"] for state in frontier]})
    score, state = best
    return result(state, score, levels)


_PROPOSE_TAIL = re.compile(r"Input: ([^\n]*)\nPossible next steps:\n$")


def scripted_tot_reply(request: LLMRequest, tokens: Callable[[str], int]) -> str | None:
    """A proposal as a capable model writes it: up to 8 valid, distinct next steps (+ of every pair,
    then -, *, / with whole non-negative results), as many as fit in the request's max_tokens.
    Value prompts get None: the model's own reply."""
    m = _PROPOSE_TAIL.search(prompt_text(request))
    if m is None:
        return None
    state = initial_state(m.group(1))
    values = [Fraction(x) for x in state["left"]]
    lines: list[str] = []
    for op in ("+", "-", "*", "/"):
        for i, j in itertools.combinations(range(len(values)), 2):
            a, b = (values[j], values[i]) if op in "-/" else (values[i], values[j])   # left is sorted: b >= a
            c = compute(a, op, b)
            if c is None or c < 0 or c.denominator != 1:
                continue
            child = apply_step(state, (a, op, b, c))
            line = child["steps"][-1] if child is not None else None
            if line is None or line in lines or len(lines) == 8:
                continue
            if tokens("\n".join([*lines, line])) > request.params.max_tokens:
                return "\n".join(lines)
            lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- tools
TOOLS_OPTS = {"max_depth": 3, "max_calls": 4, "max_tokens": 128}
TOOLS_SRC = """
answer_all(questions, max_depth=max_depth, max_calls=max_calls, max_tokens=max_tokens)
"""
# question -> the model's replies, turn by turn; "{0}", "{1}", ... are the results seen so far.
TOOL_SCRIPT: dict[str, list[str]] = {
    "What is the population of the capital of France, in thousands?": [
        "CALL lookup: capital of France",
        "CALL lookup: population of {0}",
        "CALL calculator: {1} / 1000",
        "ANSWER: about {2} thousand people live in {0}."],
    "How many more people live in Berlin than in Madrid?": [
        "CALL ask: What is the population of Berlin?\nCALL ask: What is the population of Madrid?",
        "CALL calculator: {0} - {1}",
        "ANSWER: {2} more people live in Berlin."],
    "What is the population of Berlin?": ["CALL lookup: population of Berlin", "ANSWER: {0}"],
    "What is the population of Madrid?": ["CALL lookup: population of Madrid", "ANSWER: {0}"],
    "What is 17*23+4?": ["CALL calculator: 17*23+4", "ANSWER: {0}"],
    "How many nanoseconds does light need to travel the height of the Eiffel Tower?": [
        "CALL lookup: height of the Eiffel Tower in m\nCALL lookup: speed of light in m/s",
        "CALL calculator: {0} / {1} * 1000000000",
        "ANSWER: about {2} ns."],
    "What is the total population of the capitals of Italy, Japan and Spain?": [
        "CALL ask: What is the population of the capital of Italy?\n"
        "CALL ask: What is the population of the capital of Japan?\n"
        "CALL ask: What is the population of the capital of Spain?",
        "CALL calculator: {0} + {1} + {2}",
        "ANSWER: {3} people."],
    **{f"What is the population of the capital of {country}?": [
        f"CALL lookup: capital of {country}", "CALL lookup: population of {0}", "ANSWER: {1}"]
       for country in ("Italy", "Japan", "Spain")},
    "Who wrote Hamlet, and how many days does a leap year have?": [
        "CALL lookup: author of Hamlet\nCALL lookup: days in a leap year",
        "ANSWER: {0} wrote Hamlet; a leap year has {1} days."],
}
TOOL_QUESTIONS = [
    "What is the population of the capital of France, in thousands?",
    "How many more people live in Berlin than in Madrid?",
    "What is 17*23+4?",
    "How many nanoseconds does light need to travel the height of the Eiffel Tower?",
    "What is the total population of the capitals of Italy, Japan and Spain?",
    "Who wrote Hamlet, and how many days does a leap year have?",
]
_QUESTION = re.compile(r"\nQuestion: ([^\n]*)\n")
_RESULT = re.compile(r"^RESULT: (.*)$", re.MULTILINE)


def prompt_text(request: LLMRequest) -> str:
    return request.messages[-1]["content"] if request.messages else request.prompt or ""


def scripted_tool_reply(request: LLMRequest, tokens: Callable[[str], int] | None = None) -> str:
    """The scripted reply to one tool-use turn: the question's next turn once its earlier calls' results are in."""
    prompt = prompt_text(request)
    m = _QUESTION.search(prompt)
    if m is None or m.group(1) not in TOOL_SCRIPT:
        raise KeyError(f"no scripted dialogue for the prompt {prompt[-200:]!r}")
    turns, seen = TOOL_SCRIPT[m.group(1)], _RESULT.findall(prompt)
    done = 0
    for turn in turns:
        if done == len(seen):
            return turn.format(*seen)
        done += len(parse_calls(turn))
    raise KeyError(f"the script for {m.group(1)!r} has no turn after {len(seen)} results")


async def tools_asyncio(backend: Backend, questions, max_depth=3, max_calls=4, max_tokens=128) -> list[dict]:
    """`answer_all` by hand: questions side by side; in a turn, all tool calls (sub-chains too) at once."""
    llm = Caller(backend)
    tools = TOOLS

    async def chain(question: str, steps: list, rounds_left: int, depth: int) -> dict:
        reply = await llm(transcript(question, tools, steps, rounds_left, depth), max_tokens=max_tokens)
        calls = parse_calls(reply, max_calls)
        if not calls:
            return {"answer": parse_answer(reply), "steps": steps, "depth_limited": False}
        if rounds_left <= 0:
            return {"answer": "", "steps": steps, "depth_limited": True}
        observations = await vgather(*(observe(call, depth) for call in calls))
        return await chain(question, steps + observations, rounds_left - 1, depth)

    async def observe(call: tuple[str, str], depth: int) -> dict:
        name, text = call
        if name == "ask" and depth > 1:
            sub = await chain(text, [], depth - 1, depth - 1)
            answer = sub["answer"] if sub["answer"] else "Error: the sub-question got no answer"
            return {"tool": name, "input": text, "observation": answer, "steps": sub["steps"]}
        return {"tool": name, "input": text, "observation": await run_tool(tools, name, text)}

    return await vgather(*(chain(q, [], max_depth, max_depth) for q in questions))


# ---------------------------------------------------------------------------------- constrained
REVIEWS = [
    "The espresso was rich and the barista remembered my name. Best coffee in town!",
    "Waited forty minutes for a lukewarm latte. Never again.",
    "It's a coffee shop. Coffee was fine, seating was fine.",
    "They charged me eight dollars for a small drip coffee. Way too expensive for what it is.",
    "Lovely pastries, friendly staff, and the wifi actually works.",
    "My order arrived cold and an hour late through their delivery service.",
    "Decent place to work for an hour; nothing special.",
    "The cup leaked and the beans tasted burnt. Poor quality all around.",
    "Great cold brew and a cozy corner by the window. I'll be back.",
    "The cashier was rude and ignored us while chatting on the phone.",
    "Prices are average, the music is a bit loud.",
    "Absolutely loved the seasonal pumpkin latte, perfectly spiced.",
]
CONSTRAINED_SRC = """
def classify(review):
    return llm(f"Review: {review}\\nIs this review positive, negative or neutral?",
               choices=["positive", "negative", "neutral"])

def details(review, label):
    if label != "negative":
        return None
    stars = llm(f"A customer wrote this negative review of a coffee shop.\\nReview: {review}\\n"
                f"How many stars from 1 to 5 did they give? Answer with one digit.", regex="[1-5]")
    topic = llm(f"A customer wrote this negative review of a coffee shop.\\nReview: {review}\\n"
                f"What is the complaint about: price, quality, delivery or service?",
                choices=["price", "quality", "delivery", "service"])
    return {"stars": int(stars), "topic": topic}

labels = [classify(review) for review in reviews]
found = [details(reviews[i], labels[i]) for i in range(len(reviews))]
complaints = [f"{d['stars']} stars, {d['topic']}" for d in found if d != None]
counts = [len([x for x in labels if x == k]) for k in ["positive", "negative", "neutral"]]
summary = llm(f"A coffee shop got {counts[0]} positive, {counts[1]} negative and {counts[2]} neutral reviews. "
              f"The complaints: {'; '.join(complaints)}.\\nWrite one sentence of advice for the owner.",
              max_tokens=48)
{"labels": labels, "details": found, "summary": summary}
"""


async def constrained_asyncio(backend: Backend, reviews) -> dict:
    """The review pipeline by hand: each review's classification, then (if negative) its rating and
    topic together; the summary waits for all."""
    llm = Caller(backend)

    async def item(review: str) -> tuple[str, dict | None]:
        label = await llm(f"Review: {review}\nIs this review positive, negative or neutral?",
                          choices=["positive", "negative", "neutral"])
        if label != "negative":
            return label, None
        stars, topic = await vgather(
            llm(f"A customer wrote this negative review of a coffee shop.\nReview: {review}\n"
                f"How many stars from 1 to 5 did they give? Answer with one digit.", regex="[1-5]"),
            llm(f"A customer wrote this negative review of a coffee shop.\nReview: {review}\n"
                f"What is the complaint about: price, quality, delivery or service?",
                choices=["price", "quality", "delivery", "service"]))
        return label, {"stars": int(stars), "topic": topic}

    items = await vgather(*(item(review) for review in reviews))
    labels = [label for label, _ in items]
    found = [d for _, d in items]
    complaints = [f"{d['stars']} stars, {d['topic']}" for d in found if d is not None]
    counts = [len([x for x in labels if x == k]) for k in ["positive", "negative", "neutral"]]
    summary = await llm(f"A coffee shop got {counts[0]} positive, {counts[1]} negative and {counts[2]} neutral "
                        f"reviews. The complaints: {'; '.join(complaints)}.\nWrite one sentence of advice for "
                        "the owner.", max_tokens=48)
    return {"labels": labels, "details": found, "summary": summary}


# ---------------------------------------------------------------------------------- workloads
WORKLOADS: dict[str, dict[str, Any]] = {
    "tot": {"src": TOT_SRC, "namespace": dict(TOT), "ideal": lambda b: tot_asyncio(b, **TOT),
            "shape": "tot24 on 4 9 10 13, breadth 5, depth 3: per level one proposal per frontier state, one value "
                     "per new state, keep the 5 best; proposals scripted (valid steps), values the model's own",
            "target": True, "script": scripted_tot_reply,
            "note": "proposals scripted (`scripted_tot_reply`: up to 8 valid steps, as many as fit in max_tokens), "
                    "each with the latency of SmolLM2 decoding the real prompt for as many tokens; values are "
                    "SmolLM2's own replies"},
    "tot-model": {"src": TOT_SRC, "namespace": dict(TOT), "ideal": lambda b: tot_asyncio(b, **TOT),
                  "shape": "the same search on SmolLM2's own proposals: it rarely writes a valid step, so every "
                           "level has one state",
                  "target": False, "script": None, "note": "SmolLM2's own replies"},
    "tools": {"src": TOOLS_SRC, "namespace": {"questions": TOOL_QUESTIONS, **TOOLS_OPTS},
              "ideal": lambda b: tools_asyncio(b, TOOL_QUESTIONS, **TOOLS_OPTS),
              "shape": "answer_all over 6 questions: chains of calculator / lookup calls and 5 `ask` sub-chains; "
                       "replies scripted",
              "target": False, "script": scripted_tool_reply,
              "note": "replies scripted (`TOOL_SCRIPT`), each with the latency of SmolLM2 decoding the real prompt "
                      "for as many tokens as the scripted reply"},
    "constrained": {"src": CONSTRAINED_SRC, "namespace": {"reviews": REVIEWS},
                    "ideal": lambda b: constrained_asyncio(b, REVIEWS),
                    "shape": "12 reviews: classify (choices); each negative one: stars (regex) and topic (choices); "
                             "one summary", "target": False, "script": None, "needs": {"regex", "choices"},
                    "note": "SmolLM2's own replies (constrained decoding on the local backend)"},
}


def use_recordings(folder: str | os.PathLike[str]) -> None:
    """Read (and --record into) another folder than benchmarks/recordings."""
    global RECORDINGS, META
    RECORDINGS = Path(folder)
    META = RECORDINGS / "meta.json"


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def recording(name: str, sequential: bool = False) -> Path:
    return RECORDINGS / (f"{name}.sequential.jsonl" if sequential else f"{name}.jsonl")


# ---------------------------------------------------------------------------------- --record
class ScriptedTextBackend(Backend):
    """Record-time wrapper for scripted workloads: where `script(request)` gives a reply, that is the
    text, and the call's cost is still real: `forced` (the same model, ignoring EOS) decodes the
    request's own prompt for exactly as many tokens as the scripted reply has. Where the script gives
    None, `plain` answers with the model's own text."""

    def __init__(self, plain: Any, forced: Any, script: Callable[[LLMRequest, Callable[[str], int]], str | None]):
        super().__init__()
        self.plain, self.forced, self.script = plain, forced, script
        self.name = plain.name
        self.capabilities = plain.capabilities
        self.default_model = plain.default_model
        self.feeders = plain.feeders
        batcher = getattr(plain, "batcher", None)
        self.tokenizer = batcher.tokenizer if batcher is not None else None

    def tokens(self, text: str) -> int:
        if self.tokenizer is None:                   # a backend without a tokenizer (the sim): words
            return len(text.split())
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    async def generate(self, request: LLMRequest) -> LLMResponse:
        text = self.script(request, self.tokens)
        if text is None:
            return await self.plain.generate(request)
        resp = await self.forced.generate(request.with_params(max_tokens=max(1, self.tokens(text))))
        return LLMResponse(text=text, tokens_in=resp.tokens_in, tokens_out=resp.tokens_out, finish_reason="stop",
                           batch_id=resp.batch_id)

    def check(self, request: LLMRequest) -> None:
        self.plain.check(request)

    def on_all_quiescent(self) -> None:
        self.plain.on_all_quiescent()


def threads_now() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def sample_load(out: list[float], stop: threading.Event) -> None:
    """The 1-minute load average every 2 s until `stop` (this process counts about 2 on 2 cores)."""
    while True:
        out.append(round(os.getloadavg()[0], 2))
        if stop.wait(2.0):
            return


def record(names: list[str], sequential: bool, make_backend: Callable[..., Backend] | None = None,
           threads: int | None = None) -> None:
    """Run each workload against the real model (`make_backend(ignore_eos=...)`, by default
    TransformersBackend on SmolLM2) and record its calls; the summary goes to recordings/meta.json.
    `threads`: torch's intra-op threads (fewer than the cores keeps latencies steadier on a shared machine)."""
    if make_backend is None:
        from epic_kernel.llm import TransformersBackend as make_backend
    if threads:
        import torch

        torch.set_num_threads(threads)

    RECORDINGS.mkdir(parents=True, exist_ok=True)
    meta = json.loads(META.read_text()) if META.exists() else {}
    plain = make_backend()
    for name in names:
        w = WORKLOADS[name]
        missing = set(w.get("needs", ())) - set(plain.capabilities)
        if missing:
            print(f"== {name}: SKIPPED, the transformers backend lacks {', '.join(sorted(missing))}", flush=True)
            continue
        script = w["script"]
        forced = make_backend(ignore_eos=True) if script is not None else None
        entry: dict[str, Any] = {"model": plain.default_model, "backend": plain.name, "greedy": True,
                                 "scripted_text": script is not None, "torch_threads": threads_now(), "when": time.strftime("%Y-%m-%d %H:%M %Z"),
                                 "machine": machine()}
        for strategy in ("opportunistic", "sequential") if sequential else ("opportunistic",):
            path = recording(name, strategy == "sequential")
            path.unlink(missing_ok=True)
            backend = ScriptedTextBackend(plain, forced, script) if script is not None else plain
            rec = RecordingBackend(backend, path)
            print(f"== recording {name} ({strategy}) into {rel(path)}, load {load_avg()}",
                  flush=True)
            loads, stop = [], threading.Event()
            sampler = threading.Thread(target=sample_load, args=(loads, stop), daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            try:
                res = run(w["src"], strategy=strategy, backend=rec, namespace=dict(w["namespace"]), trace=False)
            finally:
                wall = time.perf_counter() - t0
                stop.set()
                sampler.join()
            lat = [c["latency"] for c in read_calls(path)]
            entry[strategy] = {"wall_s": round(wall, 3), "calls": len(lat), "tool_calls": len(res.calls) - len(lat),
                               "sum_latency_s": round(sum(lat), 3), "load_before": loads[0] if loads else None,
                               "load_max": max(loads, default=None), "load_after": load_avg(), "value": res.value}
            print(f"   {len(lat)} model calls in {wall:.1f} s (sum of latencies {sum(lat):.1f} s); "
                  f"value {json.dumps(res.value, default=str)[:300]}", flush=True)
        if sequential:
            same = calls_multiset(recording(name)) == calls_multiset(recording(name, True))
            entry["sequential_same_requests"] = same
            entry["sequential_same_value"] = (json.dumps(entry["opportunistic"]["value"], sort_keys=True)
                                              == json.dumps(entry["sequential"]["value"], sort_keys=True))
            print(f"   sequential run made the same requests: {same}", flush=True)
        meta[name] = entry
        META.write_text(json.dumps(meta, indent=1, default=str) + "\n")
        if forced is not None:
            forced.close()
    plain.close()


def read_calls(path: Path) -> list[dict]:
    return [r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
            if r.get("type") == "call"]


def calls_multiset(path: Path) -> Counter:
    return Counter(r["key"] for r in read_calls(path))


# ---------------------------------------------------------------------------------- measurement
class CountingReplay(ReplayBackend):
    """A ReplayBackend that keeps the key of every request it answers (per run: `take()`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    async def generate(self, request: LLMRequest) -> LLMResponse:
        self.seen.append(request.key(""))
        return await super().generate(request)

    def take(self) -> Counter:
        seen, self.seen = self.seen, []
        self.reset()
        return Counter(seen)


def one(w: dict, backend: CountingReplay, mode: str) -> dict:
    backend.take()
    gc.collect()
    t0 = time.perf_counter()
    if mode == "asyncio":
        value = asyncio.run(w["ideal"](backend))
        wall = time.perf_counter() - t0
        out: dict[str, Any] = {"value": value}
    else:
        res = run(w["src"], strategy=mode, backend=backend, namespace=dict(w["namespace"]), trace=False)
        wall = time.perf_counter() - t0
        out = {"value": res.value, "steps": res.steps}
    out["wall_s"] = wall
    out["requests"] = backend.take()
    return out


def critical_path(w: dict, path: Path) -> tuple[float, float, int]:
    """(critical path s, sum of latencies s, calls) of the asyncio version on a virtual clock."""
    total: list[float] = []

    async def tally(seconds: float) -> None:
        total.append(seconds)
        await vsleep(seconds)

    backend = ReplayBackend(path, sleep=tally)

    async def main() -> float:
        _VT.set(0.0)
        await w["ideal"](backend)
        return _VT.get()

    cp = asyncio.run(main())
    return cp, sum(total), len(total)


def bench(name: str, reps: int, speed: float) -> dict:
    w = WORKLOADS[name]
    path, solo_path = recording(name), recording(name, sequential=True)
    backends = {m: CountingReplay(path, speed=speed) for m in MODES}
    warm = CountingReplay(path, speed=1000.0)
    cp, total, ncalls = critical_path(w, path)
    modes = list(MODES)
    if solo_path.exists() and calls_multiset(solo_path) == calls_multiset(path):
        modes.append("solo")                 # sequential again, on the latencies of the real sequential run
        backends["solo"] = CountingReplay(solo_path, speed=speed)
        solo_total = sum(c["latency"] for c in read_calls(solo_path))
    for mode in MODES:                                                    # warm every path once
        one(w, warm, mode)
    walls: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {"speedup": [], "vs_asyncio": [], "asyncio_speedup": [], "solo_speedup": []}
    info: dict = {}
    for rep in range(reps):
        k = rep % len(modes)
        got = {m: one(w, backends[m], "sequential" if m == "solo" else m) for m in modes[k:] + modes[:k]}
        values = {m: json.dumps(got[m]["value"], sort_keys=True, default=str) for m in modes}
        if len(set(values.values())) != 1:
            raise RuntimeError(f"{name}: the modes disagree on the result:\n"
                               + "\n".join(f"  {m}: {v[:500]}" for m, v in values.items()))
        reqs = {m: got[m]["requests"] for m in modes}
        if any(r != reqs["opportunistic"] for r in reqs.values()):
            raise RuntimeError(f"{name}: the modes made different requests: "
                               + ", ".join(f"{m} {sum(r.values())} calls" for m, r in reqs.items()))
        for m in modes:
            walls[m].append(got[m]["wall_s"])
        opp = got["opportunistic"]["wall_s"]
        ratios["speedup"].append(got["sequential"]["wall_s"] / opp)
        ratios["vs_asyncio"].append(opp / got["asyncio"]["wall_s"])
        ratios["asyncio_speedup"].append(got["sequential"]["wall_s"] / got["asyncio"]["wall_s"])
        if "solo" in got:
            ratios["solo_speedup"].append(got["solo"]["wall_s"] / opp)
        info = {"calls": sum(reqs["opportunistic"].values()), "steps": got["opportunistic"]["steps"]}
        print(f"  {name} rep {rep}: " + ", ".join(f"{m} {got[m]['wall_s']:.2f}s" for m in modes)
              + f"; speedup {ratios['speedup'][-1]:.2f}x, opp/asyncio {ratios['vs_asyncio'][-1]:.3f}", flush=True)
    if ncalls != info["calls"]:
        raise RuntimeError(f"{name}: the critical-path replay made {ncalls} calls, the runs {info['calls']}")
    med = statistics.median
    bound = total / cp if cp > 0 else float("nan")
    row = {"shape": w["shape"], "recording": rel(path), "scripted_text": w["script"] is not None,
           "calls": info["calls"], "steps": info["steps"], "reps": reps, "speed": speed,
           "sum_latency_s": total, "critical_path_s": cp, "bound": bound,
           "wall_s": {m: med(walls[m]) for m in modes},
           "speedup_vs_sequential": med(ratios["speedup"]), "opportunistic_vs_asyncio": med(ratios["vs_asyncio"]),
           "asyncio_speedup_vs_sequential": med(ratios["asyncio_speedup"]),
           "speedup_over_bound": med(ratios["speedup"]) / bound,
           "raw": {"wall_s": walls, **ratios}, "same_results_and_requests": True}
    if "solo" in modes:
        row["solo"] = {"recording": rel(solo_path), "sum_latency_s": solo_total,
                       "speedup_vs_solo_sequential": med(ratios["solo_speedup"])}
    if w["target"]:
        row["targets"] = {"speedup_at_least_4x": row["speedup_vs_sequential"] >= TARGET_TOT_SPEEDUP,
                          "opportunistic_within_5pct_of_asyncio": row["opportunistic_vs_asyncio"] <= TARGET_VS_ASYNCIO}
    real = json.loads(META.read_text()).get(name, {}) if META.exists() else {}
    if "opportunistic" in real and "sequential" in real:
        row["real_model"] = {"opportunistic_wall_s": real["opportunistic"]["wall_s"],
                             "sequential_wall_s": real["sequential"]["wall_s"],
                             "speedup": real["sequential"]["wall_s"] / real["opportunistic"]["wall_s"],
                             "same_requests": real.get("sequential_same_requests"),
                             "same_value": real.get("sequential_same_value")}
    return row


# ---------------------------------------------------------------------------------- report
def machine() -> dict:
    from benchmarks.bench_core import machine as core_machine

    return core_machine()


def yes(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def markdown(res: dict) -> str:
    m, meta, rows = res["machine"], res["meta"], res["workloads"]
    rec = res.get("recordings", {})
    models = sorted({r.get("model", "?") for r in rec.values()})
    speed_note = f" divided by {meta['speed']:g}" if meta["speed"] != 1 else ""
    lines = [
        "# Library programs on replayed SmolLM2 calls: ToT, nested tool use, constrained decoding",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs, {m['implementation']} {m['python']}; {meta['when']}"
        f"{' (--quick)' if meta['quick'] else ''}, load average before {meta['load_before']}, after "
        f"{meta['load_after']}. Generated by `python -m benchmarks.bench_programs`.",
        "",
        f"Each workload ran once against {', '.join(models) or 'the default model'} (greedy, CPU, shared batcher, "
        "opportunistic) with every call recorded (`benchmarks/recordings/`); here the recording is replayed "
        f"with its latencies{speed_note} under the three "
        "modes, side by side in each repetition (order rotated), and every repetition checks that the three "
        "return the same value and make the same requests. asyncio = the same program written by hand with "
        "`asyncio.gather`. Critical path = the asyncio version on a virtual clock (unlimited parallelism); "
        "bound = sum of latencies / critical path. Wall times are medians; ratios are medians of the "
        "per-repetition ratios.",
        "",
        "| workload | calls | sum of latencies s | critical path s | bound | sequential s | opportunistic s "
        "| asyncio s | speedup vs sequential | opportunistic / asyncio | asyncio speedup | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sp = meta["speed"]
    for name, r in rows.items():
        w, t = r["wall_s"], r.get("targets")
        target = (f"speedup >= 4x {yes(t['speedup_at_least_4x'])}, vs asyncio "
                  f"{yes(t['opportunistic_within_5pct_of_asyncio'])}") if t else "none stated"
        lines.append(
            f"| {name} | {r['calls']} | {r['sum_latency_s'] / sp:.2f} | {r['critical_path_s'] / sp:.2f} | "
            f"{r['bound']:.2f}x | {w['sequential']:.2f} | {w['opportunistic']:.2f} | {w['asyncio']:.2f} | "
            f"**{r['speedup_vs_sequential']:.2f}x** | **{r['opportunistic_vs_asyncio']:.3f}** | "
            f"{r['asyncio_speedup_vs_sequential']:.2f}x | {target} |")
    lines += ["", "Workloads:", ""]
    for name, r in rows.items():
        lines.append(f"* **{name}**: {r['shape']}; {r['calls']} model calls, {r['steps']:,} reduction steps "
                     f"(opportunistic); critical path {r['critical_path_s']:.1f} s of {r['sum_latency_s']:.1f} s "
                     "recorded.")
    solo = {n: r for n, r in rows.items() if "solo" in r or "real_model" in r}
    if solo:
        lines += [
            "",
            "**Local CPU model.** The latencies above are those of calls that shared decode batches; replaying "
            "them one at a time is what a remote API with load-independent latency gives. A call decoded alone "
            "on this CPU is much faster than one inside a batch (prefill is compute-bound here), so `--record` "
            "also ran every workload under the sequential strategy against the real model. Solo replay = the "
            "sequential strategy replaying that run's own latencies (same requests, same answers); real = the "
            "wall times of the two recording runs themselves (once each, on a shared machine).",
            "",
            "| workload | sum of solo latencies s | sequential, solo latencies s | opportunistic s "
            "| speedup vs solo sequential | real sequential s | real opportunistic s | real speedup |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in solo.items():
            o, x = r.get("solo"), r.get("real_model")
            cells = ([f"{o['sum_latency_s'] / sp:.2f}", f"{r['wall_s']['solo']:.2f}", f"{r['wall_s']['opportunistic']:.2f}",
                      f"**{o['speedup_vs_solo_sequential']:.2f}x**"] if o else ["-", "-", "-", "-"])
            cells += ([f"{x['sequential_wall_s']:.1f}", f"{x['opportunistic_wall_s']:.1f}", f"{x['speedup']:.2f}x"]
                      if x else ["-", "-", "-"])
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if rec:
        lines += ["", "Recordings (`python -m benchmarks.bench_programs --record --threads 1`; one torch thread because "
                  "other jobs share this 2-core machine: with two threads the latencies swung by up to 6x with "
                  "their load, with one a repeated recording agreed within 5 % and was a uniform ~1.7x slower than "
                  "a quiet two-thread run):", ""]
        for name, x in rec.items():
            o = x.get("opportunistic", {})
            lines.append(f"* {name}: {x.get('model')} on {x.get('machine', {}).get('cpu', '?')}, "
                         f"{x.get('torch_threads')} torch thread(s), {x.get('when')}; {o.get('calls')} calls in "
                         f"{o.get('wall_s')} s (1-min load average {o.get('load_before')} before, at most "
                         f"{o.get('load_max')} during, this run included); {WORKLOADS[name]['note']}.")
    missing = [n for n in res["meta"]["skipped"]]
    if missing:
        lines += ["", f"Not measured (no recording yet): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="run the workloads against SmolLM2 and record them")
    ap.add_argument("--no-sequential", action="store_true", help="--record: skip the real sequential run")
    ap.add_argument("--threads", type=int, default=None, help="--record: torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 repetition, latencies / 100")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per workload (default 3, quick 1)")
    ap.add_argument("--speed", type=float, default=None,
                    help="divide recorded latencies by this (default 10, quick 100)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results[/quick])")
    ap.add_argument("--recordings", default=None, help="recordings folder (default benchmarks/recordings)")
    args = ap.parse_args(argv)
    if args.recordings:
        use_recordings(args.recordings)
    names = [n for n in (args.only.split(",") if args.only else WORKLOADS) if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.record:
        record(names, sequential=not args.no_sequential, threads=args.threads)
        return None
    speed = args.speed if args.speed is not None else (100.0 if args.quick else 10.0)
    reps = args.reps or (1 if args.quick else 3)
    out = Path(args.out) if args.out else (RESULTS / "quick" if args.quick else RESULTS)
    meta: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M %Z"), "quick": args.quick, "speed": speed,
                            "reps": reps, "load_before": load_avg(), "argv": sys.argv[1:] if argv is None else argv}
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    skipped = []
    for name in names:
        if not recording(name).exists():
            print(f"== {name}: no recording at {recording(name)}; run --record first", flush=True)
            skipped.append(name)
            continue
        print(f"== {name}, latencies / {speed:g}, {reps} reps", flush=True)
        rows[name] = bench(name, reps, speed)
    meta["load_after"] = load_avg()
    meta["total_s"] = round(time.perf_counter() - t0, 1)
    meta["skipped"] = skipped
    recs = json.loads(META.read_text()) if META.exists() else {}
    res = {"meta": meta, "machine": machine(), "workloads": rows,
           "recordings": {n: {k: v for k, v in recs[n].items() if k not in ("opportunistic", "sequential")}
                          | {"opportunistic": {k: v for k, v in recs[n].get("opportunistic", {}).items() if k != "value"}}
                          for n in rows if n in recs},
           "targets_met": all(all(r.get("targets", {}).values()) for r in rows.values())}
    write_results(out, "programs", res, markdown(res), echo=True)
    print(f"wrote {out / 'programs.json'} and {out / 'programs.md'} in {meta['total_s']} s")
    return res


if __name__ == "__main__":
    main()
