"""What a run is asked to do, in one typed value (the keywords of `run()` and of `@epic`).

Strategies are named here and only here: the evaluator, the CLI, the magics and the differential
tester all read `STRATEGIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["RUN_OPTIONS", "STRATEGIES", "RunOptions"]

STRATEGIES = ("opportunistic", "opportunistic-dfs", "random", "sequential")


@dataclass(frozen=True)
class RunOptions:
    """How to run a program. `backend`: an instance or a name ("sim", "transformers", "openai",
    "vllm", "replay"; None: the session default); `model` for named backends; `trace`: True keeps the
    call events, "full" every reduction step too; `seed` orders the `random` strategy; `cache` reuses
    answers to identical requests; `observers` get every event as it happens (the live view)."""

    strategy: str = "opportunistic"
    backend: Any = None
    model: str | None = None
    trace: bool | str = True
    seed: int = 0
    filename: str = "<epic>"
    first_line: int = 1
    cache: bool | None = None
    observers: tuple[Callable, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not isinstance(self.observers, tuple):
            object.__setattr__(self, "observers", tuple(self.observers or ()))

    def but(self, **changes: Any) -> RunOptions:
        """A copy with some options changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


RUN_OPTIONS = frozenset(f.name for f in fields(RunOptions))
