"""SimBackend: a deterministic simulated model, its answers (answers.py) paced by its clock (clock.py)."""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from ..base import Backend
from .answers import SimAnswers
from .clock import SimClock, SimStats, _LoopState
from .script import Reply, Script

__all__ = ["SimBackend"]


class SimBackend(SimAnswers, SimClock, Backend):
    __module__ = "epic_kernel.llm.sim"      # its public home; identity() and so the cache keys name it
    """A deterministic simulated model (see the module docstring for answers and latency).

    Parameters
    ----------
    latency: if a number, every request takes exactly this many seconds regardless of batching.
    prefill_s, per_token_s, batch_penalty: the batch cost model, f(B) = 1 + batch_penalty*(B-1).
    max_batch_size: a batch starts at once when this many requests are pending.
    flush_ms: a batch starts at the latest this long after its first request arrived.
    answers: scripted `(pattern, reply)` rules, first match wins (see `add_answer`).
    scripts: callables `(request, rng) -> str | None` that write free text (see `add_script`).
    seed: mixed into every hash-derived answer: a different seed is a different "model".
    tokens_per_word: how many tokens (and decode steps) one word costs.
    """

    name = "sim"
    default_model = "sim-1"
    capabilities = frozenset({"stream", "prefill", "raw", "seed", "regex", "choices"})

    def __init__(self, latency: float | None = None, prefill_s: float = 0.02, per_token_s: float = 0.005,
                 batch_penalty: float = 0.02, max_batch_size: int = 64, flush_ms: float = 2.0,
                 answers: Iterable[tuple[str | re.Pattern[str], Reply]] | None = None, seed: int = 0,
                 tokens_per_word: int = 1, scripts: Iterable[Script] = ()) -> None:
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
        self._scripts: list[Script] = []
        for script in scripts:
            self.add_script(script)
        self._lock = threading.Lock()          # guards _states and _next_batch
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary())
        self._next_batch = 0

    def identity(self) -> dict[str, Any]:
        """Answers depend on the seed, the script and the token size, never on the latency model."""
        from ..identity import describe

        return {**super().identity(), "seed": self.seed, "tokens_per_word": self.tokens_per_word,
                "script": describe(self._rules), **({"scripts": describe(self._scripts)} if self._scripts else {})}

    def describe(self) -> str:
        mode = f"latency={self.latency}s" if self.latency is not None else (
            f"batched prefill={self.prefill_s}s per_token={self.per_token_s}s")
        return f"sim:{self.default_model} ({mode})"
