"""Static renderings of a `RunModel.snapshot()`: HTML (nbconvert, frontends without widget JS,
`--view html`) and plain text (consoles, `--view text`, `text/plain` of every view).

The HTML uses the same class names and `data-*` attributes as the live widget (`live.js`), so a
saved notebook and the live view look alike and tests can query either. It carries its own
scoped `<style>`, because exported HTML has no widget CSS.
"""

from __future__ import annotations

import html
import itertools
import os
from pathlib import Path
from typing import Any

from epic_kernel.runtime.calltable import WIDGET_COLUMNS, cells, column_specs, plain_table

from ._tokens import token_summary, tokens_panel_html

__all__ = ["snapshot_html", "snapshot_text", "STATE_COLORS", "state_color"]

STATE_COLORS = {"queued": "#f9ab00", "running": "#1a73e8", "done": "#188038", "failed": "#d93025",
                "cancelled": "#80868b"}

# one stylesheet for the live widget and the static snapshot
_STYLE = "<style>" + (Path(__file__).parent / "live.css").read_text(encoding="utf-8") + "</style>"


def state_color(state: str) -> str:
    """A bar's colour is its state, always (the legend says which is which); the batch a call
    decoded in is its label and hover text, never its colour."""
    return STATE_COLORS.get(state, "#80868b")


# ------------------------------------------------------------------------------------------- HTML
def snapshot_html(snap: dict[str, Any]) -> str:
    h = snap["header"]
    parts = [f'<div class="epic-live epic-snapshot" data-state="{_e(h["state"])}">', _STYLE,
             _header_html(h)]
    if h.get("error"):
        parts.append(f'<div class="epic-error">{_e(h["error"])}</div>')
    if snap["rows"]:
        parts.append(_table_html(snap["rows"], h))
    if snap.get("tokens"):
        parts.append(tokens_panel_html(snap["tokens"]))
    if snap["bars"]:
        parts.append(_timeline_svg(snap["bars"], h))
    parts.append(_trace_html(snap["trace"]))
    if snap.get("sot"):
        parts.append(_sot_html(snap["sot"]))
    parts.append("</div>")
    return "\n".join(parts)


def _tokens(h: dict[str, Any]) -> str:
    """Token counts; the prompt tokens the local batcher's prefix cache did not recompute, when any."""
    reused = h.get("tokens_reused") or 0
    return f"tokens {h['tokens_in']} in / {h['tokens_out']} out" + (f" ({reused} in reused)" if reused else "")


def _header_html(h: dict[str, Any]) -> str:
    items = [f'<span class="epic-status" data-state="{_e(h["state"])}">{_e(h["state"])}</span>']
    if h.get("title"):
        items.append(f'<span class="epic-title">{_e(h["title"])}</span>')
    items += [
        f'<span class="epic-elapsed">{h["elapsed"]:.2f} s</span>',
        f'<span class="epic-steps">{h["steps"]} steps</span>',
        f'<span class="epic-counts">{_counts(h)}</span>',
        f'<span class="epic-tokens">{_tokens(h)}</span>',
        f'<span class="epic-parallelism">parallelism {h["parallelism"]:.1f}x</span>',
    ]
    if h.get("strategy") or h.get("backend"):
        items.append(f'<span class="epic-config">{_e(h.get("strategy", ""))} · {_e(h.get("backend", ""))}</span>')
    if loading_text(h):
        items.append(f'<span class="epic-loading">{_e(loading_text(h))}</span>')
    return f'<div class="epic-header">{" ".join(items)}</div>'


def loading_text(h: dict[str, Any]) -> str:
    """"loading SmolLM2-135M-Instruct … 12 s" while the model loads, then how long it took."""
    if h.get("loading"):
        return f"loading {h['loading'].split(' · ')[-1]} … {h.get('loading_s', 0):.0f} s (not counted in call latencies)"
    if h.get("load_s") is not None and h["load_s"] >= 0.5:
        return f"model loaded in {h['load_s']:.1f} s (not counted in call latencies)"
    return ""


def _counts(h: dict[str, Any]) -> str:
    budget = f' (budget {h["max_calls"]:,})' if h.get("max_calls") else ""
    parts = [f'{h["calls"]} calls{budget}:']
    for key in ("queued", "running", "done", "failed", "cancelled", "cached"):
        if h.get(key) or key in ("running", "done"):
            parts.append(f"{h[key]} {key}")
    return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


_FILTERS = ("queued", "running", "done", "failed", "cancelled")
_uid = itertools.count(1)


def _table_html(rows: list[dict[str, Any]], h: dict[str, Any]) -> str:
    specs = column_specs(WIDGET_COLUMNS)
    head = "".join(f"<th>{c['name']}</th>" for c in specs)
    body = []
    for r in rows:
        tds = "".join(f'<td title="{_e(c)}">{_e(c)}</td>' if spec["long"] else f"<td>{_e(c)}</td>"
                      for spec, c in zip(specs, cells(r, WIDGET_COLUMNS), strict=True))
        body.append(f'<tr data-state="{_e(r["state"])}" data-id="{r["id"]}">{tds}</tr>')
    more = h["calls"] - len(rows)
    note = f"<div class=\"epic-note\">… {more} more calls not shown (all are in <code>_epic_last.calls</code>)</div>" if more > 0 else ""
    return (f'<details open class="epic-calls-panel"><summary>Calls ({h["calls"]})</summary>'
            f'{_filter_html(rows)}'
            f'<div class="epic-calls-scroll"><table class="epic-calls"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            f"{note}</details>")


def _filter_html(rows: list[dict[str, Any]]) -> str:
    """Show-only-this-state radio buttons (CSS `:has()` does the filtering, no script), when the
    table holds more than one state or more rows than fit its scroll box."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if len(counts) < 2 and len(rows) <= 20:
        return ""
    name = f"epic-filter-{os.getpid()}-{next(_uid)}"
    items = [f'<label><input type="radio" name="{name}" value="all" checked> all {len(rows)}</label>']
    items += [f'<label><input type="radio" name="{name}" value="{k}"> {k} {counts[k]}</label>'
              for k in _FILTERS if counts.get(k)]
    return f'<div class="epic-filter">show: {"".join(items)}</div>'


_LANE_MIN, _LANE_MAX = 7.0, 14.0        # px per lane: a 1,000-call fan-out scrolls instead of vanishing


def lane_height(lanes: int) -> float:
    return max(_LANE_MIN, min(_LANE_MAX, 240.0 / max(1, lanes)))


def bar_tip(bar: list[Any]) -> str:
    """The hover text of one bar: call, line, state, prompt, tokens, latency, batch."""
    cid, _lane, start, end, state, batch, fn, line, tin, tout, prompt, cached = bar
    where = f" (line {line})" if line is not None else ""
    parts = [f"#{cid} {fn}{where}: {state}" + (" (cached)" if cached else ""),
             f"{start:.3f}-{end:.3f} s, latency {end - start:.3f} s", f"tokens {tin} in / {tout} out"]
    if batch is not None:
        parts.append(f"batch {batch}")
    if prompt:
        parts.append(f"prompt: {prompt}")
    return "\n".join(parts)


def _legend_html(h: dict[str, Any], bars: list[list[Any]]) -> str:
    items = [f'<span><i style="background:{color}"></i>{state} {h.get(state, 0)}</span>'
             for state, color in STATE_COLORS.items() if h.get(state) or state in ("running", "done")]
    first = next((b[5] for b in bars if b[5] is not None), None)     # a batch that is drawn
    if h.get("batches") and first is not None:
        items.append(f'<span class="epic-legend-batch">label b{first} = decode batch {first}; hover a bar for '
                     "its details</span>")
    return f'<div class="epic-legend">{"".join(items)}</div>'


LOAD_BAND_PX = 90          # a model load that would take over a quarter of the axis is drawn this wide


def _timeline_svg(bars: list[list[Any]], h: dict[str, Any]) -> str:
    """The timeline: a lane per concurrent call, time left to right. A model load that ended during
    the run is a band at the left; when it took more than a quarter of the run it is drawn at a fixed
    width, not to scale, and the axis starts when the model was ready (the calls waited as `queued`
    before that, and their latency starts there). The axis labels sit below the scroll box, so a
    tall timeline never hides them."""
    width = 900
    lanes = max(1, h.get("lanes", 1))
    lane_h = lane_height(lanes)
    height = lanes * lane_h + 2
    span = h.get("span") or 1e-9
    span_load = h.get("load_span")
    loaded = bool(span_load and span_load[1] > span_load[0] and span_load[1] < span)
    squeeze = loaded and (span_load[1] - span_load[0]) > span / 4
    origin = span_load[1] if squeeze else 0.0           # seconds at the left end of the scaled part
    left = LOAD_BAND_PX if squeeze else 0.0
    scale = (width - left) / max(span - origin, 1e-9)
    rects = []
    for bar in bars:
        cid, lane, start, end, state = bar[:5]
        batch = bar[5]
        x = left + max(0.0, start - origin) * scale
        w = max(0.0, end - max(start, origin)) * scale  # 1 px gap: back-to-back calls in a lane stay apart
        w = max(1.0, w - 1 if w > 3 else w)
        y = lane * lane_h
        label = ""
        if batch is not None and w >= 24 and lane_h >= 10:
            label = (f'<text x="{x + 3:.1f}" y="{y + lane_h - 3:.1f}" font-size="9" fill="#fff" '
                     f'pointer-events="none">b{batch}</text>')
        rects.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(1.0, lane_h - 1):.1f}" '
                     f'fill="{state_color(state)}" data-state="{_e(state)}" data-id="{cid}"'
                     f'{"" if batch is None else f" data-batch={chr(34)}{batch}{chr(34)}"}>'
                     f"<title>{_e(bar_tip(bar))}</title></rect>{label}")
    if loaded:                                           # the model loading: a band behind the bars
        seconds = span_load[1] - span_load[0]
        x0, x1 = (0.0, LOAD_BAND_PX - 4) if squeeze else (span_load[0] * scale, span_load[1] * scale)
        what = "loading the model" if x1 - x0 > 110 else "loading"
        rects.insert(0, f'<rect class="epic-load-band" x="{x0:.1f}" y="0" width="{max(1.0, x1 - x0):.1f}" '
                        f'height="{height:.0f}" fill="#eceff1"><title>loading the model: {seconds:.1f} s'
                        f'{" (not to scale)" if squeeze else ""}</title></rect>'
                        + (f'<text x="{x0 + 4:.1f}" y="11" font-size="10" fill="#5f6368">{what}</text>'
                           f'<text x="{x0 + 4:.1f}" y="23" font-size="10" fill="#5f6368">{seconds:.1f} s</text>'
                           if x1 - x0 > 60 else ""))
    if squeeze:
        axis_left = f"{span_load[1]:.2f} s: model ready"
        axis_right = f"{span:.2f} s"
    else:
        axis_left, axis_right = "0 s", f"{span:.2f} s"
    pad = f"{100 * left / width:.1f}%"
    axis = (f'<div class="epic-axis" style="display:flex;justify-content:space-between;max-width:{width}px;'
            f'font-size:10px;box-sizing:border-box;padding-left:{pad}"><span>{axis_left}</span><span>{axis_right}</span></div>')
    omitted = h.get("bars_omitted", 0)
    note = f"<div class=\"epic-note\">first {omitted} calls not drawn</div>" if omitted else ""
    return (f'<details open class="epic-timeline-panel"><summary>Timeline ({lanes} lane{"s" * (lanes != 1)})'
            f'</summary>{_legend_html(h, bars)}<div class="epic-timeline-scroll">'
            f'<svg class="epic-timeline" width="100%" viewBox="0 0 {width} {height:.0f}" '
            f'style="max-width:{width}px" preserveAspectRatio="xMinYMin meet">'
            f'{"".join(rects)}</svg></div>{axis}{note}</details>')


def _trace_html(trace: dict[str, Any]) -> str:
    rules = "".join(f'<span data-rule="{_e(k)}">{_e(k)} {v}</span>' for k, v in trace["rules"].items() if v)
    steps = ""
    if trace.get("recent"):
        items = "".join(f'<li value="{n}">{_e(rule)}: {_e(text)}</li>' for n, rule, text in trace["recent"])
        steps = f'<ol class="epic-steps">{items}</ol>'
    return (f'<details class="epic-trace-panel"><summary>Reduction trace ({trace["steps"]} steps)</summary>'
            f'<div class="epic-rules">{rules}</div>{steps}</details>')


def _sot_html(sot: dict[str, Any]) -> str:
    """Question, then each point with its expansion. The assembled answer repeats the points, so
    it is shown folded (with its line breaks) unless there are no points (a direct answer)."""
    items = []
    for p in sot["points"]:
        state = "done" if p["done"] else "running"
        items.append(f'<li data-index="{p["index"]}" data-state="{state}"><b>{_e(p["text"])}</b>'
                     f'<div class="epic-expansion">{_e(p["expansion"])}</div></li>')
    q = f'<div class="epic-question">{_e(sot["question"])}</div>' if sot.get("question") else ""
    note = f'<div class="epic-note">{_e(sot["note"])}</div>' if sot.get("note") else ""
    a = ""
    if sot.get("answer"):
        body = f'<div class="epic-answer">{_e(sot["answer"])}</div>'
        a = (f'<details class="epic-answer-panel"><summary>assembled answer</summary>{body}</details>'
             if sot["points"] else body)
    graph = _sot_graph_svg(sot["graph"]) if sot.get("graph") else ""
    return (f'<details open class="epic-sot"><summary>{_e(sot_title(sot))}</summary>'
            f'{q}{note}{graph}<ol>{"".join(items)}</ol>{a}</details>')


def sot_title(sot: dict[str, Any]) -> str:
    g = sot.get("graph")
    if not g:
        return f'Skeleton-of-Thought ({len(sot["points"])} points)'
    return f'Skeleton graph ({len(sot["points"])} points, {len(g["edges"])} edges)'


def critical_text(g: dict[str, Any]) -> str:
    """The caption under a skeleton graph: its critical path, or its depth while that is unknown."""
    path = [n["index"] for n in g["nodes"] if n["critical"]]
    if not path:
        return f"{g['depth']} rounds of expansions at least (longest chain of dependencies)"
    return (f"critical path: {' → '.join(str(i) for i in path)} ({len(path)} of {len(g['nodes'])} points "
            "in a row; every other point runs beside it)")


def _sot_graph_svg(g: dict[str, Any]) -> str:
    """The skeleton graph: one node per point in the column of its depth, an edge per dependency,
    the critical path drawn heavier (live.js draws the same)."""
    parts = []
    for e in g["edges"]:
        parts.append(f'<line class="epic-edge{" epic-critical" * e["critical"]}" x1="{e["x1"]}" y1="{e["y1"]}" '
                     f'x2="{e["x2"]}" y2="{e["y2"]}" marker-end="url(#epic-arrow)"/>')
    for n in g["nodes"]:
        label = n["text"] if len(n["text"]) <= 20 else n["text"][:19] + "…"
        parts.append(f'<g class="epic-node{" epic-critical" * n["critical"]}" data-index="{n["index"]}" '
                     f'data-state="{n["state"]}"><title>{n["index"]}. {_e(n["text"])}</title>'
                     f'<circle cx="{n["x"]}" cy="{n["y"]}" r="9"/>'
                     f'<text x="{n["x"]}" y="{n["y"] + 4}" text-anchor="middle">{n["index"]}</text>'
                     f'<text class="epic-node-label" x="{n["x"]}" y="{n["y"] + 23}" text-anchor="middle">{_e(label)}</text></g>')
    marker = ('<defs><marker id="epic-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerUnits="userSpaceOnUse" '
              'markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>')
    return (f'<svg class="epic-graph" width="{g["width"]}" height="{g["height"]}" '
            f'viewBox="0 0 {g["width"]} {g["height"]}">{marker}{"".join(parts)}</svg>'
            f'<div class="epic-note epic-critical-path">{_e(critical_text(g))}</div>')


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


# ------------------------------------------------------------------------------------------- text
def snapshot_text(snap: dict[str, Any], *, max_rows: int = 20, width: int = 110) -> str:
    """A compact table; the error itself is left to the cell's error output (no duplicate)."""
    h = snap["header"]
    title = f" {h['title']}" if h.get("title") else ""
    lines = [f"epic{title} [{h['state']}] {h['elapsed']:.2f} s · {h['steps']} steps · {_counts(h)} · "
             f"{_tokens(h)} · parallelism {h['parallelism']:.1f}x"]
    if loading_text(h):
        lines.append(f"  {loading_text(h)}")
    rows = snap["rows"]
    if rows:
        lines += plain_table(rows[:max_rows], WIDGET_COLUMNS, indent="  ", width=width)
        more = h["calls"] - min(len(rows), max_rows)
        if more > 0:
            lines.append(f"  … {more} more calls")
    for d in snap.get("tokens") or ():
        lines.append(f"  {token_summary(d)}")
    rules = " · ".join(f"{k} {v}" for k, v in snap["trace"]["rules"].items() if v)
    if rules:
        lines.append(f"  rules: {rules}")
    for p in snap.get("sot", {}).get("points", []):
        lines.append(f"  {p['index']}. {p['text']}" + (f" -> {p['expansion'][:60]}" if p["expansion"] else ""))
    return "\n".join(lines)
