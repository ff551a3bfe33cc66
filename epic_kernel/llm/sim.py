"""A deterministic simulated model: scripted or hash-derived answers behind a GPU-like latency model.

Why it exists: teaching, tests and benchmarks need a model whose answers are repeatable and whose
timing behaves like a real batcher (so opportunistic evaluation visibly wins), without loading
weights. Everything here is pure Python and asyncio; nothing blocks the event loop.

Answers (`SimBackend.answer`)
    1. Scripted rules `(pattern, reply)`, first match wins: `re.search(pattern, text, re.DOTALL)` on
       the last user message (the raw prompt when `raw=True`). `reply` is a template for
       `match.expand` (`r"\\1"` works) or a callable `(request, match) -> str`.
    2. Otherwise a pseudo-sentence from a fixed vocabulary, picked by a `random.Random` seeded with a
       SHA-256 digest of the request. Greedy requests (temperature 0) ignore `seed` and
       `sample_index`, like a real greedy decoder; sampled requests include them, so the k-th sample
       differs from the j-th. `max_tokens` and `stop` are not hashed: they only cut the answer, so a
       shorter budget yields a prefix of the longer answer, as with a real model.
    3. `choices=` returns one choice (hash-picked, or the first choice a scripted reply starts with);
       `regex=` returns a string that `re.fullmatch`es it (a scripted reply must already match it).
    4. The result is then cut to `max_tokens` (finish "length") and at the first `stop` string,
       which is not included (finish "stop"), in that order, as a server applies them.

Tokens are whitespace-separated words; one word costs `tokens_per_word` tokens.

Prefill convention: with `prefill="1."` the assistant turn is `prefill + continuation`, and the
response text is the *continuation only*, like chat APIs that accept a partial assistant message.
A scripted reply that starts with the prefill has it stripped; any other reply is taken as the
continuation. `regex=`/`choices=` constrain the continuation.

Latency (see `SimBackend` for the parameters)
    fixed `latency`: every request takes exactly that long, however many run at once (an
        infinitely parallel remote service); used to time the evaluator itself.
    batch-aware (default): pending requests form one batch when the feeding runs are all quiescent
        (`on_all_quiescent`), when `max_batch_size` are pending, or `flush_ms` after the first one
        arrived. One batch runs at a time per event loop (static batching); newcomers wait for the
        next batch, which starts as soon as the current one ends. A batch with B live requests costs
        `prefill_s * f(B)`, then `per_token_s * f(B)` per decode step, f(B) = 1 + batch_penalty*(B-1).
        B counts the requests still decoding, so finished and cancelled requests leave the batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import re._constants as _c  # private but stable since 3.11, where the public sre_parse is deprecated
import re._parser as _p
import string
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import Backend, LLMRequest, LLMResponse, StreamChunk, UnsupportedFeature

__all__ = ["SimBackend", "SimScriptError", "SimStats"]

Reply = str | Callable[[LLMRequest, re.Match[str]], str]


class SimScriptError(UnsupportedFeature):
    """A scripted answer contradicts the request's constraint (`regex=`/`choices=`), or a regex is
    too exotic for the sim to produce a match. Fix the script or the constraint; the sim never
    silently returns an answer a real constrained decoder could not have produced."""


@dataclass(slots=True)
class SimStats:
    """Counters for tests and benchmarks. Mutated only on the loop that owns the request."""

    requests: int = 0                                   # requests accepted (generate + stream)
    batches: int = 0                                    # batches started (batch-aware mode only)
    batch_sizes: list[int] = field(default_factory=list)  # live requests when each batch started
    cancelled: int = 0                                  # requests cancelled before they finished
    service_s: list[float] = field(default_factory=list)  # simulated compute seconds per finished
    #                                                     request (queueing excluded): a model
    #                                                     quantity, so tests never read a clock


# A fixed vocabulary: answers read like (meaningless) English so notebooks and traces look plausible.
_VOCAB = tuple("""
the a model answer question point idea result value system step plan reason example detail method
first second third next final simple clear useful careful quick small large early late main key
is are was can will should may could makes gives shows needs uses finds builds keeps
data graph call batch token program function variable loop branch list string number text
because therefore however also then often usually rarely always never here there now
parallel sequential opportunistic independent pending ready finished waiting running
and or but so with without from into over under about between through after before
""".split())

_WORD = re.compile(r"\s*\S+")


def _split(text: str) -> tuple[list[str], str]:
    """Split into word pieces that keep their leading whitespace, plus trailing whitespace, so that
    `"".join(words) + tail == text` (stream chunks always concatenate to the answer)."""
    words = _WORD.findall(text)
    return words, text[sum(map(len, words)):]


def _count_words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------------------------
# Regex sampling: walk the `re._parser` tree and build one matching string
# ---------------------------------------------------------------------------------------------

_MAX_REPEAT = 8                     # an unbounded repeat (`*`, `+`, `{m,}`) emits at most m+8 copies
_POOL = string.ascii_letters + string.digits + " _-.,:;!?/()'\"@#$%&*+=<>[]{}|~^`\\"
_CATEGORY = {
    _c.CATEGORY_DIGIT: string.digits, _c.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _c.CATEGORY_SPACE: " ",
}


class _RegexSampler:
    """Produce a string matching a simple regex: literals, classes, `. ? * + {m,n}`, alternation,
    groups and backreferences. Anchors and lookarounds emit nothing and are checked afterwards by
    `re.fullmatch`; the caller retries with fresh randomness and gives up with a clear error."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.groups: dict[int, str] = {}

    def sample(self, pattern: str) -> str:
        self.groups = {}
        return self._seq(_p.parse(pattern))

    def _seq(self, items: Iterable[tuple[Any, Any]]) -> str:
        return "".join(self._one(op, av) for op, av in items)

    def _one(self, op: Any, av: Any) -> str:
        rng = self.rng
        if op is _c.LITERAL:
            return chr(av)
        if op is _c.NOT_LITERAL:
            return rng.choice([ch for ch in _POOL if ord(ch) != av])
        if op is _c.ANY:
            return rng.choice(string.ascii_lowercase)
        if op is _c.IN:
            return self._in(av)
        if op is _c.BRANCH:
            return self._seq(rng.choice(av[1]))
        if op is _c.SUBPATTERN:
            gid, _add, _del, sub = av
            text = self._seq(sub)
            if gid is not None:
                self.groups[gid] = text
            return text
        if op is _c.ATOMIC_GROUP:
            return self._seq(av)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            hi = max(lo, min(hi, lo + _MAX_REPEAT))
            return "".join(self._seq(sub) for _ in range(rng.randint(lo, hi)))
        if op is _c.GROUPREF:
            return self.groups.get(av, "")
        if op is _c.GROUPREF_EXISTS:
            gid, yes, no = av
            return self._seq(yes if gid in self.groups else (no or []))
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            return ""
        raise SimScriptError(f"the sim cannot generate text for regex construct {op}")

    def _in(self, items: list[tuple[Any, Any]]) -> str:
        if items and items[0][0] is _c.NEGATE:
            banned = self._members(items[1:], exhaustive=True)
            allowed = [ch for ch in _POOL if ch not in banned]
            if not allowed:
                raise SimScriptError("the sim cannot find a character outside this negated class")
            return self.rng.choice(allowed)
        return self.rng.choice(self._members(items, exhaustive=False))

    def _members(self, items: list[tuple[Any, Any]], *, exhaustive: bool) -> list[str]:
        """Characters of a positive class. A large range is sampled (not listed) unless we need the
        exact set to exclude it; categories use the ASCII members (`\\w` of 'é' never matters here)."""
        out: list[str] = []
        for op, av in items:
            if op is _c.LITERAL:
                out.append(chr(av))
            elif op is _c.RANGE:
                lo, hi = av
                if exhaustive:
                    out.extend(chr(i) for i in range(lo, hi + 1) if chr(i) in _POOL)
                else:
                    out.append(chr(self.rng.randint(lo, hi)))
            elif op is _c.CATEGORY and av in _CATEGORY:
                out.extend(_CATEGORY[av])
            elif op is _c.CATEGORY:      # \D \W \S: members of the pool outside the base category
                base = {_c.CATEGORY_NOT_DIGIT: _c.CATEGORY_DIGIT, _c.CATEGORY_NOT_WORD: _c.CATEGORY_WORD,
                        _c.CATEGORY_NOT_SPACE: _c.CATEGORY_SPACE}.get(av)
                if base is None:
                    raise SimScriptError(f"the sim cannot generate text for regex category {av}")
                out.extend(ch for ch in _POOL if ch not in _CATEGORY[base] and not ch.isspace())
            else:
                raise SimScriptError(f"the sim cannot generate text for regex class item {op}")
        return out


def _regex_match(pattern: str, rng: random.Random, attempts: int = 32) -> str:
    sampler = _RegexSampler(rng)
    for _ in range(attempts):
        text = sampler.sample(pattern)
        if re.fullmatch(pattern, text):
            return text
    raise SimScriptError(
        f"the sim could not generate a string matching regex={pattern!r} (anchors, lookarounds and "
        f"word boundaries are only checked, not planned for); script an answer for this prompt instead")


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    """The full, already-cut answer for one request: computed before it queues, so a script error
    raises at once and the batcher only has to pace the words out."""

    text: str
    words: list[str]          # pieces with their leading whitespace; "".join(words) + tail == text
    tail: str
    finish_reason: str
    tokens_in: int
    tokens_out: int           # == len(words) * tokens_per_word == decode steps

    def response(self, batch_id: int | None = None) -> LLMResponse:
        return LLMResponse(self.text, tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                           finish_reason=self.finish_reason, batch_id=batch_id)


@dataclass(eq=False, slots=True)
class _Job:
    """One request inside the batcher. `chunks` is set only for streams."""

    answer: _Answer
    done: asyncio.Future[LLMResponse]
    chunks: asyncio.Queue[StreamChunk | BaseException] | None = None
    batch_id: int | None = None
    cancelled: bool = False   # set by the caller's task when it is cancelled; the batch drops it


class _LoopState:
    """The batcher's state on one event loop. Every field is touched only from `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[_Job] = []                   # waiting for the next batch, arrival order
        self.timer: asyncio.TimerHandle | None = None   # flush_ms timer, armed by the first pending job
        self.batch: asyncio.Task[None] | None = None    # the running batch; at most one per loop


class SimBackend(Backend):
    """A deterministic simulated model (see the module docstring for answers and latency).

    Parameters
    ----------
    latency: if a number, every request takes exactly this many seconds regardless of batching.
    prefill_s, per_token_s, batch_penalty: the batch cost model, f(B) = 1 + batch_penalty*(B-1).
    max_batch_size: a batch starts at once when this many requests are pending.
    flush_ms: a batch starts at the latest this long after its first request arrived.
    answers: scripted `(pattern, reply)` rules, first match wins (see `add_answer`).
    seed: mixed into every hash-derived answer: a different seed is a different "model".
    tokens_per_word: how many tokens (and decode steps) one word costs.
    """

    name = "sim"
    default_model = "sim-1"
    capabilities = frozenset({"stream", "prefill", "raw", "seed", "regex", "choices"})

    def __init__(self, latency: float | None = None, prefill_s: float = 0.02, per_token_s: float = 0.005,
                 batch_penalty: float = 0.02, max_batch_size: int = 64, flush_ms: float = 2.0,
                 answers: Iterable[tuple[str | re.Pattern[str], Reply]] | None = None, seed: int = 0,
                 tokens_per_word: int = 1) -> None:
        super().__init__()
        if latency is not None and latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {latency}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        if tokens_per_word < 1:
            raise ValueError(f"tokens_per_word must be >= 1, not {tokens_per_word}")
        self.latency = latency
        self.prefill_s = prefill_s
        self.per_token_s = per_token_s
        self.batch_penalty = batch_penalty
        self.max_batch_size = max_batch_size
        self.flush_ms = flush_ms
        self.seed = seed
        self.tokens_per_word = tokens_per_word
        self.stats = SimStats()
        self._rules: list[tuple[re.Pattern[str], Reply]] = []
        for pattern, reply in answers or ():
            self.add_answer(pattern, reply)
        self._lock = threading.Lock()          # guards _states and _next_batch
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary())
        self._next_batch = 0

    # -- answers ---------------------------------------------------------------------------

    def add_answer(self, pattern: str | re.Pattern[str], reply: Reply) -> None:
        """Script a reply: the first rule whose pattern `re.search`es the prompt wins. `reply` is a
        `match.expand` template (`r"\\1"`) or a callable `(request, match) -> str`."""
        if not (isinstance(reply, str) or callable(reply)):
            raise TypeError(f"a sim answer must be a string or a callable, not {type(reply).__name__}")
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.DOTALL)
        self._rules.append((compiled, reply))

    def answer(self, request: LLMRequest) -> LLMResponse:
        """The response `generate` will return, without waiting (`batch_id` unset). Pure: the same
        request always gives the same answer, which is what makes the sim usable in tests."""
        return self._answer(request).response()

    def _answer(self, request: LLMRequest) -> _Answer:
        self.check(request)
        p = request.params
        rng = random.Random(self._digest(request))
        text = self._continuation(request, rng)
        # max_tokens first, then stop: a server stops at whichever comes first in the token stream.
        words, _ = _split(text)
        budget = max(p.max_tokens, 0) // self.tokens_per_word
        finish = "stop"
        if len(words) > budget:
            text, finish = "".join(words[:budget]), "length"
        cuts = [i for i in (text.find(s) for s in p.stop if s) if i >= 0]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        words, tail = _split(text)
        return _Answer(text, words, tail, finish, tokens_in=self._tokens_in(request),
                       tokens_out=len(words) * self.tokens_per_word)

    def _continuation(self, request: LLMRequest, rng: random.Random) -> str:
        """The uncut continuation: scripted or hash-derived, then made to honour regex/choices."""
        p = request.params
        scripted = self._scripted(request)
        if p.choices is not None:
            choices = [c for c in p.choices if p.regex is None or re.fullmatch(p.regex, c)]
            if not choices:
                raise SimScriptError(f"no choice in {list(p.choices)!r} matches regex={p.regex!r}")
            if scripted is None:
                return rng.choice(choices)
            for c in choices:
                if scripted.startswith(c):
                    return c
            raise SimScriptError(f"the scripted answer {scripted[:60]!r} starts with none of the "
                                 f"choices {choices!r}")
        if p.regex is not None:
            if scripted is not None:
                if not re.fullmatch(p.regex, scripted):
                    raise SimScriptError(f"the scripted answer {scripted[:60]!r} does not match "
                                         f"regex={p.regex!r}")
                return scripted
            free = self._free_text(request, rng)
            return free if re.fullmatch(p.regex, free) else _regex_match(p.regex, rng)
        return scripted if scripted is not None else self._free_text(request, rng)

    def _scripted(self, request: LLMRequest) -> str | None:
        if not self._rules:
            return None
        target = _prompt_target(request)
        for pattern, reply in self._rules:
            m = pattern.search(target)
            if m is None:
                continue
            text = m.expand(reply) if isinstance(reply, str) else reply(request, m)
            if not isinstance(text, str):
                raise TypeError(f"the sim answer for {pattern.pattern!r} returned "
                                f"{type(text).__name__}, not str")
            if request.prefill and text.startswith(request.prefill):
                text = text[len(request.prefill):]
            return text
        return None

    def _free_text(self, request: LLMRequest, rng: random.Random) -> str:
        """8-40 vocabulary words in sentences of 4-12 words. After a prefill that does not end in
        whitespace the continuation starts with a space and in lower case (it continues a sentence).
        A request for a skeleton (SoT's "giving the skeleton" prompt, or the prefill "1.") gets a numbered
        list of 3-6 short points instead, as a model following the Skeleton-of-Thought prompt would."""
        if (request.prefill or "").strip() == "1." or "giving the skeleton" in _prompt_target(request).lower():
            return self._skeleton(request, rng)
        n = rng.randint(8, 40)
        words: list[str] = []
        sentence_left = 0
        continuing = bool(request.prefill)
        for i in range(n):
            w = rng.choice(_VOCAB)
            if sentence_left == 0:
                sentence_left = rng.randint(4, 12)
                if not (continuing and i == 0):
                    w = w.capitalize()
            sentence_left -= 1
            if sentence_left == 0 or i == n - 1:
                w += "."
            words.append(w)
        text = " ".join(words)
        if request.prefill and not request.prefill[-1].isspace():
            text = " " + text
        return text

    def _skeleton(self, request: LLMRequest, rng: random.Random) -> str:
        points = [" ".join(rng.choice(_VOCAB) for _ in range(rng.randint(3, 5))) for _ in range(rng.randint(3, 6))]
        lines = [f"{k}. {p.capitalize()}" for k, p in enumerate(points, 1)]
        text = "\n".join(lines) + "\n"
        if (request.prefill or "").strip() == "1.":
            text = text[2:]                       # the prefill already wrote "1."
        return text

    def _digest(self, request: LLMRequest) -> bytes:
        p = request.params
        d: dict[str, Any] = {
            "sim_seed": self.seed, "model": request.model or self.default_model,
            "messages": request.messages, "prompt": request.prompt, "raw": request.raw,
            "prefill": request.prefill, "regex": p.regex, "choices": p.choices,
        }
        if not p.greedy:   # greedy decoding is one answer per prompt; sampling varies with these
            d.update(temperature=p.temperature, top_p=p.top_p, seed=p.seed, sample_index=request.sample_index)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).digest()

    @staticmethod
    def _tokens_in(request: LLMRequest) -> int:
        """Whitespace tokens of every message (or the raw prompt) plus the prefill, which the model
        reads as input too."""
        parts = [str(m.get("content", "")) for m in request.messages or ()]
        parts += [request.prompt or "", request.prefill or ""]
        return sum(_count_words(s) for s in parts)

    # -- latency model -----------------------------------------------------------------------

    def batch_cost(self, batch_size: int) -> float:
        """f(B) = 1 + batch_penalty*(B-1): how much slower one step is with B requests decoding."""
        return 1.0 + self.batch_penalty * max(batch_size - 1, 0)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """Answer after the simulated latency. Cancelling the caller removes the request from its
        pending queue or running batch (the batch then decodes faster, as a real one would)."""
        answer = self._answer(request)
        self.stats.requests += 1
        if self.latency is not None:
            await self._sleep_cancellable(self.latency)
            self.stats.service_s.append(self.latency)
            return answer.response()
        job = _Job(answer, asyncio.get_running_loop().create_future())
        state = self._enqueue(job)
        try:
            return await job.done
        except asyncio.CancelledError:
            self._drop(state, job)
            raise

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        """One chunk per word, each when its last token's decode step ends; the final chunk carries
        the `LLMResponse`. The chunks' texts concatenate to `response.text`."""
        answer = self._answer(request)
        self.stats.requests += 1
        if self.latency is not None:
            async for chunk in self._stream_fixed(answer):
                yield chunk
            return
        loop = asyncio.get_running_loop()
        job = _Job(answer, loop.create_future(), chunks=asyncio.Queue())
        state = self._enqueue(job)
        finished = False
        try:
            while True:
                item = await job.chunks.get()        # type: ignore[union-attr]
                if isinstance(item, BaseException):
                    raise item
                if item.response is not None:
                    finished = True
                    yield item
                    return
                yield item
        finally:
            if not finished:     # cancelled, closed early, or failed: leave the batch
                self._drop(state, job)

    async def _stream_fixed(self, answer: _Answer) -> AsyncIterator[StreamChunk]:
        steps = answer.tokens_out
        dt = self.latency / steps if steps else self.latency    # type: ignore[operator]
        try:
            if not steps:
                await asyncio.sleep(dt)
            for k, word in enumerate(answer.words):
                await asyncio.sleep(dt * self.tokens_per_word)
                if k < len(answer.words) - 1:
                    yield StreamChunk(word)
        except (asyncio.CancelledError, GeneratorExit):
            self.stats.cancelled += 1
            raise
        self.stats.service_s.append(self.latency)              # type: ignore[arg-type]
        last = answer.words[-1] if answer.words else ""
        yield StreamChunk(last + answer.tail, answer.response())

    async def _sleep_cancellable(self, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise

    def on_all_quiescent(self) -> None:
        """Every feeding run waits on calls: flush each loop's pending requests now. Callable from
        any thread; the flush itself runs on the owning loop, after the tasks already scheduled there
        (so calls dispatched just before the notification still join this batch).

        Called on a loop (the evaluator's case), that loop gets its state now: its first requests may
        still be tasks that have not run yet, and they must join the batch this flush starts."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        with self._lock:
            if here is not None and here not in self._states:
                self._states[here] = _LoopState(here)
            states = list(self._states.values())
        for state in states:
            try:
                state.loop.call_soon_threadsafe(self._flush, state)
            except RuntimeError:     # that loop is closed; nothing of it can be pending
                pass

    # The batcher. Invariants: a job is in at most one of (state.pending, a running batch); at most
    # one batch task per loop; `state.timer` is armed iff pending is non-empty and no batch runs or
    # has been asked to start.

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(loop)
        return state

    def _enqueue(self, job: _Job) -> _LoopState:
        state = self._state()
        state.pending.append(job)
        if state.batch is not None:
            return state             # waits for the current batch to end
        if len(state.pending) >= self.max_batch_size:
            self._start_batch(state)
        elif state.timer is None:
            state.timer = state.loop.call_later(self.flush_ms / 1000, self._flush, state)
        return state

    def _flush(self, state: _LoopState) -> None:
        if state.batch is None and state.pending:
            self._start_batch(state)

    def _start_batch(self, state: _LoopState) -> None:
        assert state.batch is None, "one batch at a time per loop"
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        jobs = state.pending[: self.max_batch_size]
        del state.pending[: self.max_batch_size]
        with self._lock:
            self._next_batch += 1
            batch_id = self._next_batch
        state.batch = state.loop.create_task(self._run_batch(state, jobs, batch_id))

    def _drop(self, state: _LoopState, job: _Job) -> None:
        finished = job.done.done() and not job.done.cancelled()
        if job.cancelled or finished:
            return
        job.cancelled = True
        self.stats.cancelled += 1
        if job in state.pending:
            state.pending.remove(job)
            if not state.pending and state.timer is not None:
                state.timer.cancel()
                state.timer = None

    async def _run_batch(self, state: _LoopState, jobs: list[_Job], batch_id: int) -> None:
        """Prefill, then decode step by step; each job leaves the batch after its own tokens."""
        for job in jobs:
            job.batch_id = batch_id
        active = [j for j in jobs if not j.cancelled]
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(active))
        t = 0.0                                   # simulated seconds since the batch started
        step = 0
        try:
            cost = self.prefill_s * self.batch_cost(len(active))
            await asyncio.sleep(cost)
            t += cost
            while True:
                active = [j for j in active if not j.cancelled]
                for job in active:
                    if job.answer.tokens_out <= step:
                        self._deliver(job, t)
                active = [j for j in active if j.answer.tokens_out > step]
                if not active:
                    break
                cost = self.per_token_s * self.batch_cost(len(active))
                await asyncio.sleep(cost)
                t += cost
                step += 1
                if step % self.tokens_per_word == 0:
                    k = step // self.tokens_per_word - 1           # the word whose last token ended
                    for job in active:
                        if job.chunks is not None and step < job.answer.tokens_out:
                            job.chunks.put_nowait(StreamChunk(job.answer.words[k]))
        except BaseException as exc:
            # Only reachable if the batch task itself is cancelled (loop shutdown, aclose): fail
            # every job still waiting so no caller hangs.
            for job in active:
                if not job.done.done():
                    job.done.cancel()
                if job.chunks is not None:
                    job.chunks.put_nowait(asyncio.CancelledError() if isinstance(
                        exc, asyncio.CancelledError) else exc)
            raise
        finally:
            state.batch = None
            if state.pending and not state.loop.is_closed():
                self._start_batch(state)          # newcomers already waited a whole batch

    def _deliver(self, job: _Job, t: float) -> None:
        self.stats.service_s.append(t)
        response = job.answer.response(job.batch_id)
        if job.chunks is not None:
            last = job.answer.words[-1] if job.answer.words else ""
            job.chunks.put_nowait(StreamChunk(last + job.answer.tail, response))
        if not job.done.done():
            job.done.set_result(response)

    async def aclose(self) -> None:
        """Cancel this loop's running batch and pending requests (their callers see CancelledError)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        for job in state.pending:
            job.done.cancel()
            if job.chunks is not None:
                job.chunks.put_nowait(asyncio.CancelledError())
        state.pending.clear()
        if state.batch is not None:
            state.batch.cancel()

    def close(self) -> None:
        """Forget per-loop state; safe to call twice. Use `aclose` on a loop to cancel its work."""
        with self._lock:
            self._states.clear()

    def identity(self) -> dict[str, Any]:
        """Answers depend on the seed, the script and the token size, never on the latency model."""
        from .identity import describe

        return {**super().identity(), "seed": self.seed, "tokens_per_word": self.tokens_per_word,
                "script": describe(self._rules)}

    def describe(self) -> str:
        mode = f"latency={self.latency}s" if self.latency is not None else (
            f"batched prefill={self.prefill_s}s per_token={self.per_token_s}s")
        return f"sim:{self.default_model} ({mode})"


def _prompt_target(request: LLMRequest) -> str:
    """What scripted patterns search: the raw prompt, else the last user message (else the last)."""
    if request.raw or not request.messages:
        return request.prompt or ""
    users = [m for m in request.messages if m.get("role") == "user"]
    return str((users or list(request.messages))[-1].get("content", ""))
