"""Constrained decoding for the local backend: `regex=` and `choices=` become a per-request logits mask.

The batcher calls a request's `LogitsHook` once per decode step with the tokens generated so far;
the hook feeds the new ones to a token-level matcher and returns the logits with every token the
constraint forbids at -inf. This module's one job is to build those hooks.

Semantics (the sim and the guided OpenAI backends agree on the first two):

* The generated continuation, after any `prefill`, fully matches `regex` (`re.fullmatch`). The
  dialect is the Rust regex crate's: lookarounds, backreferences, `\\b` and `\\Z` are rejected up
  front, and `\\d`, `\\w`, `\\s` are ASCII (as in vLLM), a subset of Python's classes (their
  negations `\\D`, `\\W`, `\\S` are correspondingly wider). `choices` is the alternation of the
  escaped strings, so the answer is exactly one of them; with both, one of the choices that
  `re.fullmatch` the regex (as the sim does).
* EOS is allowed exactly when the text so far is a full match, and is the only token left once
  nothing can follow. `ignore_eos` does not apply to constrained requests.
* `max_tokens`: the last token the budget allows must leave a full match (EOS included when the
  text already matches; sampling draws from the best 32 such tokens). If no token can, the call
  fails with `ConstraintIncomplete` naming the budget: a constrained call never returns a
  non-matching answer. Only that last token looks ahead, so a constraint that needs several more
  tokens (`[0-9]+é` after 47 digits of a 48-token budget) can still fail: raise `max_tokens`.
* `stop=` is ignored for constrained requests: the constraint already decides where the answer
  ends, and a stop string could cut it into a non-matching one.
* An invalid regex, empty or non-string choices, or choices that all fail the regex raise
  `InvalidConstraint` (an `UnsupportedFeature` and a `ValueError`) from `check()`, before dispatch.

Library: llguidance (the engine behind guidance, and a vLLM/SGLang structured-output backend). Its
lexer is lazy, so a regex compiles in about 1 ms whatever the vocabulary, and it has no
dependencies. Measured on this project's two tokenizers (2-core CPU, the three libraries side by side):

    compile per regex       tiny (512 tok)   SmolLM2 (49k tok)   mask per step (SmolLM2)
    llguidance 1.9.1        0.7-4.8 ms       1.0-6.1 ms          15-335 us ([0-9]+ ... [A-Z][a-z ]{0,40}\\.)
    xgrammar 0.2.8          0.5-2.4 ms       0.5-323 ms; 1.8 s for [a-z ]{0,200}; needs triton, tvm-ffi
    outlines-core 0.2.14    full index: 105 ms for [A-Z][a-z ]{0,40}\\. on SmolLM2, growing with the bounds

xgrammar's masks are faster per step (4-85 us) but its precompile stalls a notebook cell for seconds
on bounded repeats and its wheel pulls in triton. The one-off tokenizer conversion (0.57 s for
SmolLM2) is made once per batcher, off the event loop, and compiled matchers are cached per regex
(LRU), so a map of 32 calls with the same `choices=` compiles once and deep-copies 32 times (~10 us).
In the batcher, a hook (mask, unpack, in-place fill) costs about 0.5 ms per row per step on SmolLM2
with `[a-z ]*`: 7 % of the decode time of 32 concurrent calls on 2 CPUs
(benchmarks/bench_constrained_decoding.py); batches without constraints keep their argmax fast path.

Caveat: the matcher reasons about token bytes and the batcher decodes with `tokenizer.decode`; the
two agree for byte-level BPE tokenizers (both models here), not for tokenizers whose decode
rewrites text (SentencePiece prefix-space stripping, `clean_up_tokenization_spaces`).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .base import SamplingParams, UnsupportedFeature
from .errors import BackendError

__all__ = ["ConstraintHook", "ConstraintIncomplete", "Constrainer", "InvalidConstraint", "constrainer_for",
           "constraint_regex", "is_constrained", "validate"]


class InvalidConstraint(UnsupportedFeature, ValueError):
    """`regex=` does not compile, or `choices=` is empty, holds non-strings, or no choice matches `regex=`."""


class ConstraintIncomplete(BackendError):
    """`max_tokens` ran out before the answer could match its `regex=`/`choices=`."""


def is_constrained(params: SamplingParams) -> bool:
    return params.regex is not None or params.choices is not None


def constraint_regex(params: SamplingParams) -> str | None:
    """The one regex the output must fully match (None when unconstrained); raises InvalidConstraint."""
    if params.regex is not None and not isinstance(params.regex, str):
        raise InvalidConstraint(f"regex= must be a string, not {type(params.regex).__name__}")
    if params.choices is None:
        return params.regex
    bad = [c for c in params.choices if not isinstance(c, str)]
    if bad:
        raise InvalidConstraint(f"choices= must be strings; got {bad[0]!r}")
    if not params.choices:
        raise InvalidConstraint("choices= is empty: there is nothing the answer could be")
    choices = list(dict.fromkeys(params.choices))
    if params.regex is not None:
        _check_regex(params.regex)
        choices = [c for c in choices if re.fullmatch(params.regex, c)]
        if not choices:
            raise InvalidConstraint(f"no choice in {list(params.choices)!r} matches regex={params.regex!r}")
    return "(" + "|".join(re.escape(c) for c in choices) + ")"


def validate(params: SamplingParams) -> None:
    """Raise InvalidConstraint for a constraint no decoder could follow (no tokenizer needed)."""
    rx = constraint_regex(params)
    if rx is not None:
        _check_regex(rx)


def _check_regex(rx: str) -> None:
    msg = _grammar_error(rx)
    if msg:
        raise InvalidConstraint(f"invalid regex={rx!r}: {msg}")


def _grammar(rx: str) -> str:
    """The llguidance grammar for "the whole output fully matches rx". `\\d`, `\\w`, `\\s` mean their
    ASCII classes (as in vLLM's guided decoding), a subset of Python's, so a match here is a match
    for `re.fullmatch`; otherwise a random model happily writes Unicode digits Python may not know."""
    from llguidance import LLMatcher, regex_to_lark

    return LLMatcher.grammar_from_lark("start: /" + regex_to_lark(rx, "dws") + "/")


@lru_cache(maxsize=1024)
def _grammar_error(rx: str) -> str:
    """llguidance's verdict on a regex, reduced to its reason ("" when valid)."""
    from llguidance import LLMatcher

    msg = LLMatcher.validate_grammar(_grammar(rx))
    if msg.startswith("WARNING") or not msg:
        return ""
    for line in msg.splitlines():           # "error: unclosed group", "lookarounds not supported ..."
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return msg.splitlines()[0].split("): ", 1)[-1].strip()


# ---------------------------------------------------------------------------------------------
# Compiling against one tokenizer
# ---------------------------------------------------------------------------------------------

LAST_TOKEN_CANDIDATES = 32     # completing tokens kept on the budget's last step (see _completing)

_by_batcher: weakref.WeakKeyDictionary[Any, Constrainer] = weakref.WeakKeyDictionary()
_by_batcher_lock = threading.Lock()


def constrainer_for(batcher: Any, *, build: bool = True) -> Constrainer | None:
    """The batcher's Constrainer, built on first use (0.57 s for SmolLM2: call it off the event loop)."""
    with _by_batcher_lock:
        c = _by_batcher.get(batcher)
        if c is None and build:
            c = _by_batcher[batcher] = Constrainer(batcher.tokenizer, batcher.eos_ids)
        return c


class Constrainer:
    """Compiles constraints against one tokenizer and caches a pristine matcher per regex (LRU).

    Thread-safe: `hook()` runs on whichever event loop submits the request; the hooks it returns
    are then used only by the batcher's decode thread.
    """

    def __init__(self, tokenizer: Any, eos_ids: Sequence[int], *, max_cached: int = 256):
        import llguidance.hf

        self.eos_ids = sorted(eos_ids)
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, eos_token=self.eos_ids)
        self.max_cached = max_cached
        self.compiles = 0                    # cache misses, for tests and benchmarks
        self._lock = threading.Lock()
        self._templates: OrderedDict[str, Any] = OrderedDict()

    def hook(self, params: SamplingParams) -> ConstraintHook | None:
        """A fresh hook for one request (None when unconstrained); raises InvalidConstraint."""
        rx = constraint_regex(params)
        if rx is None:
            return None
        return ConstraintHook(self, self._matcher(rx), rx, params.max_tokens)

    def _matcher(self, rx: str) -> Any:
        from llguidance import LLMatcher

        with self._lock:
            template = self._templates.get(rx)
            if template is not None:
                self._templates.move_to_end(rx)
                return template.deep_copy()
        _check_regex(rx)
        template = LLMatcher(self.tokenizer, _grammar(rx), log_level=0)
        if template.is_error():
            raise InvalidConstraint(f"invalid regex={rx!r}: {template.get_error()}")
        with self._lock:
            self.compiles += 1
            self._templates[rx] = template
            while len(self._templates) > self.max_cached:
                self._templates.popitem(last=False)
        return template.deep_copy()


class ConstraintHook:
    """One request's matcher, fed by the batcher each step (a `LogitsHook`).

    It never raises on the decode thread (an exception there fails the whole batch): a matcher error
    is recorded in `error`, EOS is forced, and `failure()` reports it to the caller afterwards.
    """

    def __init__(self, owner: Constrainer, matcher: Any, regex: str, max_tokens: int):
        import numpy as np

        self.owner = owner
        self.matcher = matcher
        self.regex = regex
        self.max_tokens = max_tokens
        self.consumed = 0                    # tokens of `generated` already fed to the matcher
        self.error: str | None = None
        self._bits = np.empty((owner.tokenizer.vocab_size + 31) // 32, dtype=np.int32)

    def __call__(self, generated: Sequence[int], logits: Any) -> Any:
        try:
            self._feed(generated)
            allowed = self._allowed()
            if self.max_tokens - len(generated) == 1:
                allowed = self._completing(allowed, logits)
        except Exception as exc:   # see the class docstring
            self.error = f"{type(exc).__name__}: {exc}"
        if self.error is not None:
            allowed = self._only(self.owner.eos_ids)
        # in place: the batcher hands over its own row, and a copy of 49k floats per row per step shows
        return logits.masked_fill_(~self._fit(allowed, logits.shape[-1]).to(logits.device), float("-inf"))

    def failure(self, token_ids: Sequence[int]) -> str | None:
        """After the request finished: why its tokens do not fully match (None when they do)."""
        eos = self.owner.eos_ids
        self._feed([t for t in token_ids if t not in eos])
        if self.error is not None:
            return f"constrained decoding failed: {self.error}"
        if not self.matcher.is_accepting():
            return (f"the answer could not be completed to match regex={self.regex!r} within "
                    f"max_tokens={self.max_tokens}; raise max_tokens")
        return None

    def _feed(self, generated: Sequence[int]) -> None:
        for tok in generated[self.consumed:]:
            if not self.matcher.consume_token(tok):
                self.error = self.matcher.get_error() or f"token {tok} was not allowed"
                break
        self.consumed = len(generated)

    def _allowed(self) -> Any:
        """The matcher's bitmask (bit i of word w: token 32*w + i) as one bool per tokenizer token."""
        import numpy as np
        import torch

        bits = self._bits
        self.matcher.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
        if self.matcher.is_error():
            raise RuntimeError(self.matcher.get_error())
        if not bits.any():                      # all -inf would make argmax pick <pad>, softmax NaN
            raise RuntimeError("the matcher allows no token at all")
        unpacked = np.unpackbits(bits.astype("<i4", copy=False).view(np.uint8), bitorder="little")
        return torch.from_numpy(unpacked[:self.owner.tokenizer.vocab_size]).view(torch.bool)

    def _completing(self, allowed: Any, logits: Any) -> Any:
        """The budget's last token: keep only tokens that leave a full match (EOS when it matches
        already). Candidates are tried best logit first (~1 us each) and the search stops at
        `LAST_TOKEN_CANDIDATES`, so greedy takes the best completing token and sampling draws from
        the best few: a top-k on this one token, not a scan of the whole vocabulary."""
        import torch

        eos = set(self.owner.eos_ids)
        ids = allowed.nonzero().flatten()
        ids = ids[ids < logits.shape[-1]]
        order = ids[torch.argsort(logits[ids.to(logits.device)], descending=True).cpu()].tolist()
        keep: list[int] = []
        for tok in order:
            if tok in eos:
                keep.append(tok)
            elif self.matcher.try_consume_tokens([tok]) == 1:
                if self.matcher.is_accepting():
                    keep.append(tok)
                self.matcher.rollback(1)
            if len(keep) >= LAST_TOKEN_CANDIDATES:
                break
        return self._only(keep) if keep else allowed

    def _only(self, ids: Sequence[int]) -> Any:
        import torch

        out = torch.zeros(self.owner.tokenizer.vocab_size, dtype=torch.bool)
        out[list(ids)] = True
        return out

    @staticmethod
    def _fit(allowed: Any, width: int) -> Any:
        """Match the logits' width: tokens beyond the tokenizer's vocabulary are never allowed."""
        import torch.nn.functional as F

        n = allowed.shape[0]
        return allowed[:width] if n >= width else F.pad(allowed, (0, width - n), value=False)
