"""The decoding comparison view (`%%epic --decode`, `epic_kernel.decode_compare`).

From a `programs.decoding.DecodingComparison` (live, or loaded back from its JSON): a header (answer
backend, judge, settings), a table per program over all questions (median speed-up over normal
decoding, first token, tokens generated and prefilled, answer length, capped runs, net win rate per
judge protocol, per category too), then for each question its own table, every program's calls as
lanes on one shared time axis (a tick marks the first token; bars are labelled with their decode
batch on a local model), and the answers side by side: SoT's points with their expansions, a
sampled program's samples with the one it kept, and the judge's raw replies folded under each verdict.

Static HTML plus text, like the `--compare` view: no kernel needed, so saved notebooks, reopened
notebooks and exports show it. Model output is always HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ._snapshot import _STYLE

__all__ = ["DecodeView", "decode_html", "decode_text"]

_CSS = "<style>" + (Path(__file__).parent / "decode.css").read_text(encoding="utf-8") + "</style>"
_WIDTH = 900
_LABEL_W = 130
_LANE_H = 9.0
_COLORS = {"normal": "#80868b", "sot": "#1a73e8", "sot-r": "#7b1fa2", "sot-stream": "#188038",
           "self-consistency": "#c26401", "best-of-n": "#b31412"}
_VERDICT_TEXT = {"win": "wins", "loss": "loses", "tie": "ties", "unparsed": "unparsed"}


class DecodeView:
    """What a `--decode` cell displays (HTML and text)."""

    def __init__(self, comparison: Any, title: str = ""):
        self.comparison = comparison
        self.title = title

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": decode_html(self.comparison, title=self.title), "text/plain": decode_text(self.comparison)}

    def __repr__(self) -> str:
        return decode_text(self.comparison)


# ------------------------------------------------------------------------------------------- HTML
def decode_html(cmp: Any, *, title: str = "") -> str:
    state = "done" if cmp.finished else "running"
    parts = [f'<div class="epic-live epic-snapshot epic-decode" data-state="{state}">', _STYLE, _CSS,
             _head(cmp, title, state), _summary_table(cmp)]
    if len(cmp.questions) > 1 and cmp.verdict_keys():
        parts.append(_category_table(cmp))
    for i, q in enumerate(cmp.questions):
        parts.append(_question_html(cmp, q, open_=i == 0))
    parts.append("</div>")
    return "\n".join(parts)


def _head(cmp: Any, title: str, state: str) -> str:
    s = cmp.settings
    cfg = (f'max_tokens {s.get("max_tokens")} · samples n={s.get("n")} at temperature {s.get("temperature")}, '
           f'top_p {s.get("top_p")}, seeds {s.get("seed")}+k · SoT expand_with={s.get("expand_with")}')
    judge = (f'judge {_e(cmp.judge)} ({_e(", ".join(_protocol_names(cmp)))}; each answer vs normal decoding, '
             f'both orders)' if cmp.judge else "no judge")
    t = f'<span class="epic-title">{_e(title)}</span>' if title else ""
    return (f'<div class="epic-header"><span class="epic-status" data-state="{state}">{state}</span>{t}'
            f'<b>decoding programs side by side</b><span class="epic-config">{_e(cmp.backend)} · '
            f'{len(cmp.questions)} question{"s" * (len(cmp.questions) != 1)} · each program timed alone, '
            f'order rotated per question · {judge}</span></div><div class="epic-note">{_e(cfg)}</div>')


def _protocol_names(cmp: Any) -> list[str]:
    return cmp.verdict_keys() or list(cmp.protocols)


def _summary_table(cmp: Any) -> str:
    keys = cmp.verdict_keys()
    head = ["program", "questions", "median wall", "median speed-up vs normal", "median first token",
            "tokens out (mean)", "prefilled (mean)", "answer chars (mean)", "runs capped", "largest batch",
            *[f"net win {k}" for k in keys]]
    body = []
    for r in cmp.table():
        cells = [r["label"], r["questions"] - r["failed"] if not r["failed"] else f'{r["questions"]} ({r["failed"]} failed)',
                 _s(r["median_s"]), _x(r["median_speedup"]), _s(r["median_first_token_s"]),
                 _n(r["mean_tokens_out"]), _n(r["mean_prefilled"]), _n(r["mean_answer_chars"]),
                 f'{r["capped_runs"]}', r["max_batch"] or "",
                 *[_rate(r["net_win"].get(k)) for k in keys]]
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        body.append(f'<tr data-program="{_e(r["program"])}" data-state="{"failed" if r["failed"] else "done"}">{tds}</tr>')
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    note = ("runs capped: runs with a call that used its whole max_tokens (a cut answer); a shorter answer is "
            "faster without being better: compare answer chars and the judge's verdicts with the speed-up")
    return (f'<div class="epic-decode-scroll"><table class="epic-calls epic-decode-table"><thead><tr>{ths}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div><div class="epic-note">{_e(note)}</div>')


def _category_table(cmp: Any) -> str:
    """Net win rate per category, per program and verdict key (the SoT paper's table)."""
    cats = sorted({q.category for q in cmp.questions if q.category})
    if not cats:
        return ""
    keys = cmp.verdict_keys()
    head = "".join(f"<th>{_e(h)}</th>" for h in ("program", "verdicts", *cats, "overall"))
    body = []
    for name in cmp.programs:
        for k in keys:
            rates = cmp.net_win_rates(name, k)
            if not rates:
                continue
            cells = [cmp.labels.get(name, name), k, *[_rate(rates.get(c)) for c in cats], _rate(rates.get("overall"))]
            body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    if not body:
        return ""
    return (f'<details open class="epic-decode-categories"><summary>net win rate per category (vs normal; '
            f'(wins - losses) / questions)</summary><table class="epic-calls epic-decode-table"><thead><tr>{head}'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table></details>')


def _question_html(cmp: Any, q: Any, open_: bool) -> str:
    cat = f' <span class="epic-decode-category">{_e(q.category)}</span>' if q.category else ""
    parts = [f'<details {"open " if open_ else ""}class="epic-decode-question" data-question="{_e(q.question_id)}">'
             f'<summary>{_e(q.question_id)}.{cat} {_e(_short(q.question, 120))}</summary>',
             f'<div class="epic-question">{_e(q.question)}</div>',
             f'<div class="epic-note">run order: {_e(" → ".join(cmp.labels.get(n, n) for n in q.order))}</div>']
    if q.judge_error:
        parts.append(f'<div class="epic-error">judge failed: {_e(q.judge_error)}</div>')
    parts.append(_question_table(cmp, q))
    parts.append(_lanes_svg(cmp, q))
    parts.append('<div class="epic-decode-answers">')
    for name in cmp.programs:
        if name in q.runs:
            parts.append(_answer_card(cmp, q, name))
    parts.append("</div></details>")
    return "\n".join(parts)


def _question_table(cmp: Any, q: Any) -> str:
    keys = cmp.verdict_keys()
    head = ["program", "wall", "speed-up vs normal", "first token", "tokens out", "tokens in", "prefilled",
            "calls", "decode batches (calls each)", *[f"{k} vs normal" for k in keys]]
    body = []
    for name in cmp.programs:
        r = q.runs.get(name)
        if r is None:
            continue
        verdicts = q.verdicts.get(name, {})
        batches = " ".join(str(b[3]) for b in r.batches) or ("-" if r.ok else "")
        if r.ok:
            cells = [cmp.labels.get(name, name), _s(r.elapsed), _x(q.speedup(name)), _s(r.first_token), r.tokens_out,
                     r.tokens_in, r.prefilled, r.calls, batches,
                     *[_VERDICT_TEXT.get(verdicts[k]["verdict"], "") if k in verdicts else "" for k in keys]]
        else:
            cells = [cmp.labels.get(name, name), _s(r.elapsed), "", "", "", "", "", r.calls, "", *[""] * len(keys)]
            cells[2] = f"failed: {r.error}"
        tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
        body.append(f'<tr data-program="{_e(name)}" data-state="{"done" if r.ok else "failed"}">{tds}</tr>')
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<div class="epic-decode-scroll"><table class="epic-calls epic-decode-table"><thead><tr>{ths}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def _pack(lanes: list[list[Any]]) -> list[int]:
    """A lane per call: the first lane free at its start (calls in one lane never overlap)."""
    ends: list[float] = []
    out = []
    for _cid, start, end, *_ in lanes:
        for i, e in enumerate(ends):
            if e <= start:
                ends[i] = end
                out.append(i)
                break
        else:
            ends.append(end)
            out.append(len(ends) - 1)
    return out


def _lanes_svg(cmp: Any, q: Any) -> str:
    """Every program's calls as lanes under its name, on one axis shared by all programs of the question."""
    span = max([r.elapsed for r in q.runs.values()] + [1e-6])
    scale = (_WIDTH - _LABEL_W - 10) / span
    items, y = [], 0.0
    for name in cmp.programs:
        r = q.runs.get(name)
        if r is None:
            continue
        calls = sorted(r.lanes, key=lambda c: (c[1], c[0]))
        lanes = _pack(calls)
        n_lanes = max(lanes + [0]) + 1
        block = n_lanes * _LANE_H + 6
        color = _COLORS.get(name, "#5f6368")
        items.append(f'<g data-program="{_e(name)}"><text x="0" y="{y + 10:.1f}" font-size="11">'
                     f'{_e(cmp.labels.get(name, name))}</text>'
                     f'<text x="0" y="{y + 21:.1f}" font-size="9" fill="#5f6368">{_s(r.elapsed)}</text>')
        for (cid, start, end, batch, tout, state, prompt), lane in zip(calls, lanes, strict=True):
            x, w = _LABEL_W + start * scale, max(1.0, (end - start) * scale - 1)
            fill = color if state == "done" else "#d93025"
            tip = (f"call {cid}: {start:.2f}-{end:.2f} s, {tout} tokens out"
                   + (f", decode batch {batch}" if batch is not None else "") + f"\nprompt: {prompt}")
            label = (f'<text x="{x + 2:.1f}" y="{y + lane * _LANE_H + 7.5:.1f}" font-size="7" fill="#fff" '
                     f'pointer-events="none">b{batch}</text>' if batch is not None and w > 18 else "")
            items.append(f'<rect x="{x:.1f}" y="{y + lane * _LANE_H:.1f}" width="{w:.1f}" height="{_LANE_H - 1}" '
                         f'fill="{fill}" data-call="{cid}"><title>{_e(tip)}</title></rect>{label}')
        if r.first_token is not None:
            fx = _LABEL_W + r.first_token * scale
            items.append(f'<line class="epic-decode-first" x1="{fx:.1f}" x2="{fx:.1f}" y1="{y:.1f}" '
                         f'y2="{y + block - 4:.1f}" stroke="#202124" stroke-width="1.5"><title>first token '
                         f'{r.first_token:.2f} s</title></line>')
        items.append("</g>")
        y += max(block, 26)
    axis = (f'<text x="{_LABEL_W}" y="{y + 10:.0f}" font-size="10">0 s</text>'
            f'<text x="{_WIDTH - 10}" y="{y + 10:.0f}" font-size="10" text-anchor="end">{span:.2f} s</text>')
    return (f'<div class="epic-note">calls on one time axis (each program timed alone; a bar per call, '
            f'labelled with its decode batch on a local model; the black tick is the first token)</div>'
            f'<svg class="epic-decode-lanes" width="100%" viewBox="0 0 {_WIDTH} {y + 14:.0f}" '
            f'style="max-width:{_WIDTH}px" preserveAspectRatio="xMinYMin meet">{"".join(items)}{axis}</svg>')


def _answer_card(cmp: Any, q: Any, name: str) -> str:
    r = q.runs[name]
    head = f'<div class="epic-decode-card-head">{_e(cmp.labels.get(name, name))}'
    if r.ok:
        head += f' <span class="epic-note">{_s(r.elapsed)} · {r.tokens_out} tokens</span>'
    head += "</div>"
    if not r.ok:
        body = f'<div class="epic-error">{_e(r.error)}</div>'
    elif r.points:
        items = "".join(f'<li value="{_e(i)}"><b>{_e(t)}</b> {_e(x)}</li>'
                        for (i, t), x in zip(r.points, r.expansions + [""] * len(r.points), strict=False))
        body = f'<ol class="epic-decode-points">{items}</ol>'
    elif r.samples:
        body = _samples_html(r)
    else:
        body = f'<div class="epic-answer">{_e(r.answer)}</div>'
        if r.used_sot is False:
            body = '<div class="epic-note">answered directly (no skeleton)</div>' + body
    verdicts = "".join(_verdict_html(k, v) for k, v in q.verdicts.get(name, {}).items())
    return (f'<div class="epic-decode-card" data-program="{_e(name)}" data-state="{"done" if r.ok else "failed"}">'
            f'{head}{body}{verdicts}</div>')


def _samples_html(r: Any) -> str:
    d = r.detail
    items = []
    for k, text in enumerate(r.samples):
        tag = []
        if "extracted" in d and k < len(d["extracted"]):
            tag.append(f'answer "{d["extracted"][k]}"')
        if "scores" in d and k < len(d["scores"]):
            tag.append(f'score {d["scores"][k]:g}')
        kept = k == r.chosen
        items.append(f'<li data-sample="{k}"{" data-chosen=" + chr(34) + "true" + chr(34) if kept else ""}>'
                     f'<span class="epic-note">sample {k}{" · kept" if kept else ""}'
                     f'{" · " + _e(", ".join(tag)) if tag else ""}</span>'
                     f'<div class="epic-answer">{_e(text)}</div></li>')
    votes = ""
    if d.get("votes"):
        votes = ('<div class="epic-note">votes: ' + _e(", ".join(f'"{k}" {v}' for k, v in d["votes"].items()))
                 + "</div>")
    return f'{votes}<ol class="epic-decode-samples">{"".join(items)}</ol>'


def _verdict_html(key: str, v: dict[str, Any]) -> str:
    word = _VERDICT_TEXT.get(v["verdict"], v["verdict"])
    cons = "" if v.get("consistent") is None else (" · same in both orders" if v["consistent"]
                                                    else " · flipped with the order: a tie")
    sides = []
    for side in ("forward", "backward"):
        s = v.get(side) or {}
        sides.append(f'<div class="epic-note">{side}: this answer is {_e(s.get("candidate_is", ""))}; '
                     f'read as {_e(s.get("verdict", ""))}</div><pre class="epic-decode-raw">{_e(s.get("reply", ""))}</pre>')
    return (f'<details class="epic-decode-verdict" data-verdict="{_e(v["verdict"])}"><summary>{_e(key)}: '
            f'{_e(word)} vs normal{_e(cons)}</summary>{"".join(sides)}</details>')


# ------------------------------------------------------------------------------------------- text
def decode_text(cmp: Any, *, width: int = 100) -> str:
    lines = [cmp.summary()]
    for q in cmp.questions:
        lines.append(f"  [{q.question_id}] {_short(q.question, width - 8)}")
        for name in cmp.programs:
            r = q.runs.get(name)
            if r is None:
                continue
            verdicts = ", ".join(f"{k} {v['verdict']}" for k, v in q.verdicts.get(name, {}).items())
            what = _short(r.answer.replace("\n", " "), width - 40) if r.ok else f"failed: {r.error}"
            lines.append(f"    {cmp.labels.get(name, name):<18} {_s(r.elapsed):>8}  {what}"
                         + (f"  ({verdicts})" if verdicts else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- helpers
def _rate(v: dict[str, Any] | None) -> str:
    if not v or v.get("net_win_rate") is None:
        return ""
    text = f'{v["net_win_rate"]:+.2f} ({v["win"]}W/{v["tie"]}T/{v["loss"]}L'
    return text + (f', {v["unparsed"]} unparsed)' if v["unparsed"] else ")")


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f} s"


def _x(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _n(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)
