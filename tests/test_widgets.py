"""The live view without a kernel: the run model, the coalescing flusher, static snapshots, and the
anywidget's comm traffic through a recording comm (notes/jupyter.md section 4.1)."""

from __future__ import annotations

import asyncio
import time

import pytest
from epic_kernel.widgets import (
    Coalescer,
    HTMLView,
    NullView,
    RunModel,
    TextView,
    WidgetView,
    make_view,
    resolve_view_kind,
    snapshot_html,
    snapshot_text,
)

from epic_kernel import run_async
from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs.sot import sim_script
from epic_kernel.runtime.events import CallRecord, Event, clock

comm = pytest.importorskip("comm")
pytest.importorskip("anywidget")

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class RecordingComm(comm.base_comm.BaseComm):
    sent: list[tuple[str, dict]] = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.sent.append((msg_type, data))


@pytest.fixture
def comms(monkeypatch):
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return RecordingComm.sent


def updates(sent: list[tuple[str, dict]]) -> list[dict]:
    return [d["state"] for t, d in sent if t == "comm_msg" and d.get("method") == "update"]


def fan_out(n: int) -> str:
    return f'xs = [llm(f"question {{i}}") for i in range({n})]\nlen(xs)\n'


def record(kind: str, t: float, call: CallRecord | None = None, **data) -> Event:
    return Event(kind, t, call, data)


# ----------------------------------------------------------------------------------------- model
def test_model_follows_a_real_run_and_renders_every_panel():
    model = RunModel(title="t")
    res = asyncio.run(run_async('a = llm("one")\nb = llm(a)\nc = [llm(x) for x in ["p", "q", "r"]]\n[b, c]\n',
                                backend=SimBackend(latency=0.02), observers=[model.on_event]))
    model.finish(res)                           # final step counts (the views get it from the magic)
    snap = model.snapshot()
    h = snap["header"]
    assert (h["state"], h["calls"], h["done"], h["running"], h["failed"]) == ("done", 5, 5, 0, 0)
    assert h["steps"] == res.steps and h["tokens_out"] == sum(c.tokens_out for c in res.calls) > 0
    assert h["lanes"] == 4                      # a and the three independent calls overlap; b waits for a
    assert 1.5 < h["parallelism"] <= 4.0
    assert sorted(r["line"] for r in snap["rows"]) == [1, 2, 3, 3, 3]
    b_row = next(r for r in snap["rows"] if r["line"] == 2)
    assert b_row["prompt"] == _clip(res.calls[0].result_preview)      # b's prompt is a's answer
    assert {b[4] for b in snap["bars"]} == {"done"} and len(snap["bars"]) == 5
    assert snap["trace"]["rules"]["dispatch"] == 5 and snap["sot"] == {}

    html = snapshot_html(snap)
    assert html.count('<tr data-state="done"') == 5 and 'data-id="5"' in html
    assert "<svg" in html and "Reduction trace" in html and "Skeleton-of-Thought" not in html
    text = snapshot_text(snap)
    assert text.splitlines()[0].startswith("epic t [done]") and "5 calls" in text and "llm" in text


def _clip(s: str) -> str:
    return " ".join(s.split())[:160]


def test_model_shows_failed_and_in_flight_calls_first_when_rows_are_capped():
    model = RunModel(max_rows=10)
    model.on_event(record("run.start", 0.0))
    for i in range(1, 101):
        rec = CallRecord(id=i, fn="llm", site_line=2, start=i * 0.01, state="running")
        if i in (3, 50):
            rec.state, rec.end, rec.error = "failed", i * 0.01 + 0.1, ValueError("boom")
        elif i < 95:
            rec.state, rec.end = "done", i * 0.01 + 0.05
        model.on_event(record("call.dispatch", rec.start, rec))
    snap = model.snapshot(now=2.0)
    ids = [r["id"] for r in snap["rows"]]
    assert len(ids) == 10 and ids == sorted(ids)
    assert {3, 50} <= set(ids) and set(range(95, 101)) <= set(ids)   # failures and the 6 running calls
    assert next(r for r in snap["rows"] if r["id"] == 3)["result"] == "ValueError: boom"
    assert snap["header"]["running"] == 6 and snap["header"]["failed"] == 2
    assert "more calls not shown" in snapshot_html(snap)


def test_timeline_lanes_are_peak_parallelism_and_bars_are_capped():
    model = RunModel(max_bars=50)
    model.on_event(record("run.start", 0.0))
    for i in range(1, 201):                 # waves of 4 overlapping calls
        wave, k = divmod(i - 1, 4)
        rec = CallRecord(id=i, fn="llm", site_line=1, start=wave * 1.0 + k * 0.01, end=wave * 1.0 + 0.5,
                         state="done", batch_id=wave)
        model.on_event(record("call.dispatch", rec.start, rec))
    model.on_event(record("run.end", 50.0, ok=True, steps=10))
    snap = model.snapshot()
    assert snap["header"]["lanes"] == 4 and len(snap["bars"]) == 50 and snap["header"]["bars_omitted"] == 150
    assert [b[0] for b in snap["bars"]] == list(range(151, 201))
    assert len({b[5] for b in snap["bars"]}) == 13                    # batches carried to the chart


def test_sot_panel_appears_with_program_events():
    model = RunModel()
    model.on_event(record("run.start", 0.0))
    assert model.snapshot()["sot"] == {}
    model.on_event(record("program.sot.question", 0.1, text="Why is the sky blue?"))
    model.on_event(record("program.sot.point", 0.2, index=1, text="Rayleigh"))
    model.on_event(record("program.sot.point", 0.2, index=2, text="Sunset"))
    model.on_event(record("program.sot.expansion", 0.3, index=1, chunk="Short waves "))
    model.on_event(record("program.sot.expansion", 0.4, index=1, chunk="scatter more.", done=True))
    model.on_event(record("program.sot.expansion", 0.4, index=2, text="Long path."))
    sot = model.snapshot()["sot"]
    assert sot["question"] == "Why is the sky blue?"
    assert [(p["index"], p["text"], p["expansion"], p["done"]) for p in sot["points"]] == [
        (1, "Rayleigh", "Short waves scatter more.", True), (2, "Sunset", "Long path.", False)]
    html = snapshot_html(model.snapshot())
    assert "Skeleton-of-Thought (2 points)" in html and 'data-index="1" data-state="done"' in html


def test_full_trace_steps_reach_the_trace_panel():
    model = RunModel()
    asyncio.run(run_async('a = llm("x")\na', backend=SimBackend(latency=0.0), trace="full",
                          observers=[model.on_event]))
    trace = model.snapshot()["trace"]
    assert trace["full"] and any(rule == "dispatch" for _, rule, _ in trace["recent"])
    assert "<ol class=\"epic-steps\">" in snapshot_html(model.snapshot())


# ------------------------------------------------------------------------------------- coalescer
def test_coalescer_turns_thousands_of_marks_into_a_few_flushes():
    flushed: list[float] = []

    async def main() -> float:
        c = Coalescer(lambda: flushed.append(time.monotonic()), interval=0.1)
        t0 = time.monotonic()
        for i in range(20_000):
            c.mark()
            if i % 500 == 0:
                await asyncio.sleep(0.01)
        duration = time.monotonic() - t0
        c.close()
        return duration

    duration = asyncio.run(main())
    assert len(flushed) <= duration / 0.1 + 3
    gaps = [b - a for a, b in zip(flushed, flushed[1:-1], strict=False)]
    assert all(g >= 0.09 for g in gaps)                 # never faster than the interval
    assert flushed                                      # and close() always flushes


def test_coalescer_ticks_while_idle_and_stops():
    flushed: list[float] = []

    async def main() -> None:
        c = Coalescer(lambda: flushed.append(1), interval=0.05, tick=0.05)
        c.bind(asyncio.get_running_loop())
        await asyncio.sleep(0.3)
        c.stop()
        n = len(flushed)
        await asyncio.sleep(0.15)
        assert len(flushed) == n

    asyncio.run(main())
    assert 3 <= len(flushed) <= 8


# ---------------------------------------------------------------------------------------- widget
def test_widget_view_sends_coalesced_updates_and_a_final_state(comms):
    view = WidgetView(RunModel(title="w"))
    assert comms == []                                  # no comm until the view is shown
    view.show()                                         # (outside IPython, display() just prints)
    t0 = time.monotonic()
    asyncio.run(run_async(fan_out(500), backend=SimBackend(latency=0.01), observers=[view.on_event]))
    duration = time.monotonic() - t0
    view.finish()
    ups = updates(comms)
    assert [t for t, _ in comms].count("comm_open") >= 1
    assert 1 <= len(ups) <= duration * 10 + 5          # <= 10 flushes/s plus the final ones
    final = {}
    for u in ups:
        final.update(u)
    assert final["header"]["state"] == "done" and final["header"]["calls"] == 500
    assert view.widget.cancellable is False
    assert len(final["rows"]) == 60 and len(final["bars"]) == 400      # traits stay small

    data, _ = view.widget._repr_mimebundle_()
    assert set(data) >= {WIDGET_MIME, "text/html", "text/plain"}
    assert data["text/html"].count("<tr data-state=") == 500           # the final snapshot lists more
    assert data["text/plain"].startswith("epic w [done]")


def test_widget_cancel_message_cancels_the_run(comms):
    async def main():
        model = RunModel()
        box: dict = {}
        view = WidgetView(model, cancellable=True, on_cancel=lambda: box["task"].cancel())
        view.show()
        assert view.widget.cancellable
        task = asyncio.ensure_future(run_async(fan_out(20) + 'llm("after")\n', backend=SimBackend(latency=5.0),
                                               observers=[view.on_event]))
        box["task"] = task
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        # what ipywidgets does with a front-end `model.send({type: "cancel"})`
        view.widget._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "cancel"}}},
                                 "buffers": []})
        with pytest.raises(asyncio.CancelledError):
            await task
        return view, model, time.monotonic() - t0

    view, model, took = asyncio.run(main())
    assert took < 1.0 and view.cancel_clicks == 1
    assert model.state == "cancelled"
    assert {c.state for c in model.calls} == {"cancelled"} and len(model.calls) == 21


def test_widget_bundle_before_the_run_has_snapshots(comms):
    view = WidgetView(RunModel())
    data, _ = view.widget._repr_mimebundle_()
    assert set(data) >= {WIDGET_MIME, "text/html", "text/plain"}


# ----------------------------------------------------------------------------------- other views
def test_text_view_prints_the_final_table(capsys):
    view = TextView(RunModel(title="txt"))
    asyncio.run(run_async(fan_out(3), backend=SimBackend(latency=0.0), observers=[view.on_event]))
    view.finish()
    out = capsys.readouterr().out
    assert out.startswith("epic txt [done]") and out.count(" llm ") == 3


def test_null_view_records_without_output(capsys):
    view = NullView(RunModel())
    asyncio.run(run_async(fan_out(2), backend=SimBackend(latency=0.0), observers=[view.on_event]))
    view.finish()
    assert capsys.readouterr().out == "" and view.model.snapshot()["header"]["done"] == 2


def test_lazy_view_that_never_started_shows_nothing(capsys):
    view = TextView(RunModel())
    view.show_on_start()
    view.finish(state="failed", error="syntax")
    assert capsys.readouterr().out == "" and not view.shown


def test_view_kinds():
    assert resolve_view_kind("auto", None) == "text"
    assert resolve_view_kind("html", None) == "html"
    assert isinstance(make_view("html", RunModel()), HTMLView)
    with pytest.raises(ValueError, match="unknown view"):
        resolve_view_kind("fancy", None)


def test_snapshot_escapes_program_text():
    model = RunModel()
    rec = CallRecord(id=1, fn="llm", site_line=1, start=clock(), state="done", end=clock(),
                     args_preview="<script>alert(1)</script>", result_preview="a & b")
    model.on_event(record("run.start", rec.start))
    model.on_event(record("call.dispatch", rec.start, rec))
    html = snapshot_html(model.snapshot())
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "a &amp; b" in html


# ------------------------------------------------------------------ timeline colours, big fan-outs
def _finished_model(src: str, backend) -> RunModel:
    model = RunModel(title="big")
    asyncio.run(run_async(src, backend=backend, observers=[model.on_event]))
    model.finish()
    return model


def test_timeline_colour_is_state_and_batches_are_labels():
    import re

    from epic_kernel.widgets import snapshot_html
    from epic_kernel.widgets._snapshot import STATE_COLORS

    model = _finished_model(fan_out(12), SimBackend(max_batch_size=4, per_token_s=0.01))
    snap = model.snapshot(max_rows=1000, max_bars=1000)
    assert len({b[5] for b in snap["bars"]}) >= 3                   # several decode batches ...
    page = snapshot_html(snap)
    fills = set(re.findall(r'<rect [^>]*fill="([^"]+)" data-state="done"', page))
    assert fills == {STATE_COLORS["done"]}                           # ... all drawn in the "done" colour
    assert 'class="epic-legend"' in page and "done 12" in page       # the legend names colour and count
    tips = re.findall(r"<title>(.*?)</title>", page, re.S)
    assert len(tips) == 12 and all("prompt: question" in t and "tokens " in t and "batch " in t for t in tips)


def test_a_big_fan_out_stays_readable():
    import re

    from epic_kernel.widgets import snapshot_html
    from epic_kernel.widgets._snapshot import lane_height

    src = 'xs = [llm(f"q{i}") for i in range(120)]\nlast = llm(xs[0] + xs[119])\nlen(xs)\n'
    model = _finished_model(src, SimBackend(latency=0.01))
    snap = model.snapshot(max_rows=1000, max_bars=1000)
    assert len(snap["rows"]) == 121 and len(snap["bars"]) == 121 and snap["header"]["lanes"] >= 100
    assert lane_height(snap["header"]["lanes"]) >= 7                 # lanes keep a minimum height ...
    page = snapshot_html(snap)
    assert 'class="epic-timeline-scroll"' in page                   # ... and the chart scrolls
    dependent = re.search(r'<rect [^>]*height="([\d.]+)"[^>]*data-id="121"', page)
    assert dependent and float(dependent.group(1)) >= 6              # the dependent call is visible
    assert page.count("<tr data-state=") == 121 and 'name="epic-filter-' in page


def test_calls_inside_library_programs_show_the_users_line():
    """sot() makes its calls on its own source lines (epic_kernel/programs/sot.py); the calls
    table's "line" is the line of the user's cell that called sot()."""
    model = RunModel()
    src = 'q = "How can I sleep better?"\n\nout = sot(q)\nlen(out["points"])\n'
    asyncio.run(run_async(src, backend=SimBackend(scripts=[sim_script]), observers=[model.on_event],
                          filename="<epic cell 3>", first_line=2))
    model.finish()
    calls = model.calls
    assert len(calls) >= 3 and all(c.site_line > 100 for c in calls)      # the library's own lines
    assert {c.user_line for c in calls} == {4}                            # cell line 4: `out = sot(q)`
    snap = model.snapshot()
    assert {r["line"] for r in snap["rows"]} == {4} and {b[7] for b in snap["bars"]} == {4}
    own = RunModel()
    asyncio.run(run_async('a = llm("x")\nb = llm(a)\n', backend=SimBackend(), observers=[own.on_event]))
    assert [c.user_line for c in own.calls] == [c.site_line for c in own.calls] == [1, 2]


# ------------------------------------------------------------------------------ model loading
def test_model_loading_is_shown_and_kept_out_of_latencies(monkeypatch):
    """A backend that takes 0.6 s to construct (a local model loading): the view says what is
    loading, the calls wait "queued", and neither latencies nor parallelism count the load."""
    import time as _time

    from epic_kernel.widgets import snapshot_html, snapshot_text

    from epic_kernel.llm import registry

    real = registry.resolve_backend

    def slow(spec=None, options=None, *, construct=True):
        if spec != "slowload":
            return real(spec, options, construct=construct)
        if not construct:
            return None
        _time.sleep(0.6)
        return SimBackend(latency=0.05)

    from epic_kernel.runtime import backends

    monkeypatch.setattr(backends, "_PROVIDER", [])      # restored after the test
    backends.install_provider(slow, registry.describe_spec)
    model = RunModel()
    seen: list = []

    def observe(ev):
        model.on_event(ev)
        if ev.kind == "backend.loading":
            seen.append(("loading", model.snapshot()["header"]["loading"]))
        if ev.kind == "backend.ready":
            seen.append(("ready", round(ev.data["seconds"], 1)))

    res = asyncio.run(run_async(fan_out(4), backend="slowload", observers=[observe]))
    model.finish(res)
    assert seen[0][0] == "loading" and seen[0][1] == "slowload" and seen[1][0] == "ready" and seen[1][1] >= 0.5
    ready_at = next(ev.t for ev in res.trace if ev.kind == "backend.ready")
    assert all(c.start >= ready_at - 1e-3 and c.latency < 0.4 for c in res.calls)   # load not in latency
    h = model.snapshot()["header"]
    assert h["load_s"] >= 0.5 and h["loading"] == "" and h["parallelism"] > 2        # 4 parallel calls
    assert "model loaded in" in snapshot_html(model.snapshot()) and "not counted in call latencies" in snapshot_text(model.snapshot())
    start, end = h["load_span"]
    assert end - start >= 0.5 and 'class="epic-load-band"' in snapshot_html(model.snapshot())   # drawn behind the bars


def test_backend_labels_name_backend_and_model():
    from epic_kernel.llm.registry import describe_spec

    assert describe_spec("transformers") == "transformers · SmolLM2-135M-Instruct"
    assert describe_spec("transformers", "tiny10m") == "transformers · tiny-10m"
    assert describe_spec(SimBackend()) == "sim (simulated model)"
    from epic_kernel.llm.openai_backend import OpenAIBackend

    assert describe_spec(OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="k", model="m")) == \
        "openai · m @ http://127.0.0.1:9/v1"


def test_quiet_progress_restores_the_settings():
    pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    from epic_kernel.llm.models import quiet_progress

    before = hf_logging.is_progress_bar_enabled()
    with quiet_progress():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled() == before
