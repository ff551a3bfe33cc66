"""The `%%epic --compare` view: every strategy's run on one time axis.

Built from the live view's own pieces: each run is folded into a `RunModel` (as the live view folded
its events) and drawn with the snapshot's timeline, on an axis that fits that run (a 200-call fan-out
is not a sliver on the sequential run's axis); the same timelines on one shared axis are one click
away, and a bar per strategy against the critical-chain bound compares them at a glance. Above them:
a table (wall time, speedup over sequential, parallelism, steps, calls, decode batches, agreement)
and the chain the bound comes from. A strategy whose value or calls differ from the sequential
run's, or that failed or was interrupted, is marked so in red; nothing is averaged away.

The output is static HTML (plus text): it needs no kernel, so saved notebooks and exports show it.
The table is plain HTML; the charts travel as JSON-quoted markup that a two-line script inserts,
so where scripts do not run (an untrusted notebook, whose sanitizer would flatten the SVG into a
run of label text) the output is a clean table and a note saying why the charts are missing.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

from ._model import RunModel
from ._snapshot import _STYLE, _timeline_svg
from ._tokens import tokens_panel_html

__all__ = ["CompareView", "compare_html", "compare_snapshot", "compare_text"]

_CSS = "<style>" + (Path(__file__).parent / "compare.css").read_text(encoding="utf-8") + "</style>"
_WIDTH = 900
_COLORS = {"sequential": "#80868b", "opportunistic": "#1a73e8", "opportunistic-dfs": "#7b1fa2",
           "random": "#c26401", "critical chain": "#188038"}
_SHARED_BARS = 3000                    # beyond this many bars in all, the shared-axis copy is left out
_uid = itertools.count(1)


class CompareView:
    """What a `--compare` cell displays (HTML and text), from a `llm.compare.Comparison`."""

    def __init__(self, comparison: Any, title: str = ""):
        self.comparison = comparison
        self.snap = compare_snapshot(comparison, title=title)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": compare_html(self.snap), "text/plain": compare_text(self.snap)}

    def __repr__(self) -> str:
        return compare_text(self.snap)


def compare_snapshot(cmp: Any, *, title: str = "") -> dict[str, Any]:
    """JSON-ready data for the view: one row per strategy (with its timeline snapshot)."""
    ends = [r.result.elapsed for r in cmp.runs if r.result is not None]
    if cmp.critical_path is not None:
        ends.append(cmp.critical_path)
    span = _round_up(max(ends + [1e-6]))
    rows = []
    for r in cmp.runs:
        res = r.result
        row: dict[str, Any] = {"strategy": r.strategy, "ok": r.ok, "problem": r.error or r.mismatch,
                               "state": run_state(r)}
        if res is not None:
            model = RunModel(title=r.strategy, strategy=r.strategy, backend=cmp.backend)
            for ev in res.trace:
                model.on_event(ev)
            model.finish(res, state=row["state"] if row["state"] != "done" else None)
            snap = model.snapshot(max_rows=0, max_bars=1000)
            snap["header"]["span"] = _round_up(max(res.elapsed, 1e-6))       # its own axis
            sp = cmp.speedup(r)
            row.update(elapsed=round(res.elapsed, 4), speedup=None if sp is None else round(sp, 2),
                       parallelism=round(res.parallelism, 2), steps=res.steps, calls=len(res.calls),
                       cached=sum(bool(c.cached) for c in res.calls), tokens=snap["tokens"],
                       header=snap["header"], bars=snap["bars"], batches=_batches(res))
        rows.append(row)
    bound = cmp.bound
    chain = getattr(cmp, "chain", None)
    links = [[lk.fn, lk.line, lk.args, round(lk.latency, 4)] for lk in chain.links] if chain is not None else []
    return {"title": title, "backend": cmp.backend, "span": span, "ok": cmp.ok, "problems": cmp.problems(),
            "critical_path": None if cmp.critical_path is None else round(cmp.critical_path, 4),
            "bound": None if bound is None else round(bound, 2), "chain": links,
            "order": list(getattr(cmp, "order", [])), "rows": rows}


def run_state(run: Any) -> str:
    """done | failed | interrupted | disagrees: what the run's row and timeline are labelled."""
    if run.error:
        return "interrupted" if run.error.startswith("interrupted") else "failed"
    return "disagrees" if run.mismatch else "done"


def _round_up(t: float) -> float:
    return math.ceil(t * 1e4) / 1e4                     # every bar fits


def _batches(res: Any) -> list[list[Any]]:
    """[batch id, start, end, calls] per decode batch (local model), seconds since the run began."""
    out: dict[int, list[Any]] = {}
    for c in res.calls:
        if c.batch_id is None or c.end is None:
            continue
        b = out.setdefault(c.batch_id, [c.batch_id, c.start - res.start, c.end - res.start, 0])
        b[1] = min(b[1], c.start - res.start)
        b[2] = max(b[2], c.end - res.start)
        b[3] += 1
    return [[b, round(s, 4), round(e, 4), n] for b, s, e, n in sorted(out.values())]


# ------------------------------------------------------------------------------------------- HTML
def compare_html(snap: dict[str, Any]) -> str:
    state = "done" if snap["ok"] else "failed"
    parts = [f'<div class="epic-live epic-snapshot epic-compare" data-state="{state}">', _STYLE, _CSS, _head(snap)]
    if snap["problems"]:
        items = "".join(f"<li>{_e(p)}</li>" for p in snap["problems"])
        parts.append(f'<div class="epic-error epic-compare-problems">The strategies do not agree, or a run '
                     f"failed:<ul>{items}</ul></div>")
    parts.append(_table(snap))
    parts.append(_charts(snap))
    for row in snap["rows"]:            # token views are script-free HTML: outside the inserted charts
        if row.get("tokens"):
            parts.append(f'<div class="epic-compare-label">{_e(row["strategy"])}: tokens</div>')
            parts.append(tokens_panel_html(row["tokens"]))
    parts.append("</div>")
    return "\n".join(parts)


def _charts(snap: dict[str, Any]) -> str:
    """The SVG charts, inserted by a script (see the module docstring); a note where none runs."""
    charts = [_walls_svg(snap)]
    for row in snap["rows"]:
        if "bars" in row:
            charts.append(_run_html(row, row["header"]["span"], snap))
    shared = [row for row in snap["rows"] if row.get("bars")]
    if shared and sum(len(r["bars"]) for r in shared) <= _SHARED_BARS:
        charts.append('<details class="epic-compare-shared"><summary>The same timelines on one shared time axis '
                      "(the longest run's)</summary>"
                      + "".join(_run_html(row, snap["span"], snap) for row in shared) + "</details>")
    uid = f"{os.getpid()}-{next(_uid)}"
    data = json.dumps("".join(charts)).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    boot = ("(function(){var s=document.currentScript;var box=s&&s.parentNode;"
            f"if(!box||!box.dataset){{box=document.querySelector('[data-epic-charts=\"{uid}\"]');}}"
            "if(!box||box.dataset.ready)return;box.dataset.ready='1';"
            "var d=box.querySelector('script.epic-compare-data');"
            "box.querySelector('.epic-compare-charts-body').innerHTML=JSON.parse(d.textContent);"
            "box.classList.add('epic-compare-charts-live');})();")
    note = ('<div class="epic-note epic-compare-nocharts">(Scripts do not run here, so the timelines are '
            "missing: trust the notebook or open its HTML export to see them.)</div>")
    return (f'<div class="epic-compare-charts" data-epic-charts="{uid}">{note}'
            f'<div class="epic-compare-charts-body"></div>'
            f'<script type="application/json" class="epic-compare-data">{data}</script>'
            f"<script>{boot}</script></div>")


def _run_html(row: dict[str, Any], span: float, snap: dict[str, Any]) -> str:
    label = (f'{_e(row["strategy"])}: {row["elapsed"]:.2f} s'
             + (f', {row["speedup"]:.2f}x' if row.get("speedup") is not None else "")
             + ("" if row["state"] == "done" else f" ({_e(row['state'])})"))
    header = {**row["header"], "span": span}
    parts = [f'<div class="epic-compare-run" data-strategy="{_e(row["strategy"])}" '
             f'data-ok="{str(row["ok"]).lower()}" data-state="{_e(row["state"])}">'
             f'<div class="epic-compare-label">{label}</div>']
    if row["bars"]:
        parts.append(_timeline_svg(row["bars"], header))
    if row["batches"]:
        parts.append(_batches_svg(row["batches"], span, _max_batch(snap)))
    parts.append("</div>")
    return "".join(parts)


def _head(snap: dict[str, Any]) -> str:
    state = "done" if snap["ok"] else "failed"
    cp = ""
    if snap["critical_path"] is not None:
        cp = (f'<span class="epic-compare-cp">bound: critical chain {snap["critical_path"]:.2f} s'
              + (f' (speedup at most {snap["bound"]:.2f}x)' if snap["bound"] is not None else "") + "</span>")
    title = f'<span class="epic-title">{_e(snap["title"])}</span>' if snap["title"] else ""
    order = (f'<span class="epic-note">warm-up run first (not timed), then {" → ".join(map(_e, snap["order"]))}'
             "</span>" if snap.get("order") else "")
    items = [f'<span class="epic-status" data-state="{state}">{"agree" if snap["ok"] else "failed"}</span>',
             title, "<b>strategy comparison</b>",
             f'<span class="epic-config">{_e(snap["backend"])} · same answers for every strategy · no answer cache'
             "</span>", cp, order]
    return f'<div class="epic-header">{" · ".join(i for i in items if i)}</div>'


def _table(snap: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("strategy", "wall", "speedup vs sequential", "parallelism",
                                               "steps", "calls", "decode batches", "result"))
    body = []
    for r in snap["rows"]:
        if "elapsed" in r:
            result = "agrees" if r["ok"] else r["problem"]
            cells = [r["strategy"], f'{r["elapsed"]:.3f} s',
                     "" if r["speedup"] is None else f'{r["speedup"]:.2f}x', f'{r["parallelism"]:.1f}x',
                     r["steps"], r["calls"], len(r["batches"]) or "", result]
        else:
            cells = [r["strategy"], "", "", "", "", "", "", r["problem"]]
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        body.append(f'<tr data-strategy="{_e(r["strategy"])}" data-state="{_e(r["state"])}">{tds}</tr>')
    if snap["critical_path"] is not None:
        bound = "" if snap["bound"] is None else f'at most {snap["bound"]:.2f}x'
        body.append(f'<tr data-strategy="critical chain"><td>critical chain (bound)</td>'
                    f'<td>{snap["critical_path"]:.3f} s</td><td>{bound}</td><td colspan="5">'
                    f"{_e(chain_text(snap))}</td></tr>")
    elif all(r.get("calls") == 0 for r in snap["rows"] if "calls" in r):
        body.append('<tr data-strategy="critical chain"><td>critical chain</td><td colspan="7">no calls: '
                    "nothing to overlap, so no speedup and no bound</td></tr>")
    return (f'<table class="epic-calls epic-compare-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def chain_text(snap: dict[str, Any]) -> str:
    """The bound explained: its calls, each at the smallest latency it had in any run."""
    links = snap.get("chain") or []
    if not links:
        return ""
    shown = [f"{fn}{f' (line {line})' if line else ''} {lat:.3f} s" for fn, line, _args, lat in links[:12]]
    more = f" → … {len(links) - 12} more" if len(links) > 12 else ""
    if len(links) == 1:
        return f"one call, at its fastest: {shown[0]} (no call waited on another in every run). No run was faster."
    return (f"{len(links)} calls that waited on each other in every run, each at its fastest: "
            + " → ".join(shown) + more + ". No run was faster.")


def _walls_svg(snap: dict[str, Any]) -> str:
    """One bar per strategy (and the bound) on the shared axis: the comparison at a glance."""
    rows = [(r["strategy"], r["elapsed"], r["ok"]) for r in snap["rows"] if "elapsed" in r]
    if snap["critical_path"] is not None:
        rows.append(("critical chain", snap["critical_path"], True))
    lane, label_w = 16, 130
    scale = (_WIDTH - label_w - 60) / (snap["span"] or 1e-9)
    items = []
    for i, (name, t, ok) in enumerate(rows):
        y = i * lane
        color = _COLORS.get(name, "#80868b") if ok else "#d93025"
        items.append(f'<text x="0" y="{y + 12}" font-size="11">{_e(name)}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{max(1.0, t * scale):.1f}" height="{lane - 4}" '
                     f'fill="{color}" data-strategy="{_e(name)}"><title>{_e(name)}: {t:.3f} s</title></rect>'
                     f'<text x="{label_w + t * scale + 4:.1f}" y="{y + 12}" font-size="10">{t:.2f} s</text>')
    height = len(rows) * lane + 4
    return (f'<svg class="epic-compare-walls" width="100%" viewBox="0 0 {_WIDTH} {height}" '
            f'style="max-width:{_WIDTH}px" preserveAspectRatio="xMinYMin meet">{"".join(items)}</svg>')


def _max_batch(snap: dict[str, Any]) -> int:
    return max([b[3] for r in snap["rows"] for b in r.get("batches", [])] + [1])


def _batches_svg(batches: list[list[Any]], span: float, top: int) -> str:
    """Decode batch sizes over time (local model), on the timelines' axis: a bar per batch."""
    height = 36
    scale = _WIDTH / (span or 1e-9)
    rects = []
    for bid, start, end, size in batches:
        h = max(2.0, (height - 10) * size / top)
        x, w = start * scale, max(1.0, (end - start) * scale - 1)
        rects.append(f'<rect x="{x:.1f}" y="{height - 10 - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#5f6368" '
                     f'data-batch="{bid}"><title>batch {bid}: {size} call{"s" * (size != 1)}, '
                     f"{start:.2f}-{end:.2f} s</title></rect>")
    return (f'<div class="epic-note">decode batches (height = calls in the batch, at most {top})</div>'
            f'<svg class="epic-compare-batches" width="100%" viewBox="0 0 {_WIDTH} {height}" '
            f'style="max-width:{_WIDTH}px" preserveAspectRatio="xMinYMin meet">{"".join(rects)}</svg>')


# ------------------------------------------------------------------------------------------- text
def compare_text(snap: dict[str, Any]) -> str:
    lines = [f"strategy comparison · {snap['backend']} · " + ("agree" if snap["ok"] else "FAILED")]
    if snap.get("order"):
        lines.append(f"  warm-up run first (not timed), then {' → '.join(snap['order'])}")
    for r in snap["rows"]:
        if "elapsed" in r:
            sp = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            lines.append(f"  {r['strategy']:<18} {r['elapsed']:>8.3f} s {sp:>7}  parallelism {r['parallelism']:.1f}x "
                         f"· {r['steps']} steps · {r['calls']} calls · " + ("agrees" if r["ok"] else r["problem"]))
        else:
            lines.append(f"  {r['strategy']:<18} {r['problem']}")
    if snap["critical_path"] is not None:
        bound = "" if snap["bound"] is None else f"{snap['bound']:.2f}x"
        lines.append(f"  {'critical chain':<18} {snap['critical_path']:>8.3f} s {bound:>7}  (the bound)")
        lines.append(f"    {chain_text(snap)}")
    return "\n".join(lines)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)
