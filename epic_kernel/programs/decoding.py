"""Decoding programs side by side: one question (or a set), several decoding programs, one backend.

    from epic_kernel import decode_compare
    cmp = decode_compare("How do I fall asleep faster?", programs=["normal", "sot", "sot-r", "sot-stream"],
                         backend="sim", judge="sim")
    cmp.table()             # per program: median speed-up over normal, first token, tokens, net win rate
    cmp                     # in a notebook: the view (answers side by side, lanes on one time axis)

Fair timings (as the SoT paper and benchmarks/bench_sot.py time them):
- every program runs alone on the backend, one after another; no two programs ever share the batcher;
- the order is rotated from one question to the next (question k starts with program k mod n), so
  drift on a noisy machine spreads over all programs;
- the answer cache is off (a cached answer would be instant), and a local model gets a one-token
  warm-up before the first run (its first decode pays one-off costs);
- the judge's calls are not timed. On the answer backend they start after all of a question's timed
  runs and finish before the next question's begin; on another backend they run in the background,
  in parallel with later questions (they never touch the answer model).

What is measured for each run (all from the run's own call records and events):
- `elapsed`: wall time of the program's run, end to end;
- `first_token`: from the run's start to the first token any of its calls produced (a streamed
  chunk, or a whole reply for a call that does not stream). For SoT-R that is the router's letter,
  for plain SoT the finished skeleton, for streaming SoT and normal decoding (which streams here)
  the first streamed token;
- `tokens_out` (generated), `tokens_in` (prompt tokens) and `prefilled` (prompt tokens computed,
  i.e. not reused from the local batcher's prefix cache): the cost side of the SoT paper;
- `batches`: the decode batches its calls ran in on a local model (batch id, first and last time,
  calls in it); `capped`: calls that used their whole `max_tokens` budget (cut answers).

The judge compares every program's answer with normal decoding's (the paper's baseline), under the
protocols of `programs.judge` (FastChat's pairwise scores and/or LLMZoo's ranking, both orders).

The program list is a registry (`DECODING_PROGRAMS`, `register_decoding_program`): a new decoding
program (an epic function of the question) joins the view, the magic and the benchmark by name.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EpicError
from ..llm.base import Backend, LLMRequest, SamplingParams
from ..llm.builtin import llm
from ..llm.registry import describe_spec, resolve_backend
from ..runtime.api import call_function_async, in_fresh_thread
from ..runtime.interop import EpicFunction
from ._program import emit_event, program
from .judge import judge_answers, net_win_rate
from .sampling import best_of_n, self_consistency
from .sot import sot

__all__ = ["DECODING_PROGRAMS", "DEFAULT_PROGRAMS", "DecodeSettings", "DecodingComparison", "DecodingProgram",
           "ProgramRun", "QuestionRun", "decode_compare", "decode_compare_async", "judge_comparison",
           "judge_comparison_async", "normal_decoding", "register_decoding_program"]

DEFAULT_PROGRAMS = ("normal", "sot", "sot-r", "sot-stream")


@program
def normal_decoding(question, max_tokens=256, temperature=0.0, seed=0):
    """Normal decoding: the question as it is, one call, streamed (so its first token is seen)."""
    chunks = llm(question, stream=True, max_tokens=max_tokens, temperature=temperature, seed=seed)
    answer = "".join(chunks)
    emit_event("program.decoding.answer", text=answer)
    return {"answer": answer, "program": "normal"}


@dataclass(frozen=True)
class DecodeSettings:
    """The knobs every decoding program reads the ones it needs from."""

    max_tokens: int = 256          # every generated part: a normal answer, a skeleton, each expansion, each sample
    n: int = 5                     # samples (self-consistency, best-of-n)
    temperature: float = 0.7       # of the sampled programs; normal decoding and SoT stay greedy
    top_p: float = 1.0
    seed: int = 0                  # sample k of a question uses seed + k (recorded with the results)
    expand_with: str = "auto"      # SoT's expansion prompt (see programs.sot)


@dataclass(frozen=True)
class DecodingProgram:
    """One entry of the registry: an epic function and how to call it on a question."""

    name: str
    label: str
    fn: EpicFunction
    build: Callable[[str, DecodeSettings], tuple[tuple, dict]]     # question, settings -> args, kwargs
    sampled: bool = False
    about: str = ""


def _sot_build(**fixed: Any) -> Callable[[str, DecodeSettings], tuple[tuple, dict]]:
    return lambda q, s: ((q,), {"max_tokens": s.max_tokens, "expand_with": s.expand_with, **fixed})


def _sampled_build(**fixed: Any) -> Callable[[str, DecodeSettings], tuple[tuple, dict]]:
    return lambda q, s: ((q,), {"n": s.n, "temperature": s.temperature, "top_p": s.top_p,
                                "max_tokens": s.max_tokens, "seed": s.seed, **fixed})


def _builtin_programs() -> dict[str, DecodingProgram]:
    """The built-in decoding programs, in the order the view shows them."""
    return {p.name: p for p in (
        DecodingProgram("normal", "normal", normal_decoding,
                        lambda q, s: ((q,), {"max_tokens": s.max_tokens}), about="one call, streamed"),
        DecodingProgram("sot", "SoT", sot, _sot_build(), about="skeleton, then every point expanded at once"),
        DecodingProgram("sot-r", "SoT-R", sot, _sot_build(router=True),
                        about="a router call first: SoT for list-like answers, else normal decoding"),
        DecodingProgram("sot-stream", "streaming SoT", sot, _sot_build(stream=True),
                        about="each point expanded as soon as its skeleton line is complete"),
        DecodingProgram("self-consistency", "self-consistency", self_consistency, _sampled_build(), sampled=True,
                        about="n samples at once, majority vote on the extracted answer"),
        DecodingProgram("best-of-n", "best-of-n", best_of_n, _sampled_build(), sampled=True,
                        about="n samples at once, each rated by the model, the best kept"),
    )}


DECODING_PROGRAMS: dict[str, DecodingProgram] = _builtin_programs()


def register_decoding_program(name: str, fn: EpicFunction, *, label: str | None = None,
                              build: Callable[[str, DecodeSettings], tuple[tuple, dict]] | None = None,
                              sampled: bool = False, about: str = "") -> DecodingProgram:
    """Add a decoding program: `fn(question, ...)` returns the answer (a string, or a dict with
    "answer" and optionally "points"/"expansions" or "samples"/"chosen"). `build` maps a question and
    the settings to fn's arguments (default: `fn(question, max_tokens=settings.max_tokens)`)."""
    if not isinstance(fn, EpicFunction):
        raise TypeError(f"register_decoding_program({name!r}): fn must be an epic function (@epic), not {fn!r}")
    entry = DecodingProgram(name, label or name, fn, build or (lambda q, s: ((q,), {"max_tokens": s.max_tokens})),
                            sampled=sampled, about=about)
    DECODING_PROGRAMS[name] = entry
    return entry


# ------------------------------------------------------------------------------------ the results
@dataclass
class ProgramRun:
    """One program on one question: what it answered and what it cost."""

    program: str
    ok: bool = True
    error: str = ""
    position: int = 0                      # its place in the question's (rotated) order
    elapsed: float = 0.0                   # wall seconds, end to end
    first_token: float | None = None       # seconds from the run's start to its first generated token
    tokens_out: int = 0
    tokens_in: int = 0
    prefilled: int = 0                     # prompt tokens computed (tokens_in less prefix-cache reuse)
    calls: int = 0
    capped: int = 0                        # calls that used their whole max_tokens
    batches: list[list[Any]] = field(default_factory=list)    # [batch id, start, end, calls], run-relative s
    lanes: list[list[Any]] = field(default_factory=list)      # per llm call: [id, start, end, batch id,
                                                                # tokens out, state, prompt preview]
    answer: str = ""
    points: list[list[Any]] = field(default_factory=list)     # SoT: [index, text]
    expansions: list[str] = field(default_factory=list)
    used_sot: bool | None = None
    samples: list[str] = field(default_factory=list)          # sampled programs: every sample
    chosen: int | None = None                                   # the sample returned
    detail: dict[str, Any] = field(default_factory=dict)       # votes / scores / ratings / extracted
    result: Any = field(default=None, repr=False)             # the RunResult (not saved)

    @property
    def max_batch(self) -> int:
        return max([b[3] for b in self.batches] + [0])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("result")
        return d


@dataclass
class QuestionRun:
    """Every program on one question, and the judge's verdicts (candidate vs normal decoding)."""

    question: str
    category: str = ""
    question_id: Any = None
    order: list[str] = field(default_factory=list)
    runs: dict[str, ProgramRun] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)   # program -> protocol -> verdict
    judge_error: str = ""

    def speedup(self, name: str) -> float | None:
        base, run = self.runs.get("normal"), self.runs.get(name)
        if base is None or run is None or not base.ok or not run.ok or run.elapsed <= 0:
            return None
        return base.elapsed / run.elapsed

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "category": self.category, "question_id": self.question_id,
                "order": self.order, "runs": {k: r.to_dict() for k, r in self.runs.items()},
                "verdicts": self.verdicts, "judge_error": self.judge_error}


@dataclass
class DecodingComparison:
    """What `decode_compare` returns and the view shows; `save`/`load` as JSON."""

    programs: list[str]
    questions: list[QuestionRun] = field(default_factory=list)
    backend: str = ""
    judge: str = ""                        # "" when not judged
    protocols: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    def verdict_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for q in self.questions:
            for per in q.verdicts.values():
                keys.update(dict.fromkeys(per))
        return list(keys)

    def net_win_rates(self, program: str, key: str) -> dict[str, dict[str, Any]]:
        """{"overall": net_win_rate(...), category: ...} for one program under one protocol key."""
        groups: dict[str, list[str]] = {"overall": []}
        for q in self.questions:
            v = q.verdicts.get(program, {}).get(key)
            if v is None:
                continue
            groups["overall"].append(v["verdict"])
            if q.category:
                groups.setdefault(q.category, []).append(v["verdict"])
        return {k: net_win_rate(vs) for k, vs in groups.items() if vs}

    def table(self) -> list[dict[str, Any]]:
        """One row per program: medians over the questions it answered."""
        rows = []
        for name in self.programs:
            runs = [q.runs[name] for q in self.questions if name in q.runs]
            good = [r for r in runs if r.ok]
            speedups = [s for q in self.questions if (s := q.speedup(name)) is not None]
            row: dict[str, Any] = {
                "program": name, "label": self.labels.get(name, name), "questions": len(runs),
                "failed": len(runs) - len(good),
                "median_s": _median([r.elapsed for r in good]),
                "median_speedup": _median(speedups),
                "median_first_token_s": _median([r.first_token for r in good if r.first_token is not None]),
                "mean_tokens_out": _mean([r.tokens_out for r in good]),
                "mean_prefilled": _mean([r.prefilled for r in good]),
                "mean_answer_chars": _mean([len(r.answer) for r in good]),
                "capped_runs": sum(r.capped > 0 for r in good),
                "max_batch": max([r.max_batch for r in good] + [0]),
                "net_win": {k: self.net_win_rates(name, k).get("overall") for k in self.verdict_keys()},
            }
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"programs": self.programs, "backend": self.backend, "judge": self.judge,
                "protocols": self.protocols, "settings": self.settings, "labels": self.labels,
                "finished": self.finished, "questions": [q.to_dict() for q in self.questions],
                "table": self.table()}

    def save(self, path: str | Path) -> Path:
        """Write the comparison as JSON (every answer, timing, verdict and raw judge reply)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DecodingComparison:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecodingComparison:
        qs = []
        for q in d.get("questions", []):
            runs = {k: ProgramRun(**r) for k, r in q.get("runs", {}).items()}
            qs.append(QuestionRun(q["question"], q.get("category", ""), q.get("question_id"), q.get("order", []),
                                  runs, q.get("verdicts", {}), q.get("judge_error", "")))
        return cls(d["programs"], qs, d.get("backend", ""), d.get("judge", ""), d.get("protocols", []),
                   d.get("settings", {}), d.get("labels", {}), d.get("finished", True))

    def summary(self) -> str:
        """The per-program table as text (what `repr` shows; the notebook view is widgets.DecodeView,
        which `%load_ext epic_kernel` registers as this class's HTML display)."""
        head = (f"decoding comparison · {self.backend} · {len(self.questions)} question"
                f"{'s' * (len(self.questions) != 1)}" + (f" · judge {self.judge}" if self.judge else ""))
        lines = [head]
        for r in self.table():
            sp = "" if r["median_speedup"] is None else f"{r['median_speedup']:.2f}x"
            t = "-" if r["median_s"] is None else f"{r['median_s']:.2f} s"
            ft = "-" if r["median_first_token_s"] is None else f"{r['median_first_token_s']:.2f} s"
            tok = "-" if r["mean_tokens_out"] is None else f"{r['mean_tokens_out']:.0f}"
            wins = " ".join(f"{k} {_rate(v)}" for k, v in r["net_win"].items())
            lines.append(f"  {r['label']:<18} {t:>9} {sp:>7}  first token {ft:>8}  tokens out {tok:>5}"
                         + (f"  net win {wins}" if wins else "") + (f"  {r['failed']} failed" if r["failed"] else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _rate(v: dict[str, Any] | None) -> str:
    if v is None or v["net_win_rate"] is None:
        return "-"
    return f"{v['net_win_rate']:+.2f}" + (f" ({v['unparsed']} unparsed)" if v["unparsed"] else "")


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


# ------------------------------------------------------------------------------------------ running
class _Probe:
    """An observer of one run: when it started and when its first token arrived."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.first: float | None = None

    def on_event(self, ev: Any) -> None:
        if ev.kind == "run.start":
            self.start = ev.t
        elif ev.kind in ("call.stream", "call.done") and ev.call is not None and ev.call.fn == "llm":
            if self.first is None or ev.t < self.first:
                self.first = ev.t


def _questions(questions: Any) -> list[QuestionRun]:
    if isinstance(questions, (str, dict)):
        questions = [questions]
    out = []
    for i, q in enumerate(questions):
        if isinstance(q, str):
            out.append(QuestionRun(q, question_id=i + 1))
        elif isinstance(q, dict):
            text = q.get("question") or q.get("text") or (q.get("turns") or [None])[0]
            if not text:
                raise ValueError(f"question {i + 1}: a dict needs a 'question' (or 'text', or 'turns') entry")
            out.append(QuestionRun(text, q.get("category", ""), q.get("question_id", q.get("id", i + 1))))
        else:
            raise TypeError(f"question {i + 1}: a string or a dict, not {type(q).__name__}")
    if not out:
        raise ValueError("decode_compare needs at least one question")
    return out


def _entries(programs: Iterable[str]) -> list[DecodingProgram]:
    names = list(programs)
    unknown = [p for p in names if p not in DECODING_PROGRAMS]
    if unknown:
        raise ValueError(f"unknown decoding program {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(DECODING_PROGRAMS)} (or register_decoding_program)")
    if not names:
        raise ValueError("decode_compare needs at least one decoding program")
    return [DECODING_PROGRAMS[p] for p in dict.fromkeys(names)]


def rotated(names: list[str], k: int) -> list[str]:
    """The order for question k: the list rotated by k (question 0 keeps it)."""
    k %= len(names)
    return names[k:] + names[:k]


async def run_program(entry: DecodingProgram, question: str, backend: Backend, settings: DecodeSettings,
                      position: int = 0, strategy: str = "opportunistic") -> ProgramRun:
    """One timed run of one program on one question (nothing else on the backend meanwhile).
    `strategy="sequential"`: its calls one at a time (the benchmark's one-by-one baseline)."""
    args, kwargs = entry.build(question, settings)
    probe = _Probe()
    out = ProgramRun(entry.name, position=position)
    try:
        res = await call_function_async(entry.fn, args, kwargs, backend=backend, observers=[probe.on_event],
                                        strategy=strategy)
    except EpicError as e:
        res = e.result
        out.ok = False
        out.error = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if res is None:
        return out
    out.result = res
    _measure(out, res, probe, settings.max_tokens)
    if out.ok:
        _read_value(out, res.value)
    return out


def _measure(out: ProgramRun, res: Any, probe: _Probe, max_tokens: int) -> None:
    out.elapsed = res.elapsed
    start = probe.start if probe.start is not None else res.start
    out.first_token = None if probe.first is None else max(0.0, probe.first - start)
    llm_calls = [c for c in res.calls if c.fn == "llm"]
    out.calls = len(llm_calls)
    out.tokens_out = sum(c.tokens_out or 0 for c in llm_calls)
    out.tokens_in = sum(c.tokens_in or 0 for c in llm_calls)
    out.prefilled = sum(max(0, (c.tokens_in or 0) - (c.tokens_reused or 0)) for c in llm_calls)
    out.capped = sum((c.tokens_out or 0) >= max_tokens for c in llm_calls)
    batches: dict[int, list[Any]] = {}
    for c in llm_calls:
        if c.batch_id is None or c.end is None:
            continue
        b = batches.setdefault(c.batch_id, [c.batch_id, c.start - res.start, c.end - res.start, 0])
        b[1], b[2], b[3] = min(b[1], c.start - res.start), max(b[2], c.end - res.start), b[3] + 1
    out.batches = [[b, round(s, 4), round(e, 4), n] for b, s, e, n in sorted(batches.values())]
    end = res.start + res.elapsed
    out.lanes = [[c.id, round(c.start - res.start, 4), round((c.end if c.end is not None else end) - res.start, 4),
                  c.batch_id, c.tokens_out or 0, c.state, c.args_preview[:160]] for c in llm_calls]


def _read_value(out: ProgramRun, value: Any) -> None:
    if isinstance(value, str):
        out.answer = value
        return
    if not isinstance(value, dict):
        out.answer = str(value)
        return
    out.answer = str(value.get("answer", ""))
    out.points = [list(p) for p in value.get("points", [])]
    out.expansions = [str(e) for e in value.get("expansions", [])]
    out.used_sot = value.get("used_sot")
    out.samples = [str(s) for s in value.get("samples", [])]
    out.chosen = value.get("chosen")
    out.detail = {k: value[k] for k in ("votes", "scores", "ratings", "extracted") if k in value and value[k]}


async def judge_question(q: QuestionRun, judge: Backend, protocols: tuple[str, ...], metrics: tuple[str, ...],
                         max_tokens: int = 256) -> None:
    """Every program's answer against normal decoding's, all judge calls in one parallel epic run."""
    base = q.runs.get("normal")
    names = [n for n, r in q.runs.items() if n != "normal" and r.ok]
    if base is None or not base.ok or not names:
        return
    try:
        res = await call_function_async(judge_answers, (q.question, [q.runs[n].answer for n in names], base.answer,
                                                        tuple(protocols), tuple(metrics), max_tokens), {},
                                        backend=judge)
    except EpicError as e:
        q.judge_error = (str(e).strip().splitlines() or ["the judge failed"])[0]
        return
    for name, verdicts in zip(names, res.value, strict=True):
        q.verdicts[name] = verdicts


async def decode_compare_async(questions: Any, *, programs: Iterable[str] = DEFAULT_PROGRAMS, backend: Any = None,
                               model: str | None = None, judge: Any = None, judge_model: str | None = None,
                               protocols: Iterable[str] = ("fastchat",), metrics: Iterable[str] = ("general",),
                               max_tokens: int = 256, n: int = 5, temperature: float = 0.7, top_p: float = 1.0,
                               seed: int = 0, expand_with: str = "auto",
                               on_update: Callable[[DecodingComparison], None] | None = None) -> DecodingComparison:
    """Run each question under each decoding program (timed alone, order rotated) and judge them.

    `questions`: a string, a dict ({"question", "category", "question_id"}: a Vicuna-80 line works)
    or a list of them. `programs`: names in `DECODING_PROGRAMS`. `judge`: None (no verdicts),
    "self" (the answer backend), or a backend (name or instance) to judge on. `protocols`: "fastchat"
    and/or "llmzoo"; `metrics`: LLMZoo's metrics to rank on. `on_update` is called with the
    comparison after every run and every verdict (a live view redraws from it)."""
    from .judge import LLMZOO_METRICS, PROTOCOLS

    protocols, metrics = tuple(protocols), tuple(metrics)
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"unknown judge protocol {p!r}; choose from {', '.join(PROTOCOLS)}")
    for m in metrics:
        if m not in LLMZOO_METRICS:
            raise ValueError(f"unknown LLMZoo metric {m!r}; choose from {', '.join(LLMZOO_METRICS)}")
    entries = _entries(programs)
    qs = _questions(questions)
    settings = DecodeSettings(max_tokens=max_tokens, n=n, temperature=temperature, top_p=top_p, seed=seed,
                              expand_with=expand_with)
    answer_backend = await asyncio.to_thread(resolve_backend, backend, {"model": model})
    judge_backend = None
    if judge is not None:
        judge_backend = answer_backend if judge == "self" else await asyncio.to_thread(
            resolve_backend, judge, {"model": judge_model})
    same = judge_backend is answer_backend
    cmp = DecodingComparison(programs=[e.name for e in entries], backend=describe_spec(answer_backend, model),
                             judge="" if judge_backend is None else describe_spec(judge_backend, judge_model),
                             protocols=list(protocols) if judge_backend is not None else [],
                             settings=asdict(settings), labels={e.name: e.label for e in entries})
    if judge_backend is not None and "llmzoo" in protocols:
        cmp.settings["llmzoo_metrics"] = list(metrics)
    update = on_update or (lambda _c: None)
    await _warm_up(answer_backend)
    background: list[asyncio.Task] = []
    try:
        for k, q in enumerate(qs):
            cmp.questions.append(q)
            q.order = rotated([e.name for e in entries], k)
            for pos, name in enumerate(q.order):
                q.runs[name] = await run_program(DECODING_PROGRAMS[name], q.question, answer_backend, settings, pos)
                update(cmp)
            if judge_backend is None:
                continue
            job = judge_question(q, judge_backend, protocols, metrics)
            if same:
                await job                       # the answer model is free again only when the judge is done
                update(cmp)
            else:
                task = asyncio.ensure_future(job)
                task.add_done_callback(lambda _t: update(cmp))
                background.append(task)
        if background:
            await asyncio.gather(*background)
    finally:
        for t in background:
            t.cancel()
    cmp.finished = True
    update(cmp)
    return cmp


def decode_compare(questions: Any, **kwargs: Any) -> DecodingComparison:
    """`decode_compare_async` from synchronous code (a private thread when this thread runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(decode_compare_async(questions, **kwargs))
    return in_fresh_thread(lambda: decode_compare_async(questions, **kwargs), name="epic-decode")


decode_compare.__signature__ = inspect.signature(decode_compare_async)     # help() shows every option


async def judge_comparison_async(cmp: DecodingComparison, judge: Any, *, protocols: Iterable[str] = ("fastchat",),
                                 metrics: Iterable[str] = ("general",)) -> DecodingComparison:
    """Judge (again) the answers of a finished comparison on `judge` (a backend or its name), without
    answering again: every question's judge calls at once. Verdicts under the same protocol key are
    replaced; the comparison is returned (changed in place)."""
    backend = await asyncio.to_thread(resolve_backend, judge, {})
    protocols, metrics = tuple(protocols), tuple(metrics)
    await asyncio.gather(*(judge_question(q, backend, protocols, metrics) for q in cmp.questions))
    cmp.judge = describe_spec(backend)
    cmp.protocols = list(protocols)
    if "llmzoo" in protocols:
        cmp.settings["llmzoo_metrics"] = list(metrics)
    return cmp


def judge_comparison(cmp: DecodingComparison, judge: Any, **kwargs: Any) -> DecodingComparison:
    """`judge_comparison_async` from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(judge_comparison_async(cmp, judge, **kwargs))
    return in_fresh_thread(lambda: judge_comparison_async(cmp, judge, **kwargs), name="epic-judge")


async def _warm_up(backend: Backend) -> None:
    """One 1-token request before the first timed run (a local model's first decode pays one-off costs)."""
    try:
        await backend.generate(LLMRequest.build("Hi", params=SamplingParams(max_tokens=1)))
    except Exception:                        # a warm-up never stops the comparison; the runs report
        pass
