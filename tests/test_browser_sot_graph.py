"""The skeleton graph drawn by live.js in real chromium (Debian's, playwright; see tests/test_browser.py),
from a real run's snapshot."""

from __future__ import annotations

from test_browser import BROWSER_MARKS, CHROME_ARGS, CHROMIUM, sync_api
from test_sot_graph import GRAPH, QUESTION, graph_sim

from epic_kernel.programs import sot

pytestmark = BROWSER_MARKS


def test_live_js_draws_the_graph_in_chromium(tmp_path):
    """live.js's graph, rendered by real chromium from a real run's snapshot: nodes, edges, the
    critical path caption, and model text set as text (no element made from it, no script run)."""
    import json
    from pathlib import Path

    from epic_kernel.widgets import RunModel

    model = RunModel()
    skeleton = GRAPH.replace("Pick recipes.", "Pick <img src=x onerror=alert(1)> recipes.")
    sot.run(QUESTION, graph=True, constrained=False, backend=graph_sim(skeleton), observers=[model.on_event])
    snap = model.snapshot()
    js = (Path(__file__).parent.parent / "widgets" / "live.js").read_text()
    page = tmp_path / "live.html"
    page.write_text(f"""<html><body><div id=host></div><script type=module>
const mod = await import(URL.createObjectURL(new Blob([{json.dumps(js)}], {{type: 'text/javascript'}})));
const data = {json.dumps(snap, default=str)};
const model = {{get: (k) => data[k], on() {{}}, off() {{}}, send() {{}}, set() {{}}, save_changes() {{}}}};
mod.default.render({{model, el: document.getElementById('host')}});
document.body.dataset.ready = '1';
</script></body></html>""")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        pg = browser.new_page()
        problems: list = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        pg.goto(page.as_uri())
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        graph = pg.locator(".epic-sot svg.epic-graph")
        assert graph.locator("g.epic-node").count() == 4 and graph.locator("line.epic-edge").count() == 3
        assert graph.locator("line.epic-critical").count() == 2
        assert pg.locator(".epic-sot summary").first.inner_text() == "Skeleton graph (4 points, 3 edges)"
        assert pg.locator(".epic-sot .epic-critical-path").inner_text().startswith("critical path: 2 → 3 → 4")
        assert pg.locator(".epic-sot img").count() == 0 and "<img src=x" in pg.locator(".epic-sot ol").inner_text()
        browser.close()
    assert problems == []
