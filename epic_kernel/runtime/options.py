"""What a run is asked to do, in one typed value (the keywords of `run()` and of `@epic`).

Strategies are named here and only here: the evaluator, the CLI, the magics and the differential
tester all read `STRATEGIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["MAX_CALLS", "RUN_OPTIONS", "STRATEGIES", "RunOptions", "parse_budget"]

STRATEGIES = ("opportunistic", "opportunistic-dfs", "random", "sequential")

# The call budget of a run unless it sets its own: a runaway `while True: llm(...)` made 23,052
# calls in 5 s on the sim, which on a hosted API is a bill. Programs that need more say so
# (`max_calls=`, `%%epic --max-calls N`, `epic run --max-calls N`); None turns the budget off.
MAX_CALLS = 10_000


@dataclass(frozen=True)
class RunOptions:
    """How to run a program. `backend`: an instance or a name ("sim", "transformers", "openai",
    "vllm", "replay"; None: the session default); `model` for named backends; `trace`: True keeps the
    call events, "full" every reduction step too; `seed` orders the `random` strategy; `cache` reuses
    answers to identical requests; `observers` get every event as it happens (the live view);
    `max_calls` is the run's call budget (MAX_CALLS unless set; None: no budget)."""

    strategy: str = "opportunistic"
    backend: Any = None
    model: str | None = None
    trace: bool | str = True
    seed: int = 0
    filename: str = "<epic>"
    first_line: int = 1
    cache: bool | None = None
    observers: tuple[Callable, ...] = field(default=())
    max_calls: int | None = MAX_CALLS

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_calls is not None and (not isinstance(self.max_calls, int) or self.max_calls < 0):
            raise ValueError(f"max_calls must be a non-negative int or None, not {self.max_calls!r}")
        if not isinstance(self.observers, tuple):
            object.__setattr__(self, "observers", tuple(self.observers or ()))

    def but(self, **changes: Any) -> RunOptions:
        """A copy with some options changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


RUN_OPTIONS = frozenset(f.name for f in fields(RunOptions))


def parse_budget(text: str) -> int | None:
    """A call budget as written on a command line (`--max-calls 500`, `--max-calls none`)."""
    if text.strip().lower() in ("none", "off", "inf"):
        return None
    try:
        n = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"--max-calls: a number of calls or 'none', not {text!r}") from None
    if n < 0:
        raise ValueError(f"--max-calls: a number of calls >= 0, not {n}")
    return n
