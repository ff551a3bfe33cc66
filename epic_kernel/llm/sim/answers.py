"""What a sim request gets: a scripted reply, a script's text or hash-derived words, made to honour
`regex=`/`choices=`, then cut at `max_tokens` and `stop` (see the package docstring for the order)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from ..base import LLMRequest, LLMResponse
from .regex import regex_match
from .script import Reply, Script, SimScriptError, scripted

__all__ = ["VOCAB", "Answer", "SimAnswers", "split_words"]

# A fixed vocabulary: answers read like (meaningless) English so notebooks and traces look plausible.
VOCAB = tuple("""
the a model answer question point idea result value system step plan reason example detail method
first second third next final simple clear useful careful quick small large early late main key
is are was can will should may could makes gives shows needs uses finds builds keeps
data graph call batch token program function variable loop branch list string number text
because therefore however also then often usually rarely always never here there now
parallel sequential opportunistic independent pending ready finished waiting running
and or but so with without from into over under about between through after before
""".split())

_WORD = re.compile(r"\s*\S+")


def split_words(text: str) -> tuple[list[str], str]:
    """Split into word pieces that keep their leading whitespace, plus trailing whitespace, so that
    `"".join(words) + tail == text` (stream chunks always concatenate to the answer)."""
    words = _WORD.findall(text)
    return words, text[sum(map(len, words)):]
def _count_words(text: str) -> int:
    return len(text.split())

@dataclass(slots=True)
class Answer:
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


class SimAnswers:
    """The answer half of SimBackend (a mixin): the rules, the scripts and the synthesis.
    Expects `seed`, `tokens_per_word`, `default_model` and `check` from the backend."""

    seed: int
    tokens_per_word: int
    default_model: str
    _rules: list[tuple[re.Pattern[str], Reply]]
    _scripts: list[Script]

    def add_answer(self, pattern: str | re.Pattern[str], reply: Reply) -> None:
        """Script a reply: the first rule whose pattern `re.search`es the prompt wins. `reply` is a
        `match.expand` template (`r"\\1"`) or a callable `(request, match) -> str`."""
        if not (isinstance(reply, str) or callable(reply)):
            raise TypeError(f"a sim answer must be a string or a callable, not {type(reply).__name__}")
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.DOTALL)
        self._rules.append((compiled, reply))

    def add_script(self, script: Script) -> None:
        """Script the sim's free text: `script(request, rng)` returns the text a model would write
        for a request it recognises (using `rng`, seeded from the request, for any variation), or
        None to pass. Scripts are asked in the order added, after the `(pattern, reply)` rules."""
        if not callable(script):
            raise TypeError(f"a sim script must be callable, not {type(script).__name__}")
        self._scripts.append(script)

    def answer(self, request: LLMRequest) -> LLMResponse:
        """The response `generate` will return, without waiting (`batch_id` unset). Pure: the same
        request always gives the same answer, which is what makes the sim usable in tests."""
        return self._answer(request).response()

    def _answer(self, request: LLMRequest) -> Answer:
        self.check(request)
        p = request.params
        rng = random.Random(self._digest(request))
        text = self._continuation(request, rng)
        # max_tokens first, then stop: a server stops at whichever comes first in the token stream.
        words, _ = split_words(text)
        budget = max(p.max_tokens, 0) // self.tokens_per_word
        finish = "stop"
        if len(words) > budget:
            text, finish = "".join(words[:budget]), "length"
        cuts = [i for i in (text.find(s) for s in p.stop if s) if i >= 0]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        words, tail = split_words(text)
        return Answer(text, words, tail, finish, tokens_in=self._tokens_in(request),
                       tokens_out=len(words) * self.tokens_per_word)

    def _continuation(self, request: LLMRequest, rng: random.Random) -> str:
        """The uncut continuation: scripted or hash-derived, then made to honour regex/choices."""
        p = request.params
        scripted_text = scripted(self._rules, request)
        if p.choices is not None:
            choices = [c for c in p.choices if p.regex is None or re.fullmatch(p.regex, c)]
            if not choices:
                raise SimScriptError(f"no choice in {list(p.choices)!r} matches regex={p.regex!r}")
            if scripted_text is None:
                return rng.choice(choices)
            for c in choices:
                if scripted_text.startswith(c):
                    return c
            raise SimScriptError(f"the scripted answer {scripted_text[:60]!r} starts with none of the "
                                 f"choices {choices!r}")
        if p.regex is not None:
            if scripted_text is not None:
                if not re.fullmatch(p.regex, scripted_text):
                    raise SimScriptError(f"the scripted answer {scripted_text[:60]!r} does not match "
                                         f"regex={p.regex!r}")
                return scripted_text
            free = self._free_text(request, rng)
            return free if re.fullmatch(p.regex, free) else regex_match(p.regex, rng)
        return scripted_text if scripted_text is not None else self._free_text(request, rng)
    def _free_text(self, request: LLMRequest, rng: random.Random) -> str:
        """A script's text, else 8-40 vocabulary words in sentences of 4-12 words. After a prefill that
        does not end in whitespace the continuation starts with a space and in lower case (it
        continues a sentence)."""
        for script in self._scripts:
            text = script(request, rng)
            if text is not None:
                return text
        n = rng.randint(8, 40)
        words: list[str] = []
        sentence_left = 0
        continuing = bool(request.prefill)
        for i in range(n):
            w = rng.choice(VOCAB)
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
