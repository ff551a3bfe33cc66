"""One place per concept: backend names, truncation, the call table, strategies and view kinds are
each defined once, and every side (API, CLI, magics, widgets, live.js) reads that definition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from epic_kernel.llm.registry import BackendSpec, parse_backend
from epic_kernel.runtime.calltable import (
    COLUMNS,
    TERMINAL_COLUMNS,
    WIDGET_COLUMNS,
    call_row,
    cells,
    column_specs,
    plain_table,
)
from epic_kernel.runtime.events import CallRecord
from epic_kernel.text import clip

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("name", "spec"), [
    ("sim", BackendSpec("sim", "", "sim")), ("SIM", BackendSpec("sim", "", "SIM")),
    ("local", BackendSpec("transformers", "", "local")), ("hf", BackendSpec("transformers", "", "hf")),
    ("openai", BackendSpec("openai", "", "openai")), ("vllm", BackendSpec("vllm", "", "vllm")),
    ("replay:runs/a.jsonl", BackendSpec("replay", "runs/a.jsonl", "replay:runs/a.jsonl")),
])
def test_backend_names_parse_once(name: str, spec: BackendSpec) -> None:
    assert parse_backend(name) == spec


@pytest.mark.parametrize(("name", "message"), [
    ("nope", "unknown backend 'nope'; choose one of sim, transformers, openai, vllm, replay"),
    ("replay", "the replay backend needs a recording: replay:path/to/calls.jsonl"),
])
def test_bad_backend_names_say_what_is_accepted(name: str, message: str) -> None:
    from epic_kernel.llm.registry import resolve_backend

    with pytest.raises(ValueError, match=re.escape(message)):
        parse_backend(name)
    with pytest.raises(ValueError, match=re.escape(message)):      # the API says the same
        resolve_backend(name)


def test_clip_is_the_one_truncation_rule() -> None:
    assert clip("a  b\nc", 10) == "a b c" and clip("a  b\nc", 10, squash=False) == "a  b c"
    assert clip("x" * 20, 8) == "x" * 7 + "…" and len(clip("y" * 500, 160)) == 160


def _rec(**kw) -> CallRecord:
    base = dict(id=3, fn="llm", site_line=7, start=10.0, end=10.25, state="done", batch_id=2, tokens_in=5,
                tokens_out=9, args_preview="a prompt", result_preview="an answer", user_line=2)
    return CallRecord(**{**base, **kw})


def test_a_row_and_its_cells() -> None:
    row = call_row(_rec(cached=True), t0=9.5, now=11.0)
    assert row["line"] == 2                                   # the user's line, not the library's
    assert row["cells"] == ["3", "2", "llm", "done (cached)", "2", "5/9", "0.250 s", "a prompt", "an answer"]
    assert cells(row, TERMINAL_COLUMNS)[4] == "0.500 s"
    running = call_row(_rec(end=None, state="running", tokens_out=None), t0=9.5, now=10.5)
    assert running["cells"][5] == "5/?" and running["cells"][6] == "0.500 s"


def test_plain_table_aligns_fixed_columns_and_joins_free_text() -> None:
    rows = [call_row(_rec(), 9.5, 11.0), call_row(_rec(id=12, fn="a_rather_long_name", user_line=None), 9.5, 11.0)]
    head, first, second = plain_table(rows, TERMINAL_COLUMNS)
    assert head.split() == ["id", "line", "fn", "state", "start", "latency", "prompt", "->", "result"]
    assert first.endswith("  a prompt -> an answer") and "a_rather_lo…" in second and len(first) == len(second)
    assert all(len(line) <= 30 for line in plain_table(rows, TERMINAL_COLUMNS, width=30))


def test_every_view_reads_the_one_column_spec() -> None:
    from epic_kernel.widgets import RunModel, snapshot_html, snapshot_text

    model = RunModel()
    model.calls.append(_rec())
    snap = model.snapshot(now=11.0)
    assert snap["rows"][0]["cells"] == cells(snap["rows"][0])
    html = snapshot_html(snap)
    assert "".join(f"<th>{n}</th>" for n in WIDGET_COLUMNS) in html
    assert [line for line in snapshot_text(snap).splitlines() if "prompt -> result" in line][0].split()[:7] == \
        [n for n in WIDGET_COLUMNS if not COLUMNS[n].long]
    js = (ROOT / "widgets" / "live.js").read_text()
    assert "COLUMNS = [" not in js and "r.cells" in js and 'model.get("columns")' in js   # drawn from Python's spec
    pytest.importorskip("anywidget")
    from epic_kernel.widgets import LiveWidget

    assert LiveWidget().columns == column_specs(WIDGET_COLUMNS)


def test_strategies_and_view_kinds_are_defined_once() -> None:
    from epic_kernel.widgets import VIEW_KINDS

    import epic_kernel.cli as cli
    from epic_kernel.runtime.options import STRATEGIES

    run_parser = cli.build_parser()._subparsers._group_actions[0].choices["run"]   # noqa: SLF001
    strategy = next(a for a in run_parser._actions if a.dest == "strategy")          # noqa: SLF001
    assert tuple(strategy.choices) == STRATEGIES
    magics = (ROOT / "magics" / "_magics.py").read_text()
    assert "VIEW_KINDS" in magics and '("auto", "widget"' not in magics and VIEW_KINDS[0] == "auto"
    for path in (ROOT / "epic_kernel").rglob("*.py"):
        if path.name != "options.py":
            assert '"opportunistic-dfs", "random"' not in path.read_text(), f"{path} lists the strategies again"
