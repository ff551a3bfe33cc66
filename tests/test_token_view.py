"""The token view's HTML and text (widgets/_tokens.py), from synthetic per-token records: model text
is escaped, the untrusted form is a readable table, samples align where they agree, every run view
(snapshot, live widget traits, stepper, compare) lists the calls that have tokens, and a 1,000-token
record stays small."""

from __future__ import annotations

import html.parser
import math

from epic_kernel.widgets import RunModel, TokenView, snapshot_html, snapshot_text
from epic_kernel.widgets._tokens import align, call_tokens, tokens_compare_html, tokens_html

from epic_kernel.llm.logprobs import TokenLog
from epic_kernel.runtime.events import CallRecord


def log(tokens: list[str], k: int = 3, constrained: bool = False, t0: float = 10.0) -> TokenLog:
    n = len(tokens)
    return TokenLog(k=k, tokens=tokens, logprobs=[-0.05 * (i + 1) for i in range(n)],
                    times=[t0 + 0.1 + 0.02 * i for i in range(n)],
                    top=[[(t, -0.05 * (i + 1)), ("<script>", -2.0), (" &b", -3.0)][:k] for i, t in enumerate(tokens)]
                    if k else None, rows=[1 + i // 2 for i in range(n)],
                    allowed=[7] * n if constrained else None, masked=[["<script>"]] * n if constrained else None)


def call(cid: int, tokens: TokenLog | None, start: float = 10.0) -> CallRecord:
    c = CallRecord(id=cid, fn="llm", site_line=cid, start=start, end=start + 1, state="done")
    c.tokens = tokens
    c.args_preview = "<b>prompt</b>"
    return c


class _Table(html.parser.HTMLParser):
    """What a reader without styles sees: the table's cells, row by row."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.rows[-1].append("")
            self.in_cell = True
        if tag == "script":
            raise AssertionError("model text reached the page as a tag")

    def handle_data(self, data):
        if self.rows and self.rows[-1] and self.in_cell:
            self.rows[-1][-1] += data


def test_model_text_is_escaped_and_readable_as_a_table():
    d = call_tokens([call(1, log([" <script>", "x&y", "\n"], constrained=True))])[0]
    h = tokens_html(d)
    assert "<script>" not in h.replace("<script>", "", 0) or h.count("<script") == 0
    t = _Table()
    t.feed(h)
    head, *rows = [r for r in t.rows if r]
    assert head == ["token", "p %", "ms", "alternatives (p %)"]
    assert rows[0][0] == " <script>" and rows[1][0] == "x&y" and rows[2][0] == "\u21b5"
    assert rows[0][1] == str(round(100 * math.exp(-0.05)))
    assert rows[0][2] == "100" and rows[1][2] == "120"                  # ms since the call's dispatch
    assert "<script> 14" in rows[0][3] and "7 allowed" in rows[0][3]    # masked favourite + allowed count
    assert not rows[0][3].startswith(" <script> 95")                     # the chosen token is not its own alternative
    assert 'title=masked' in h


def test_no_alternatives_column_without_top_k():
    d = call_tokens([call(1, log(["a", "b"], k=0))])[0]
    t = _Table()
    t.feed(tokens_html(d))
    assert [r for r in t.rows if r][0] == ["token", "p %", "ms"] and "top" not in d


def test_align_merges_agreement_and_keeps_every_token():
    a = [" The", " cat", " sat", " on", " the", " mat"]
    b = [" The", " dog", " sat", " on", " a", " mat", "."]
    c = [" The", " cat", " sat", " under", " the", " mat"]
    segs = align([a, b, c])
    assert [s for s, _ in segs] == [True, False, True, False, True, False]
    for j, sample in enumerate((a, b, c)):
        rebuilt = [t for same, parts in segs for t in (parts[0] if same else parts[j])]
        assert rebuilt == sample
    assert align([a, a]) == [(True, [a])]


def test_compare_html_and_token_view_object():
    calls = [call(1, log([" The", " cat"])), call(2, None), call(3, log([" The", " dog"]))]
    v = TokenView(calls, labels=["greedy", "t=0.7"])
    bundle = v._repr_mimebundle_()
    assert "greedy" in bundle["text/html"] and "1 tokens in agreement" in bundle["text/html"]
    assert "tokens of #1" in bundle["text/plain"] and "tokens of #3" in bundle["text/plain"]
    assert "colspan" in tokens_compare_html(call_tokens([calls[0], calls[2]]))
    try:
        TokenView([calls[1]])
    except ValueError as e:
        assert "logprobs=" in str(e)
    else:
        raise AssertionError("no tokens: TokenView must say how to get them")


def test_run_views_list_the_calls_with_tokens():
    model = RunModel(title="t")
    model.calls = [call(1, log(["a", "b"])), call(2, None)]
    model.t0 = 10.0
    snap = model.snapshot(12.0)
    assert [d["id"] for d in snap["tokens"]] == [1]
    assert 'class="epic-tokview" data-call="1"' in snapshot_html(snap)
    assert "tokens of #1" in snapshot_text(snap)
    model.calls = [call(2, None)]
    assert model.snapshot(12.0)["tokens"] == [] and "epic-tokview" not in snapshot_html(model.snapshot(12.0))


def test_a_thousand_token_record_stays_small():
    words = [f" w{i % 97}" for i in range(1000)]
    for k, budget in ((5, 100_000), (0, 50_000)):
        d = call_tokens([call(1, log(words, k=min(k, 3)) if k else log(words, k=0))])[0]
        if k:       # five alternatives of typical length
            d["top"] = [[[f" w{j}", -1.234] for j in range(5)] for _ in words]
        assert len(tokens_html(d, style=False).encode()) < budget


def test_live_widget_syncs_the_token_view_and_keeps_it_in_its_static_form():
    import pytest

    pytest.importorskip("anywidget")
    from epic_kernel.widgets import LiveWidget

    model = RunModel(title="t")
    model.calls = [call(1, log(["a", "<b>"]))]
    model.t0 = 10.0
    w = LiveWidget()
    w.set_snapshot(model.snapshot(12.0))
    assert 'data-call="1"' in w.tokens_html and "&lt;b&gt;" in w.tokens_html and "<b>" not in w.tokens_html.split("<td>")[2]
    data, _ = w._repr_mimebundle_()
    assert 'data-call="1"' in data["text/html"]
    w.set_snapshot(RunModel().snapshot(0.0))
    assert w.tokens_html == ""
