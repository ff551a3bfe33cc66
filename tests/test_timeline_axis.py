"""The snapshot's timeline axis: a long model load does not eat the axis (it becomes a fixed-width
band and the axis starts when the model was ready), a short one is drawn to scale, and the axis
labels sit outside the scroll box, so a tall fan-out never hides them."""

from __future__ import annotations

import re

from widgets._snapshot import LOAD_BAND_PX, _timeline_svg


def bar(cid: int, lane: int, start: float, end: float, batch: int | None = None) -> list:
    """A timeline bar as the model makes it: id, lane, start, end, state, batch, fn, line, tokens, prompt, cached."""
    return [cid, lane, start, end, "done", batch, "llm", 2, 5, 7, "a prompt", False]


BARS = [bar(1, 0, 60.0, 62.0, 1), bar(2, 1, 60.0, 64.0, 1)]


def test_a_long_load_is_a_band_and_the_axis_starts_when_the_model_is_ready():
    svg = _timeline_svg(BARS, {"lanes": 2, "span": 64.0, "load_span": [0.0, 60.0]})
    assert 'class="epic-load-band"' in svg and "not to scale" in svg and "60.0 s" in svg
    assert "60.00 s: model ready" in svg and ">64.00 s<" in svg
    bars = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*data-id', svg)
    assert [float(x) for x, _ in bars] == [LOAD_BAND_PX, LOAD_BAND_PX]        # both start at "ready"
    assert float(bars[1][1]) > 700                                           # the 4 s call fills the axis


def test_a_short_load_is_drawn_to_scale():
    svg = _timeline_svg([bar(1, 0, 1.0, 4.0)], {"lanes": 1, "span": 4.0, "load_span": [0.0, 1.0]})
    assert 'class="epic-load-band"' in svg and "model ready" not in svg and "not to scale" not in svg
    assert re.search(r'<rect x="225.0" y="0.0" width="674.0"', svg)          # 1 s of 4 s on 900 px


def test_the_axis_is_outside_the_scroll_box():
    svg = _timeline_svg([bar(i, i, 0.0, 1.0) for i in range(121)], {"lanes": 121, "span": 1.0})
    scroll = svg.index('class="epic-timeline-scroll"')
    assert svg.index('class="epic-axis"') > svg.index("</svg></div>", scroll)
    assert ">0 s<" in svg and ">1.00 s<" in svg
