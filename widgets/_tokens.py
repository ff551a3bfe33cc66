"""The token view: one call's generated tokens, from its `CallRecord.tokens` (`llm(..., logprobs=k)`).

Each token is coloured by the probability the model gave it, carries its arrival time, and shows its
k best alternatives on hover (masked ones struck through on a constrained call); a small timeline
under the tokens marks each arrival and the batch size the local batcher decoded at (rows joining
and leaving). `tokens_compare_html` lays two or more samples of one prompt side by side, merged
where they agree.

One HTML structure serves every case: a plain `<table>`, one row per token (text, probability,
arrival, alternatives), which an untrusted notebook or any HTML reader shows as a readable table;
the scoped `<style>` (kept in trusted notebooks and exports) turns the rows into a flowing line of
coloured tokens whose alternatives pop up on hover. It sits in a `<details>`, so it opens with a click
and needs no script: it works live, after save and reopen, and in nbconvert's HTML. Colours come
from JupyterLab's theme variables (with fallbacks), so dark themes stay readable. All model text is
HTML-escaped. Size: about 35 bytes a token plus ~12 per alternative (numbers rounded to whole
percents and milliseconds); benchmarks/bench_token_view.py measures a 1,000-token answer.
"""

from __future__ import annotations

import difflib
import html
import math
from pathlib import Path
from typing import Any

__all__ = ["TOKENS_STYLE", "TokenView", "align", "call_tokens", "token_summary", "tokens_compare_html", "tokens_html",
           "tokens_panel_html", "tokens_text"]

TOKENS_STYLE = "<style>" + (Path(__file__).parent / "tokens.css").read_text(encoding="utf-8") + "</style>"


def call_tokens(calls: list[Any], t0: float | None = None) -> list[dict[str, Any]]:
    """The compact token records of the calls that have one: [{id, line, prompt, start_ms, ...}]."""
    out = []
    for c in calls:
        log = getattr(c, "tokens", None)
        if log is None or not len(log):
            continue
        d = log.compact(c.start)        # ms since the call was dispatched (queueing included)
        d.update(id=c.id, line=c.user_line if c.user_line is not None else c.site_line,
                 prompt=c.args_preview, start_ms=round((c.start - t0) * 1000) if t0 is not None else 0)
        out.append(d)
    return out


def _pct(lp: float) -> int:
    return min(100, round(math.exp(lp) * 100)) if lp > -50 else 0


def _shown(tok: str) -> str:
    """A token as text you can see: newlines and tabs as symbols, the rest escaped."""
    return _e(tok.replace("\n", "\u21b5").replace("\t", "\u21e5")) or "\u2205"


def _alts(d: dict[str, Any], i: int) -> str:
    """The other candidates at step i as "text p" (p in %), best first: the chosen token is left out
    (its probability has its own column); struck through where the constraint masked them."""
    masked = set(d["masked"][i]) if d.get("masked") else set()
    chosen = d["tok"][i]
    top = d["top"][i] if d.get("top") else []
    items = []
    for tok, lp in top:
        if tok == chosen:
            chosen = None                      # leave it out once
            continue
        text = f"{_shown(tok)} {_pct(lp)}"
        items.append(f"<s title=masked>{text}</s>" if tok in masked else text)
    for tok in sorted(masked - {t for t, _ in top}):
        items.append(f"<s title=masked>{_shown(tok)}</s>")
    if d.get("allowed") is not None:
        items.append(f"<i>{d['allowed'][i]} allowed</i>")
    return "; ".join(items)


def token_summary(d: dict[str, Any]) -> str:
    n = len(d["tok"])
    probs = [math.exp(lp) for lp in d["lp"] if lp > -50]
    mean = sum(probs) / len(probs) if probs else 0.0
    what = f"top {d['k']} alternatives" if d.get("top") else "no alternatives asked"
    cons = " · constrained" if d.get("allowed") is not None else ""
    where = f" (line {d['line']})" if d.get("line") is not None else ""
    span = f"{d['ms'][-1] - d['ms'][0]} ms" if n > 1 else ""
    return f"tokens of #{d['id']}{where} · {n} tokens · {span} · mean p {mean:.2f} · {what}{cons}"


def tokens_html(d: dict[str, Any], *, open_: bool = False, style: bool = True) -> str:
    """One call's token view (a compact record from `call_tokens`)."""
    has_alts = bool(d.get("top") or d.get("allowed") is not None)
    head = "<th>token<th>p %<th>ms" + ("<th>alternatives (p %)" if has_alts else "")
    rows = []
    for i, (tok, lp, ms) in enumerate(zip(d["tok"], d["lp"], d["ms"], strict=True)):
        p = _pct(lp)
        cells = f"<td>{_shown(tok)}<td>{p}<td>{ms}"
        if has_alts:
            cells += f"<td>{_alts(d, i)}"
        rows.append(f"<tr class=p{min(9, p // 10)}>{cells}")
    return (f'{TOKENS_STYLE if style else ""}<details class="epic-tokview" data-call="{d["id"]}"'
            f'{" open" if open_ else ""}><summary>{_e(token_summary(d))}</summary>'
            f'{_timeline(d)}<table class="epic-toks"><thead><tr>{head}</thead><tbody>{"".join(rows)}'
            f"</tbody></table></details>")


def _timeline(d: dict[str, Any], width: int = 600, height: int = 28) -> str:
    """Token arrivals as ticks, the batch's rows as a step line (up: rows joined, down: rows left)."""
    ms = d["ms"]
    if len(ms) < 2:
        return ""
    lo, hi = ms[0], max(ms[-1], ms[0] + 1)
    x = [round((m - lo) * width / (hi - lo)) for m in ms]
    ticks = "".join(f"M{v} {height - 6}v6" for v in sorted(set(x)))      # one tick per pixel at most
    parts = [f'<path class="tk" d="{ticks}"/>']
    rows = d.get("rows")
    label = f"{len(ms)} tokens over {hi - lo} ms"
    if rows:
        top = max(rows)
        ys = [round((height - 8) * (1 - r / top), 1) for r in rows]
        pts = [f"{x[0]},{ys[0]}"]
        for i in range(1, len(x)):
            if ys[i] != ys[i - 1]:                      # a step: rows joined or left at this token
                pts += [f"{x[i]},{ys[i - 1]}", f"{x[i]},{ys[i]}"]
        pts.append(f"{x[-1]},{ys[-1]}")
        parts.append(f'<polyline class="rows" points="{" ".join(pts)}"/>')
        label += f"; batch rows {min(rows)}-{top} (line: rows decoding together, a step up is a join)"
    return (f'<svg class="epic-tokline" viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px">'
            f"<title>{_e(label)}</title>{''.join(parts)}</svg><div class=epic-toknote>{_e(label)}</div>")


def tokens_panel_html(records: list[dict[str, Any]], *, style: bool = True) -> str:
    """Every call's token view, each folded (click a call to open its tokens)."""
    if not records:
        return ""
    views = "".join(tokens_html(d, style=False) for d in records)
    return (f'{TOKENS_STYLE if style else ""}<details class="epic-tokens-panel" open><summary>Tokens '
            f"({len(records)} calls with logprobs; open one, hover a token for its alternatives)</summary>"
            f"{views}</details>")


def tokens_text(records: list[dict[str, Any]], width: int = 100) -> str:
    """Plain text for consoles: one line per call, then its tokens with their probabilities."""
    lines = []
    for d in records:
        lines.append(token_summary(d))
        line = "  "
        for tok, lp in zip(d["tok"], d["lp"], strict=True):
            item = f"{tok!r}:{_pct(lp)} "
            if len(line) + len(item) > width:
                lines.append(line.rstrip())
                line = "  "
            line += item
        lines.append(line.rstrip())
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- side by side
def align(samples: list[list[str]]) -> list[tuple[bool, list[list[str]]]]:
    """Split samples into segments: (True, [common tokens]) where every sample agrees with the
    first, (False, [each sample's tokens]) between such runs. Agreement is difflib's matching
    blocks against the first sample, kept where all samples match the same tokens in order."""
    ref = samples[0]
    maps: list[dict[int, int]] = []
    for other in samples[1:]:
        sm = difflib.SequenceMatcher(None, ref, other, autojunk=False)
        maps.append({a + k: b + k for a, b, n in sm.get_matching_blocks() for k in range(n)})
    agreed = [i for i in range(len(ref)) if all(i in m for m in maps)]
    segs: list[tuple[bool, list[list[str]]]] = []
    prev = [-1] * len(samples)
    run: list[str] = []

    def flush_run() -> None:
        if run:
            segs.append((True, [list(run)]))
            run.clear()
    for i in agreed:
        pos = [i] + [m[i] for m in maps]
        if any(p != q + 1 for p, q in zip(pos, prev, strict=True)):
            flush_run()
            gap = [s[q + 1:p] for s, p, q in zip(samples, pos, prev, strict=True)]
            if any(gap):
                segs.append((False, gap))
        run.append(ref[i])
        prev = pos
    flush_run()
    tail = [s[q + 1:] for s, q in zip(samples, prev, strict=True)]
    if any(tail):
        segs.append((False, tail))
    return segs


def tokens_compare_html(records: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    """Two or more calls' tokens side by side: one column per call, one row per segment, rows where
    all agree merged across the columns. Each token keeps its probability colour and its hover."""
    labels = labels or [f"#{d['id']}" for d in records]
    index = [dict(enumerate(d["tok"])) for d in records]
    segs = align([d["tok"] for d in records])
    pos = [0] * len(records)
    rows = []
    for same, parts in segs:
        if same:
            n = len(parts[0])
            cells = f'<td colspan="{len(records)}" class="same">{_span(records[0], pos[0], n)}</td>'
            pos = [p + n for p in pos]
        else:
            cells = ""
            for j, part in enumerate(parts):
                cells += f'<td class="diff">{_span(records[j], pos[j], len(part))}</td>'
                pos[j] += len(part)
        rows.append(f"<tr>{cells}</tr>")
    assert all(p == len(ix) for p, ix in zip(pos, index, strict=True))
    head = "".join(f"<th>{_e(lab)}</th>" for lab in labels)
    agree = sum(len(p[0]) for s, p in segs if s)
    return (f'{TOKENS_STYLE}<div class="epic-tokcompare"><div class=epic-toknote>{len(records)} samples; '
            f"{agree} tokens in agreement (merged rows), differences side by side</div>"
            f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _span(d: dict[str, Any], start: int, n: int) -> str:
    out = []
    for i in range(start, start + n):
        p = _pct(d["lp"][i])
        alts = _alts(d, i) if d.get("top") or d.get("allowed") is not None else ""
        tip = f"<b>{p}% · {d['ms'][i]} ms{'; alternatives (p %): ' + alts if alts else ''}</b>"
        out.append(f"<span class=p{min(9, p // 10)}>{_shown(d['tok'][i])}{tip}</span>")
    return "".join(out)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


class TokenView:
    """The token view of one call, or two or more side by side (aligned where they agree).

        TokenView(_epic_last.calls)                         # every call that asked for logprobs=
        TokenView(res.calls[:3], labels=["greedy", "t=0.7", "top-p"])

    Takes CallRecords (or a RunResult); calls without a per-token record are skipped. Displays as
    HTML (a table where scripts and styles are stripped) and as text."""

    def __init__(self, calls: Any, labels: list[str] | None = None):
        calls = list(getattr(calls, "calls", calls))
        t0 = min((c.start for c in calls), default=0.0)
        self.records = call_tokens(calls, t0)
        if not self.records:
            raise ValueError("none of these calls has a per-token record: ask for one with llm(..., logprobs=5)")
        if labels is not None and len(labels) != len(self.records):
            raise ValueError(f"{len(labels)} labels for {len(self.records)} calls with tokens")
        self.labels = labels

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.html(), "text/plain": tokens_text(self.records)}

    def html(self) -> str:
        if len(self.records) == 1:
            return tokens_html(self.records[0], open_=True)
        views = "".join(tokens_html(d, open_=False, style=False) for d in self.records)
        return tokens_compare_html(self.records, self.labels) + views

    def __repr__(self) -> str:
        return tokens_text(self.records)
