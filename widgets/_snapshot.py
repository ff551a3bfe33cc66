"""Static renderings of a `RunModel.snapshot()`: HTML (nbconvert, frontends without widget JS,
`--view html`) and plain text (consoles, `--view text`, `text/plain` of every view).

The HTML uses the same class names and `data-*` attributes as the live widget (`live.js`), so a
saved notebook and the live view look alike and tests can query either. It carries its own
scoped `<style>`, because exported HTML has no widget CSS.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["snapshot_html", "snapshot_text", "STATE_COLORS", "batch_color"]

STATE_COLORS = {"queued": "#f9ab00", "running": "#1a73e8", "done": "#188038", "failed": "#d93025",
                "cancelled": "#80868b"}

# one stylesheet for the live widget and the static snapshot
_STYLE = "<style>" + (Path(__file__).parent / "live.css").read_text(encoding="utf-8") + "</style>"


def batch_color(batch: int | None, state: str) -> str:
    """Bars of one decode batch share a hue, so batches show as same-coloured stacks."""
    if state in ("failed", "cancelled", "queued") or batch is None:
        return STATE_COLORS.get(state, "#80868b")
    return f"hsl({(batch * 47) % 360},55%,{45 if state == 'done' else 60}%)"


# ------------------------------------------------------------------------------------------- HTML
def snapshot_html(snap: dict[str, Any]) -> str:
    h = snap["header"]
    parts = [f'<div class="epic-live epic-snapshot" data-state="{_e(h["state"])}">', _STYLE,
             _header_html(h)]
    if h.get("error"):
        parts.append(f'<div class="epic-error">{_e(h["error"])}</div>')
    if snap["rows"]:
        parts.append(_table_html(snap["rows"], h))
    if snap["bars"]:
        parts.append(_timeline_svg(snap["bars"], h))
    parts.append(_trace_html(snap["trace"]))
    if snap.get("sot"):
        parts.append(_sot_html(snap["sot"]))
    parts.append("</div>")
    return "\n".join(parts)


def _header_html(h: dict[str, Any]) -> str:
    items = [f'<span class="epic-status" data-state="{_e(h["state"])}">{_e(h["state"])}</span>']
    if h.get("title"):
        items.append(f'<span class="epic-title">{_e(h["title"])}</span>')
    items += [
        f'<span class="epic-elapsed">{h["elapsed"]:.2f} s</span>',
        f'<span class="epic-steps">{h["steps"]} steps</span>',
        f'<span class="epic-counts">{_counts(h)}</span>',
        f'<span class="epic-tokens">tokens {h["tokens_in"]} in / {h["tokens_out"]} out</span>',
        f'<span class="epic-parallelism">parallelism {h["parallelism"]:.1f}x</span>',
    ]
    if h.get("strategy") or h.get("backend"):
        items.append(f'<span class="epic-config">{_e(h.get("strategy", ""))} · {_e(h.get("backend", ""))}</span>')
    return f'<div class="epic-header">{"".join(items)}</div>'


def _counts(h: dict[str, Any]) -> str:
    parts = [f'{h["calls"]} calls:']
    for key in ("queued", "running", "done", "failed", "cancelled", "cached"):
        if h.get(key) or key in ("running", "done"):
            parts.append(f"{h[key]} {key}")
    return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


_COLUMNS = ("id", "line", "fn", "state", "batch", "tokens", "latency", "prompt", "result")


def _table_html(rows: list[dict[str, Any]], h: dict[str, Any]) -> str:
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = []
    for r in rows:
        cells = [r["id"], r["line"] if r["line"] is not None else "", r["fn"],
                 r["state"] + (" (cached)" if r["cached"] else ""), "" if r["batch"] is None else r["batch"],
                 f'{r["tokens_in"]}/{r["tokens_out"]}', f'{r["latency"]:.3f} s', r["prompt"], r["result"]]
        tds = "".join(f'<td title="{_e(c)}">{_e(c)}</td>' if i >= 7 else f"<td>{_e(c)}</td>"
                      for i, c in enumerate(cells))
        body.append(f'<tr data-state="{_e(r["state"])}" data-id="{r["id"]}">{tds}</tr>')
    more = h["calls"] - len(rows)
    note = f"<div class=\"epic-note\">… {more} more calls not shown (all are in <code>_epic_last.calls</code>)</div>" if more > 0 else ""
    return (f'<details open class="epic-calls-panel"><summary>Calls ({h["calls"]})</summary>'
            f'<div class="epic-calls-scroll"><table class="epic-calls"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            f"{note}</details>")


def _timeline_svg(bars: list[list[Any]], h: dict[str, Any]) -> str:
    width, label = 640, 0
    lanes = max(1, h.get("lanes", 1))
    lane_h = max(2.0, min(14.0, 240.0 / lanes))
    height = lanes * lane_h + 16
    span = h.get("span") or 1e-9
    scale = (width - label) / span
    rects = []
    for cid, lane, start, end, state, batch, fn, line in bars:
        x = label + start * scale
        w = max(1.0, (end - start) * scale)
        y = lane * lane_h
        tip = f"#{cid} {fn} line {line} {state} {start:.3f}-{end:.3f} s" + (f" batch {batch}" if batch is not None else "")
        rects.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(1.0, lane_h - 1):.1f}" '
                     f'fill="{batch_color(batch, state)}" data-state="{_e(state)}" data-id="{cid}">'
                     f"<title>{_e(tip)}</title></rect>")
    axis = (f'<text x="0" y="{height - 3:.0f}" font-size="10">0 s</text>'
            f'<text x="{width}" y="{height - 3:.0f}" font-size="10" text-anchor="end">{span:.2f} s</text>')
    omitted = h.get("bars_omitted", 0)
    note = f"<div class=\"epic-note\">first {omitted} calls not drawn</div>" if omitted else ""
    return (f'<details open class="epic-timeline-panel"><summary>Timeline ({lanes} lanes)</summary>'
            f'<svg class="epic-timeline" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}">{"".join(rects)}{axis}</svg>{note}</details>')


def _trace_html(trace: dict[str, Any]) -> str:
    rules = "".join(f'<span data-rule="{_e(k)}">{_e(k)} {v}</span>' for k, v in trace["rules"].items() if v)
    steps = ""
    if trace.get("recent"):
        items = "".join(f'<li value="{n}">{_e(rule)}: {_e(text)}</li>' for n, rule, text in trace["recent"])
        steps = f'<ol class="epic-steps">{items}</ol>'
    return (f'<details class="epic-trace-panel"><summary>Reduction trace ({trace["steps"]} steps)</summary>'
            f'<div class="epic-rules">{rules}</div>{steps}</details>')


def _sot_html(sot: dict[str, Any]) -> str:
    items = []
    for p in sot["points"]:
        state = "done" if p["done"] else "running"
        items.append(f'<li data-index="{p["index"]}" data-state="{state}"><b>{_e(p["text"])}</b>'
                     f'<div class="epic-expansion">{_e(p["expansion"])}</div></li>')
    q = f'<div class="epic-question">{_e(sot["question"])}</div>' if sot.get("question") else ""
    a = f'<div class="epic-answer">{_e(sot["answer"])}</div>' if sot.get("answer") else ""
    return (f'<details open class="epic-sot"><summary>Skeleton-of-Thought ({len(sot["points"])} points)</summary>'
            f'{q}<ol>{"".join(items)}</ol>{a}</details>')


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


# ------------------------------------------------------------------------------------------- text
def snapshot_text(snap: dict[str, Any], *, max_rows: int = 20, width: int = 110) -> str:
    """A compact table; the error itself is left to the cell's error output (no duplicate)."""
    h = snap["header"]
    title = f" {h['title']}" if h.get("title") else ""
    lines = [f"epic{title} [{h['state']}] {h['elapsed']:.2f} s · {h['steps']} steps · {_counts(h)} · "
             f"tokens {h['tokens_in']} in / {h['tokens_out']} out · parallelism {h['parallelism']:.1f}x"]
    rows = snap["rows"]
    if rows:
        lines.append(f"  {'id':>4} {'line':>4} {'fn':<10} {'state':<9} {'batch':>5} {'tokens':>9} "
                     f"{'latency':>8}  prompt -> result")
        for r in rows[:max_rows]:
            text = f"{r['prompt']} -> {r['result']}"
            line = (f"  {r['id']:>4} {r['line'] if r['line'] is not None else '':>4} {r['fn'][:10]:<10} "
                    f"{r['state'] + ('*' if r['cached'] else ''):<9} "
                    f"{'' if r['batch'] is None else r['batch']:>5} "
                    f"{str(r['tokens_in']) + '/' + str(r['tokens_out']):>9} {r['latency']:>7.3f}s  {text}")
            lines.append(line if len(line) <= width else line[: width - 1] + "…")
        more = h["calls"] - min(len(rows), max_rows)
        if more > 0:
            lines.append(f"  … {more} more calls")
    rules = " · ".join(f"{k} {v}" for k, v in snap["trace"]["rules"].items() if v)
    if rules:
        lines.append(f"  rules: {rules}")
    for p in snap.get("sot", {}).get("points", []):
        lines.append(f"  {p['index']}. {p['text']}" + (f" -> {p['expansion'][:60]}" if p["expansion"] else ""))
    return "\n".join(lines)
