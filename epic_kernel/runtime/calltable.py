"""The table of calls, defined once: what a row holds and what each column shows.

Every table of calls reads this module: `RunResult.calls_table()` and `epic run`/`epic demo` (rich)
with `TERMINAL_COLUMNS`; the live widget, its static HTML and its text snapshot with
`WIDGET_COLUMNS`. `call_row` turns a CallRecord into the row every view gets; `cells` gives a row's
texts in column order. The browser side (widgets/live.js) is fed from here too: each synced row
carries its `cells`, and the widget syncs `column_specs(WIDGET_COLUMNS)` for the header, so a column
added here appears everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..text import clip

__all__ = ["COLUMNS", "TERMINAL_COLUMNS", "WIDGET_COLUMNS", "Column", "call_row", "cells", "column_specs",
           "plain_table"]

PREVIEW = 160                 # prompt and result texts in a row; narrower views cut them further


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, its text for a row, its alignment, and its width in a plain-text table
    (None: free text, which takes the room left and is cut with "…"; shown in full on hover)."""

    name: str
    text: Callable[[dict[str, Any]], str]
    align: str = "left"
    width: int | None = None

    @property
    def long(self) -> bool:
        return self.width is None


def _opt(v: Any) -> str:
    return "" if v is None else str(v)


COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("id", lambda r: str(r["id"]), "right", 4),
    Column("line", lambda r: _opt(r["line"]), "right", 5),
    Column("fn", lambda r: r["fn"], "left", 12),
    Column("state", lambda r: r["state"] + (" (cached)" if r["cached"] else ""), "left", 13),
    Column("batch", lambda r: _opt(r["batch"]), "right", 5),
    Column("tokens", lambda r: f"{r['tokens_in']}/{r['tokens_out']}", "right", 9),
    Column("start", lambda r: f"{r['start']:.3f} s", "right", 9),
    Column("latency", lambda r: f"{r['latency']:.3f} s", "right", 9),
    Column("prompt", lambda r: r["prompt"]),
    Column("result", lambda r: r["result"]),
)}
WIDGET_COLUMNS = ("id", "line", "fn", "state", "batch", "tokens", "latency", "prompt", "result")
TERMINAL_COLUMNS = ("id", "line", "fn", "state", "start", "latency", "prompt", "result")


def call_row(c: Any, t0: float, now: float, columns: tuple[str, ...] = WIDGET_COLUMNS) -> dict[str, Any]:
    """A CallRecord as table data (times in seconds since `t0`; an unfinished call's latency so far).
    The line is the user's own line that led to the call (a library program's calls show where the
    program was called); the prompt is the part that tells it from its neighbours (`prompt_shown`). `cells` holds the texts of `columns`."""
    latency = (c.end if c.end is not None else now) - c.start
    result = c.result_preview or (c.streamed[-120:] if c.streamed else "")
    if c.state == "failed" and c.error is not None and not result:
        result = f"{type(c.error).__name__}: {c.error}"
    line = getattr(c, "user_line", None)
    row = {"id": c.id, "line": c.site_line if line is None else line, "fn": c.fn, "state": c.state,
           "batch": c.batch_id, "tokens_in": "?" if c.tokens_in is None else c.tokens_in,
           "tokens_out": "?" if c.tokens_out is None else c.tokens_out, "start": round(c.start - t0, 4),
           "latency": round(latency, 4), "cached": bool(c.cached), "prompt": clip(c.prompt_shown or c.args_preview, PREVIEW),
           "result": clip(result, PREVIEW)}
    row["cells"] = cells(row, columns)
    return row


def cells(row: dict[str, Any], columns: Iterable[str] = WIDGET_COLUMNS) -> list[str]:
    """The row's text in each of `columns`, in order."""
    return [COLUMNS[name].text(row) for name in columns]


def column_specs(columns: Iterable[str] = WIDGET_COLUMNS) -> list[dict[str, Any]]:
    """The columns as JSON for the browser: name, alignment, and whether it is free text."""
    return [{"name": name, "align": COLUMNS[name].align, "long": COLUMNS[name].long} for name in columns]


def plain_table(rows: list[dict[str, Any]], columns: tuple[str, ...] = TERMINAL_COLUMNS, *, indent: str = "",
                width: int | None = None) -> list[str]:
    """A fixed-width text table: one line for the header, one per row. Free-text columns come last,
    joined by " -> "; a line longer than `width` is cut with "…"."""
    fixed = [COLUMNS[n] for n in columns if not COLUMNS[n].long]
    free = [COLUMNS[n] for n in columns if COLUMNS[n].long]

    def line(texts: list[str], tail: list[str]) -> str:
        parts = [f"{clip(t, col.width):{'>' if col.align == 'right' else '<'}{col.width}}"     # type: ignore[arg-type]
                 for col, t in zip(fixed, texts, strict=True)]
        text = indent + " ".join(parts) + ("  " + " -> ".join(tail) if tail else "")
        return text if width is None or len(text) <= width else clip(text, width, squash=False)

    out = [line([c.name for c in fixed], [c.name for c in free])]
    for r in rows:
        out.append(line([c.text(r) for c in fixed], [c.text(r) for c in free]))
    return out
