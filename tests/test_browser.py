"""Real browser tests: JupyterLab on 127.0.0.1, driven by Python Playwright in Debian's chromium
(notes/jupyter.md section 4.5).

1. A `%%epic` cell on a slow simulated backend (12 calls in 3 dependent waves of 1 s) shows the live
   widget *while the cell runs* (some calls done, some running), then the final snapshot (all 12
   done). The notebook is saved, its kernel shut down, and it is reopened: the snapshot is still
   there (no "model not found", no console errors), and nbconvert's HTML of the saved file has it.
2. A 120-call fan-out with one dependent call, and sot() on the default model (SmolLM2-135M), in
   the live view's final snapshot: readable lanes and table, the SoT panel with real expansions.

Screenshots go to the test's temporary folder, or over docs/*.png (the README's pictures) with
EPIC_UPDATE_SCREENSHOT=1, so a plain `make test` leaves the checkout clean.

Nothing leaves the machine: the kernelspec, settings, workspaces, runtime files and the answer
cache live in a temporary directory; news, update checks and the PyPI extension manager are off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("EPIC_CHROMIUM", "/usr/bin/chromium")      # Debian's package
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--metrics-recording-only",
               "--mute-audio"]
TOKEN = "epic-browser-test"
DOCS = Path(__file__).resolve().parents[1] / "docs"
LATENCY = 1.0          # seconds per call; 3 dependent waves -> ~3 s of running cell
CALLS = 12

# Every browser test module uses these marks (tests/test_browser_teaching.py too), so that without
# chromium they all skip with this one reason. `make test` installs chromium where it can (.ci/chromium).
NO_CHROMIUM = (f"Debian's chromium is not installed ({CHROMIUM}): `make test` installs it when run as root "
               "or with passwordless sudo; else run `sudo apt-get install chromium`")
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=NO_CHROMIUM),
]
pytestmark = BROWSER_MARKS
pytest.importorskip("jupyterlab")
pytest.importorskip("anywidget")
pytest.importorskip("nbformat")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

# a scripted sim: the answers read as answers (the view shows them), each call takes LATENCY
SETUP = f"""from epic_kernel.llm.sim import SimBackend
FACTS = {{"tides": "Tides follow the Moon's pull.", "rainbows": "Rainbows are sunlight split by raindrops.",
         "eclipses": "Eclipses need Sun, Moon and Earth in line.", "comets": "Comets grow tails near the Sun.",
         "glaciers": "Glaciers hold most fresh water.", "volcanoes": "Volcanoes build new land."}}
slow = SimBackend(latency={LATENCY}, answers=[
    (r"^One fact about (\\w+)", lambda request, m: FACTS[m.group(1)]),
    (r"^Link: (\\w+).* / (\\w+)", lambda request, m: f"{{m.group(1)}} and {{m.group(2).lower()}}: two forces of nature."),
    (r"^Summarise:", "Sun, Moon, water and fire keep reshaping the Earth.")])"""
PROGRAM = """%%epic --backend slow --no-cache
topics = ["tides", "rainbows", "eclipses", "comets", "glaciers", "volcanoes"]
facts = [llm(f"One fact about {t}.") for t in topics]
links = [llm("Link: " + facts[i] + " / " + facts[i + 1]) for i in range(4)]
wraps = [llm("Summarise: " + links[i] + " " + links[i + 2]) for i in range(2)]
len(facts) + len(links) + len(wraps)"""

# the live view is the anywidget; when the run ends it is replaced by the static snapshot
LIVE = ".epic-live:not(.epic-snapshot)"
SNAPSHOT = ".epic-live.epic-snapshot"

# one atomic look at the page: the %%epic cell's prompt and its widget, as plain data
PROBE = """(sel) => {
  const cell = document.querySelectorAll(".jp-Notebook .jp-CodeCell")[1];
  if (!cell) return null;
  const root = cell.querySelector(sel);
  const prompt = (cell.querySelector(".jp-InputPrompt") || {}).textContent || "";
  if (!root) return {prompt, widget: false};
  const n = (s) => root.querySelectorAll(`table.epic-calls tbody tr[data-state="${s}"]`).length;
  return {prompt, widget: true, state: root.dataset.state, done: n("done"), running: n("running"),
          queued: n("queued"), counts: (root.querySelector(".epic-counts") || {}).textContent,
          bars: root.querySelectorAll("svg.epic-timeline rect").length};
}"""

# run every cell through JupyterLab's command registry (keyboard shortcuts are unreliable headless);
# the command's promise is *not* returned, or page.evaluate would wait until every cell has finished
RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

# the open notebook's kernel: started, connected, idle (the toolbar says "idle" before it connects)
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k && k.connectionStatus === "connected" && k.status === "idle" ? k.name : null;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "epic", "display_name": "EPIC (Python 3)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def _shot(page: Any, locator: Any, name: str, tmp_path: Path, pad: int = 6, docs: bool = True) -> Path:
    """A PNG of `locator` with a margin: over docs/NAME with EPIC_UPDATE_SCREENSHOT=1 (the pictures
    the README shows), else in tmp."""
    shot = DOCS / name if docs and os.environ.get("EPIC_UPDATE_SCREENSHOT") else tmp_path / name
    shot.parent.mkdir(parents=True, exist_ok=True)
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100, box
    page.screenshot(path=str(shot), animations="disabled",
                    clip={"x": max(0, box["x"] - pad), "y": max(0, box["y"] - pad),
                          "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad})
    assert shot.stat().st_size > 5_000
    return shot


def _open(page: Any, base: str, name: str) -> None:
    """Open a notebook in Lab and wait for its EPIC kernel to be idle."""
    page.goto(f"{base}/lab/tree/{name}?reset&token={TOKEN}", timeout=60_000)
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=60_000)
    with contextlib.suppress(Exception):          # only if a kernel dialog shows up anyway
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=2000)
    assert page.wait_for_function(KERNEL_READY, timeout=60_000).json_value() == "epic"
    expect(page.locator(".jp-KernelName").first).to_contain_text("EPIC", timeout=30_000)


def _console_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _ours(errors: list[str]) -> list[str]:
    """Console errors about widgets or our view (Lab itself may log unrelated ones)."""
    return [e for e in errors if any(w in e.lower() for w in ("epic", "anywidget", "widget", "model not found"))]


def _shutdown_kernels(base: str) -> None:
    """Shut down every kernel through the REST API (what "Shut Down Kernel" does)."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={TOKEN}", timeout=10) as r:
        sessions = json.load(r)
    for sess in sessions:
        req = urllib.request.Request(f"{base}/api/sessions/{sess['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
    with urllib.request.urlopen(f"{base}/api/kernels?token={TOKEN}", timeout=10) as r:
        assert json.load(r) == []


@contextlib.contextmanager
def jupyterlab() -> Iterator[tuple[str, Path]]:
    """A JupyterLab server with the EPIC kernelspec, isolated in a temporary directory; yields
    (base url, notebook dir) and always stops the server and its kernels."""
    from epic_kernel.install import install

    tmp = Path(tempfile.mkdtemp(prefix="epic-browser-test-"))
    nbdir, settings, config = tmp / "notebooks", tmp / "settings", tmp / "config"
    nbdir.mkdir()
    install(prefix=str(tmp))                                   # tmp/share/jupyter/kernels/epic
    # no news toast, no update check, no "Select Kernel" dialog, no extension manager queries
    _write(settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
           {"fetchNews": "false", "checkForUpdates": False})
    _write(settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings", {"autoStartDefaultKernel": True})
    _write(settings / "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings", {"enabled": False})
    env = {**os.environ,
           "JUPYTER_PATH": str(tmp / "share" / "jupyter"), "JUPYTER_DATA_DIR": str(tmp / "data"),
           "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "IPYTHONDIR": str(tmp / "ipython"), "EPIC_CACHE_DIR": str(tmp / "cache"), "EPIC_VIEW": "",
           "HF_HUB_OFFLINE": "1"}
    env.pop("EPIC_BACKEND", None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab"] if jupyter.exists() else [sys.executable, "-m", "jupyterlab"]
    cmd += ["--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={nbdir}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly"]
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()}")
            with contextlib.suppress(OSError):
                if _get(f"{base}/api/status?token={TOKEN}", timeout=2) == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start in 60 s:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.25)
        yield base, nbdir
    finally:
        try:
            # /api/shutdown shuts the kernels down, then the server; terminate/kill as a fallback
            with contextlib.suppress(Exception):
                req = urllib.request.Request(f"{base}/api/shutdown?token={TOKEN}", method="POST", data=b"")
                urllib.request.urlopen(req, timeout=10).close()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)


def test_live_view_then_a_saved_notebook_that_reopens(tmp_path):
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "epic_demo.ipynb", [SETUP, PROGRAM])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})   # wide enough for the result column
            errors = _console_errors(page)
            _open(page, base, "epic_demo.ipynb")
            page.evaluate(RUN_ALL)
            cell = page.locator(".jp-Notebook .jp-CodeCell").nth(1)

            # while the cell runs: the live widget shows a mid-run state (polled on every frame)
            mid = page.wait_for_function(
                f"""() => {{ const p = ({PROBE})({json.dumps(LIVE)});
                    return p && p.widget && p.prompt.includes("[*]") && p.state === "running"
                           && p.done > 0 && p.running > 0 ? p : null; }}""",
                timeout=60_000).json_value()
            assert 0 < mid["done"] < CALLS and mid["running"] > 0, mid
            assert "running" in mid["counts"] and "done" in mid["counts"], mid

            # then the final state: the live widget is replaced by the snapshot, every call done
            snap = cell.locator(SNAPSHOT)
            expect(snap).to_have_attribute("data-state", "done", timeout=60_000)
            expect(cell.locator(LIVE)).to_have_count(0)
            _check_final(cell)
            expect(cell.locator(".jp-InputPrompt")).to_contain_text("[2]", timeout=30_000)
            expect(cell.locator(".jp-OutputArea-executeResult")).to_contain_text(str(CALLS))
            assert float(snap.locator(".epic-elapsed").inner_text().split()[0]) >= 3 * LATENCY * 0.9
            # hover text of a bar: call, line, state, prompt, tokens, latency
            tip = snap.locator("svg.epic-timeline rect title").first.text_content()
            assert "#1 llm (line 3): done" in tip and "prompt: One fact about tides." in tip and "tokens" in tip
            assert not _ours(errors), errors

            # move the active-cell highlight off the %%epic cell, then capture the view
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            expect(cell).not_to_have_class(re.compile(r"\bjp-mod-active\b"))
            _shot(page, snap, "widget.png", tmp_path)

            # save, shut the kernel down, close, reopen: the snapshot is what was saved
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=30_000)
            _shutdown_kernels(base)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            errors.clear()
            _open(page, base, "epic_demo.ipynb")
            cell = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            snap = cell.locator(SNAPSHOT)
            expect(snap).to_have_attribute("data-state", "done", timeout=30_000)
            _check_final(cell)
            expect(page.get_by_text("model not found")).to_have_count(0)
            expect(page.get_by_text("Error displaying widget")).to_have_count(0)
            page.wait_for_timeout(1000)               # late renderer errors would show up by now
            assert not _ours(errors), errors
            reopened = _shot(page, snap, "reopened.png", tmp_path, docs=False)
            print(f"screenshots: {tmp_path} (reopened: {reopened})")
        finally:
            browser.close()

        # nbconvert's HTML of the saved notebook (no kernel, no widget JS) shows the snapshot too
        out = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--stdout",
                              str(nbdir / "epic_demo.ipynb")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert 'class="epic-live epic-snapshot"' in out.stdout
        assert len(re.findall(r'<tr [^>]*data-state="done"', out.stdout)) == CALLS
        assert "application/vnd.jupyter.widget-view+json" not in out.stdout.split("<body")[-1].split("<script")[0]


def _check_final(cell: Any) -> None:
    snap = cell.locator(SNAPSHOT)
    expect(snap.locator("table.epic-calls tbody tr[data-state='done']")).to_have_count(CALLS)
    expect(snap.locator("table.epic-calls tbody tr:not([data-state='done'])")).to_have_count(0)
    expect(snap.locator(".epic-status")).to_have_text("done")
    expect(snap.locator(".epic-counts")).to_have_text(f"{CALLS} calls (budget 10,000): 0 running, {CALLS} done")
    expect(snap.locator("svg.epic-timeline rect[data-state='done']")).to_have_count(CALLS)
    expect(snap.locator(".epic-legend")).to_contain_text(f"done {CALLS}")
    expect(snap.locator(".epic-cancel")).to_have_count(0)


FANOUT = """%%epic --backend fanout --no-cache
answers = [llm(f"Fact {i} about the sea.") for i in range(120)]
summary = llm("Summarise: " + answers[0] + " " + answers[119])
len(answers)"""
FANOUT_SETUP = """from epic_kernel.llm.sim import SimBackend
SEA = ["Sea water is about 3.5 % salt.", "The ocean covers 71 % of the Earth.", "Most of the ocean is unexplored.",
       "The deepest point is about 11 km down.", "Sea ice floats because it is less dense."]
fanout = SimBackend(max_batch_size=32, per_token_s=0.01, answers=[
    (r"^Fact (\\d+) about the sea", lambda request, m: SEA[int(m.group(1)) % len(SEA)]),
    (r"^Summarise:", "The sea is salty, vast and still mostly unexplored.")])"""
SOT = """%%epic --no-cache
out = sot("How can I improve my sleep?")
out"""


@pytest.mark.timeout(900)             # SmolLM2 converts and loads in the kernel (about a minute on 2 cores)
def test_big_fan_out_and_sot_on_the_default_model(tmp_path):
    """120 calls + 1 dependent call stay readable (lanes with a minimum height that scroll, a table
    of every call with show-one-state filters); sot() with its defaults on SmolLM2 fills the SoT
    panel with real expansions, and the header names the model and how long it took to load."""
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "big.ipynb", [FANOUT_SETUP, FANOUT, SOT])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            errors = _console_errors(page)
            _open(page, base, "big.ipynb")
            page.evaluate(RUN_ALL)
            cells = page.locator(".jp-Notebook .jp-CodeCell")

            fan = cells.nth(1).locator(SNAPSHOT)
            expect(fan).to_have_attribute("data-state", "done", timeout=120_000)
            expect(fan.locator("table.epic-calls tbody tr")).to_have_count(121)
            expect(fan.locator("svg.epic-timeline rect")).to_have_count(121)
            dependent = fan.locator("svg.epic-timeline rect[data-id='121']")
            assert float(dependent.get_attribute("height")) >= 6
            assert dependent.bounding_box()["width"] >= 1
            # the filter: "done" hides nothing here; the radio exists for each state present
            fan.locator(".epic-filter input[value='done']").check()
            expect(fan.locator("table.epic-calls tbody tr:visible")).to_have_count(121)
            fan.locator(".epic-filter input[value='all']").check()
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            _shot(page, fan, "fanout.png", tmp_path)

            sot_view = cells.nth(2).locator(SNAPSHOT)
            expect(sot_view).to_have_attribute("data-state", "done", timeout=600_000)
            expect(sot_view.locator(".epic-config")).to_contain_text("SmolLM2-135M-Instruct")
            expect(sot_view.locator(".epic-loading")).to_contain_text("model loaded in")
            points = sot_view.locator(".epic-sot li")
            assert points.count() >= 2
            expansions = [e.inner_text() for e in sot_view.locator(".epic-sot .epic-expansion").all()]
            assert all(len(e.split()) >= 3 for e in expansions), expansions   # real expansions
            expect(cells.nth(2).locator(".jp-OutputArea-executeResult")).to_contain_text("sot answer (")
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            sot_view.locator(".epic-calls-panel").evaluate("d => d.open = false")   # the panel is the subject
            _shot(page, sot_view, "sot.png", tmp_path)
            assert not _ours(errors), errors
        finally:
            browser.close()
