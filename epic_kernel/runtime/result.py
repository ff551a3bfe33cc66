"""What a run leaves behind: its value, its names, its calls, its trace (exportable to Perfetto)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .calltable import TERMINAL_COLUMNS, call_row, plain_table
from .events import CallRecord, Event, clock

__all__ = ["RunResult"]


@dataclass
class RunResult:
    value: Any
    namespace: dict[str, Any]
    calls: list[CallRecord]
    steps: int
    elapsed: float
    trace: list[Event] = field(default_factory=list, repr=False)
    rules: dict[str, int] = field(default_factory=dict)
    strategy: str = "opportunistic"
    failures: list[CallRecord] = field(default_factory=list, repr=False)
    start: float = 0.0
    state: str = "done"                      # "done" | "failed" | "cancelled"

    @property
    def parallelism(self) -> float:
        """Sum of call durations / wall time: how many calls were in flight on average."""
        busy = sum((c.end - c.start) for c in self.calls if c.end is not None)
        return busy / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        n = len(self.calls)
        states = {s: sum(c.state == s for c in self.calls) for s in ("done", "failed", "cancelled")}
        detail = ", ".join(f"{v} {k}" for k, v in states.items() if v) or "none finished"
        errors = sum(1 for f in self.failures if not f.id)
        extra = f", {errors} error{'s' * (errors != 1)} in the program" if errors else ""
        return (f"{self.strategy}: {self.elapsed:.3f} s, {self.steps} steps, {n} call{'s' * (n != 1)} "
                f"({detail}){extra}, parallelism {self.parallelism:.1f}x")

    def trace_json(self) -> str:
        """The run in Chrome trace format (open it in https://ui.perfetto.dev or chrome://tracing):
        one lane per overlapping call, instant events for prints, a counter track for steps."""
        t0 = self.start
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"epic run ({self.strategy})"}},
        ]
        lanes: list[float] = []                  # end time of the last call in each lane
        for c in sorted(self.calls, key=lambda c: c.start):
            end = c.end if c.end is not None else c.start
            lane = next((i for i, e in enumerate(lanes) if e <= c.start), None)
            if lane is None:
                lanes.append(end)
                lane = len(lanes) - 1
            else:
                lanes[lane] = end
            events.append({
                "name": f"{c.fn} #{c.id}", "cat": c.state, "ph": "X", "pid": 1, "tid": lane + 1,
                "ts": (c.start - t0) * 1e6, "dur": max(end - c.start, 0.0) * 1e6,
                "args": {"line": c.site_line, "state": c.state, "batch": c.batch_id, "tokens_in": c.tokens_in,
                         "tokens_out": c.tokens_out, "cached": c.cached, "args": c.args_preview,
                         "result": c.result_preview},
            })
        for e in self.trace:
            if e.kind == "steps":
                events.append({"name": "steps", "ph": "C", "pid": 1, "ts": (e.t - t0) * 1e6,
                               "args": {"steps": e.data.get("steps", 0)}})
            elif e.kind == "print":
                events.append({"name": "print", "ph": "i", "s": "p", "pid": 1, "tid": 0,
                               "ts": (e.t - t0) * 1e6, "args": {"text": e.data.get("text", "")}})
        return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})

    def calls_table(self, width: int | None = 160) -> str:
        """Every call as a plain-text table (the columns of runtime/calltable.py), lines cut at `width`."""
        now = clock()
        return "\n".join(plain_table([call_row(c, self.start, now, TERMINAL_COLUMNS) for c in self.calls],
                                     TERMINAL_COLUMNS, width=width))
