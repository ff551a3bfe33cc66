"""The live view's data: one plain-Python object per run, fed by runtime events, read by every view.

`RunModel.on_event` is the observer passed to `run_async(observers=[...])`; it is called on the
evaluator's loop thread for every event and must stay cheap, so it only records: CallRecords are
kept by reference (the evaluator mutates them in place) and everything derived (counts, rows,
timeline lanes) is computed in `snapshot()`, which the views call at most ~10 times a second.

Ownership: only the loop thread that runs the program calls `on_event`; `snapshot()` is called on
that thread while the run is live, and by the cell's thread after the run has ended.

Skeleton-of-Thought panel. Programs may emit (through the evaluator's `emit`):
    program.sot.question   data: text                  the question (optional)
    program.sot.point      data: index, text           a skeleton point (re-sent as it streams: replaces)
    program.sot.expansion  data: index, text | chunk   the expansion so far (`text` replaces,
                                                       `chunk` appends); `done=True` marks it finished
    program.sot.answer     data: text                  the assembled answer (optional)
    program.sot.retry      data: index, reason         a weak expansion is being asked for again
    program.sot.graph      data: edges, dropped, critical   a skeleton graph's edges [(from, to)], the
                                                       edges it dropped (why), its critical path
The panel appears as soon as one of these arrives.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from typing import Any

from epic_kernel.runtime.calltable import call_row
from epic_kernel.text import clip

from ._sot_graph import graph_layout
from ._tokens import call_tokens

__all__ = ["RunModel"]

_FINISHED = ("done", "failed", "cancelled")


class RunModel:
    """Everything the views show about one run.

    Parameters
    ----------
    title: a label for the header ("cell 12", a file name).
    max_rows: calls in the live table: every failed and in-flight call first, then the latest
        finished ones (the static snapshot at the end may ask for more).
    max_bars: calls drawn in the timeline (the latest ones by dispatch order).
    max_steps: the reduction trace keeps this many of the latest steps (with `--trace full`).
    """

    def __init__(self, *, title: str = "", strategy: str = "", backend: str = "", max_rows: int = 60,
                 max_bars: int = 400, max_steps: int = 40):
        self.title = title
        self.strategy = strategy
        self.backend = backend
        self.max_rows = max_rows
        self.max_bars = max_bars
        self.state = "starting"          # starting -> running -> done | failed | cancelled
        self.t0: float | None = None     # Event.t of run.start (the runtime clock)
        self.t_end: float | None = None  # Event.t of run.end
        self.now = 0.0                   # the latest event time seen: "now" for in-flight calls
        self.calls: list[Any] = []       # CallRecords in dispatch order (mutated by the evaluator)
        self.steps = 0
        self.rules: dict[str, int] = {}
        self.recent_steps: deque[tuple[int, str, str]] = deque(maxlen=max_steps)
        self.full_trace = False          # set once a `step` event arrives (trace="full")
        self.prints = 0
        self.max_calls: int | None = None    # the run's call budget (run.start), shown beside the count
        self.error = ""                  # one line, set when the run failed or was cancelled
        self.sot_question = ""
        self.sot_answer = ""
        self.sot_points: dict[int, dict[str, Any]] = {}
        self.sot_retries: dict[int, str] = {}   # point index -> why its first expansion was redone
        self.sot_graph: dict[str, Any] | None = None   # a skeleton graph's edges, dropped, critical
        self.changes = 0                 # bumped on every recorded event: views flush only when it moved
        self.loading = ""                # the backend being loaded (a local model), while it loads
        self.loading_t: float | None = None
        self.load_s: float | None = None  # how long it took (kept out of latencies and parallelism)

    # ------------------------------------------------------------------------------------ events
    def on_event(self, ev: Any) -> None:
        """Record one runtime Event (called on the loop thread; never raises for unknown kinds)."""
        kind = ev.kind
        self.now = ev.t
        self.changes += 1
        if kind.startswith("call."):
            if kind == "call.dispatch":
                self.calls.append(ev.call)
            return
        if kind == "steps":
            self.steps = ev.data.get("steps", self.steps)
            self.rules = dict(ev.data.get("rules", self.rules))
        elif kind == "quiescent":
            self.steps = ev.data.get("steps", self.steps)
        elif kind == "step":
            self.full_trace = True
            self.recent_steps.append((ev.data.get("step", 0), ev.data.get("rule", ""), ev.data.get("text", "")))
        elif kind == "print":
            self.prints += 1
        elif kind == "run.start":
            self.t0 = ev.t
            self.state = "running"
            self.strategy = self.strategy or ev.data.get("strategy", "")
            self.backend = self.backend or _label(ev.data.get("backend", ""))
            self.max_calls = ev.data.get("max_calls")
        elif kind == "run.end":
            self.t_end = ev.t
            self.steps = ev.data.get("steps", self.steps)
            if ev.data.get("error") == "cancelled":
                self.state = "cancelled"
            else:
                self.state = "done" if ev.data.get("ok", True) else "failed"
        elif kind == "backend.loading":
            self.loading = str(ev.data.get("label", "the model"))
            self.loading_t = ev.t
        elif kind in ("backend.ready", "backend.failed"):
            self.load_s = float(ev.data.get("seconds", 0.0))
            self.loading = ""
            if kind == "backend.ready" and ev.data.get("label"):
                self.backend = str(ev.data["label"])
        elif kind.startswith("program.sot."):
            self._on_sot(kind[len("program.sot."):], ev.data)

    def _on_sot(self, what: str, data: dict[str, Any]) -> None:
        if what == "question":
            self.sot_question = str(data.get("text", ""))
        elif what == "answer":
            self.sot_answer = str(data.get("text", ""))
        elif what == "graph":
            self.sot_graph = {"edges": [tuple(e) for e in data.get("edges", ())],
                              "dropped": [str(d) for d in data.get("dropped", ())],
                              "critical": [int(i) for i in data.get("critical", ())]}
        elif what == "retry":
            index = int(data.get("index", 0))
            self.sot_retries[index] = str(data.get("reason") or "weak")
            if index in self.sot_points:
                self.sot_points[index]["done"] = False
        elif what in ("point", "expansion"):
            index = int(data.get("index", len(self.sot_points) + 1))
            point = self.sot_points.setdefault(index, {"index": index, "text": "", "expansion": "",
                                                       "done": False})
            if what == "point":
                point["text"] = str(data.get("text", point["text"]))
            elif "chunk" in data:
                point["expansion"] += str(data["chunk"])
            else:
                point["expansion"] = str(data.get("text", point["expansion"]))
            if data.get("done"):
                point["done"] = True

    def finish(self, result: Any = None, *, state: str | None = None, error: str = "") -> None:
        """Fold in what only the caller knows at the end: the RunResult (final steps and rules) and
        the outcome when the run never started or ended without a run.end event."""
        if result is not None:
            self.steps = result.steps
            self.rules = dict(result.rules)
            if not self.calls:
                self.calls = list(result.calls)
            if self.t0 is None:
                self.t0 = result.start
            if self.t_end is None:
                self.t_end = result.start + result.elapsed
        if state is not None:
            self.state = state
        elif self.state in ("starting", "running"):
            self.state = "done"
        if error:
            self.error = error
        self.changes += 1

    # ---------------------------------------------------------------------------------- snapshot
    @property
    def finished(self) -> bool:
        return self.state in _FINISHED

    def elapsed(self, now: float | None = None) -> float:
        if self.t0 is None:
            return 0.0
        end = self.t_end if self.t_end is not None else (now if now is not None else self.now)
        return max(0.0, end - self.t0)

    def snapshot(self, now: float | None = None, *, max_rows: int | None = None,
                 max_bars: int | None = None) -> dict[str, Any]:
        """JSON-ready state for the views: header, rows (calls table), bars (timeline), trace, sot.

        `now` is the runtime clock's current time (in-flight calls are drawn up to it)."""
        if now is None or self.t_end is not None:
            now = self.t_end if self.t_end is not None else max(self.now, now or 0.0)
        t0 = self.t0 if self.t0 is not None else (self.calls[0].start if self.calls else now)
        elapsed = self.elapsed(now)
        calls = self.calls
        counts = dict.fromkeys(("queued", "running", "done", "failed", "cancelled"), 0)
        cached = tokens_in = tokens_out = reused = 0
        busy = 0.0
        batches = set()
        for c in calls:
            counts[c.state] = counts.get(c.state, 0) + 1
            cached += c.cached
            tokens_in += c.tokens_in or 0        # None: usage unknown (the row shows "?")
            tokens_out += c.tokens_out or 0
            reused += c.tokens_reused
            if c.state != "queued":          # waiting (for the model to load, a slot) is not work
                busy += (c.end if c.end is not None else now) - c.start
            if c.batch_id is not None:
                batches.add(c.batch_id)
        rows = self._rows(calls, max_rows or self.max_rows, now)
        # loading the model is not work the program's calls did: keep it out of parallelism
        loading_s = self.load_s if self.load_s is not None else (
            now - self.loading_t if self.loading and self.loading_t is not None else 0.0)
        working = elapsed - loading_s
        header = {
            "title": self.title, "state": self.state, "elapsed": round(elapsed, 3), "steps": self.steps,
            "calls": len(calls), **counts, "cached": cached, "tokens_in": tokens_in, "tokens_out": tokens_out,
            "tokens_reused": reused,
            "parallelism": round(busy / working, 2) if working > 0.001 else 0.0, "batches": len(batches),
            "loading": self.loading, "load_s": None if self.load_s is None else round(self.load_s, 2),
            "loading_s": round(loading_s, 1),
            "load_span": None if self.loading_t is None else [
                round(self.loading_t - t0, 3), round(self.loading_t - t0 + loading_s, 3)],
            "strategy": self.strategy, "backend": self.backend, "error": self.error,
            "rows_shown": len(rows), "prints": self.prints, "max_calls": self.max_calls,
        }
        bars, lanes, bars_omitted = _bars(calls, max_bars or self.max_bars, t0, now)
        header.update(lanes=lanes, bars_omitted=bars_omitted,
                      span=round(max([elapsed] + [b[3] for b in bars]), 4))
        return {
            "header": header,
            "rows": [call_row(c, t0, now) for c in rows],
            "bars": bars,
            "trace": {"steps": self.steps, "rules": dict(self.rules), "full": self.full_trace,
                      "recent": [list(s) for s in self.recent_steps]},
            "sot": self._sot(),
            # per-token records of calls that asked for logprobs= (the token view); [] when none did
            "tokens": call_tokens(calls, t0) if any(c.tokens is not None for c in calls) else [],
        }

    def _rows(self, calls: list[Any], limit: int, now: float) -> list[Any]:
        """Failed and in-flight calls first (at most `limit`), then the latest finished ones."""
        if len(calls) <= limit:
            return list(calls)
        failed = [c for c in calls if c.state == "failed"][:limit // 4]
        live = [c for c in calls if c.state not in _FINISHED][:limit - len(failed)]
        room = limit - len(failed) - len(live)
        chosen = {id(c) for c in failed} | {id(c) for c in live}
        rest = [c for c in reversed(calls) if id(c) not in chosen and c.state != "failed"][:room]
        return sorted(failed + live + rest, key=lambda c: c.id)

    def _sot(self) -> dict[str, Any]:
        if not (self.sot_points or self.sot_question or self.sot_answer):
            return {}
        points = [dict(p) for _, p in sorted(self.sot_points.items())]
        out = {"question": self.sot_question, "answer": self.sot_answer, "points": points}
        if self.sot_retries:
            which = ", ".join(str(i) for i in sorted(self.sot_retries))
            reasons = " / ".join(sorted(set(self.sot_retries.values())))
            n = len(self.sot_retries)
            out["note"] = (f"point{'s' * (n != 1)} {which}: the paper's skeleton prompt gave no expansion "
                           f"({reasons}) on this model, so {'they were' if n != 1 else 'it was'} expanded "
                           "again with the one-point prompt (expand_with=\"point\")")
        if self.sot_graph is not None:
            g = self.sot_graph
            out["graph"] = graph_layout(points, g["edges"], g["critical"])
            if g["dropped"]:
                note = "; ".join(g["dropped"])
                out["note"] = f"{out['note']}. {note}" if out.get("note") else note
        return out


def _bars(calls: list[Any], limit: int, t0: float, now: float) -> tuple[list[list[Any]], int, int]:
    """Timeline bars `[id, lane, start, end, state, batch, fn, line, tokens_in, tokens_out, prompt,
    cached]` (seconds since the run began; the prompt clipped for the hover text),
    packed greedily into lanes so overlapping calls sit on separate rows: the lane count is the peak
    parallelism. Only the latest `limit` calls are drawn; the third value is how many were left out."""
    shown = calls[-limit:] if len(calls) > limit else calls
    free: list[tuple[float, int]] = []        # (end, lane) of lanes whose last call has ended
    busy: list[tuple[float, int]] = []        # (end, lane) of lanes still occupied
    lanes = 0
    bars = []
    for c in sorted(shown, key=lambda c: (c.start, c.id)):
        start = c.start - t0
        end = (c.end if c.end is not None else now) - t0
        while busy and busy[0][0] <= start:
            e, lane = heapq.heappop(busy)
            heapq.heappush(free, (lane, lane))   # reuse the lowest free lane: a compact chart
        if free:
            _, lane = heapq.heappop(free)
        else:
            lane = lanes
            lanes += 1
        heapq.heappush(busy, (max(end, start), lane))
        bars.append([c.id, lane, round(start, 4), round(max(end, start), 4), c.state, c.batch_id, c.fn,
                     _line(c), c.tokens_in, c.tokens_out, clip(c.args_preview, 48), bool(c.cached)])
    bars.sort(key=lambda b: b[0])
    return bars, lanes, len(calls) - len(shown)


def _line(c: Any) -> int | None:
    """The line of the user's program that led to the call (not a library program's own line)."""
    line = getattr(c, "user_line", None)
    return c.site_line if line is None else line


def _label(text: str) -> str:
    """"<epic_kernel.llm.sim.SimBackend object at 0x..>" -> "SimBackend"."""
    m = re.match(r"<([\w.]+) object at ", text)
    return m.group(1).rsplit(".", 1)[-1] if m else text
