"""What a running program tells the outside world: call records and a stream of events.

One owner (the evaluator) mutates `CallRecord`s; observers (the trace, the widget, the CLI's live
display) receive `Event`s through `on_event` callbacks, called on the evaluator's event-loop thread.
Observers must be cheap: the widget coalesces, it does not render per event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallRecord", "Event", "clock"]

clock = time.perf_counter     # the one clock: CallRecord.start/end and Event.t are on it


@dataclass(slots=True, eq=False)
class CallRecord:
    """One external call (LLM, tool, async function), from dispatch to resolution.

    state: "queued" (dispatched, waiting in a batcher or for a slot) -> "running" -> "done" | "failed"
    | "cancelled". Only the evaluator and the `llm()` builtin write these fields.
    """

    id: int                                  # per-run call number, 1-based, in dispatch order
    fn: str                                  # called function's name: "llm", "work", ...
    site_line: int | None                    # source line of the call in the epic program
    start: float                             # clock() at dispatch
    end: float | None = None                 # clock() at resolution
    state: str = "queued"
    batch_id: int | None = None              # decode batch (local batcher), else None
    tokens_in: int | None = 0                # None: the server reported no usage (unknown, not 0)
    tokens_out: int | None = 0
    cached: bool = False
    tokens_reused: int = 0                   # prompt tokens whose KV the local batcher reused (prefix cache)
    args_preview: str = ""                   # short text of the arguments (prompt for llm)
    result_preview: str = ""                 # short text of the result or the error
    error: BaseException | None = None
    site: str = ""                           # "file:line" for messages
    streamed: str = ""                       # text streamed so far (stream=True calls)
    path: int = 0                            # the call's place in the program, the same under every strategy
    user_line: int | None = None             # the run's own line that led here (site_line, or for a
                                             # call inside library code, the line calling into it)
    prompt_text: str = ""                    # an llm() call's whole prompt (its last message)
    prompt_shown: str = ""                   # the part of it the call table shows, when it shares a
                                             # long head with another call's (llm/shown_prompt.py)
    tokens: Any = None                       # per-token record (llm.logprobs.TokenLog) when the call
                                             # asked for logprobs=; set by llm() when it resolves

    @property
    def latency(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "fn": self.fn, "site_line": self.site_line, "user_line": self.user_line,
            "start": self.start, "end": self.end,
            "state": self.state, "batch_id": self.batch_id, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "cached": self.cached, "args": self.args_preview,
            "result": self.result_preview, "error": None if self.error is None else repr(self.error),
        }


@dataclass(slots=True)
class Event:
    """kind is one of:

    run.start (data: source, strategy, backend)   run.end (data: ok, elapsed, steps, error)
    call.dispatch / call.running / call.stream / call.done / call.failed / call.cancelled (call: CallRecord;
        call.stream data: chunk)
    steps (data: steps, rules: dict rule -> count; sent at most every ~50 ms and at the end)
    step (data: rule, text) -- one reduction step, only when the run was asked for a full step trace
    print (data: text)
    backend.loading (data: label) / backend.ready (data: seconds, label) / backend.failed (data: seconds)
        -- the run's backend is being constructed (a local model loading); its calls wait "queued"
    program.* -- events a program emits for its own panel, e.g. program.sot.point (data: index, text)
    """

    kind: str
    t: float
    call: CallRecord | None = None
    data: dict[str, Any] = field(default_factory=dict)
