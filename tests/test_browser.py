"""Real browser smoke test: JupyterLab on 127.0.0.1, driven by Python Playwright in Debian's chromium
(notes/jupyter.md section 4.5). A `%%epic` cell on a slow simulated backend (12 calls in 3 dependent
waves of 1 s) must show the live widget *while the cell runs* (some calls done, some running),
then its final state (all 12 done). The finished widget is saved as a PNG: into the test's temporary
folder, or over docs/widget.png (the README's picture) with EPIC_UPDATE_SCREENSHOT=1, so a plain
`make test` leaves the checkout clean.

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

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--metrics-recording-only",
               "--mute-audio"]
TOKEN = "epic-browser-test"
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "widget.png"
LATENCY = 1.0          # seconds per call; 3 dependent waves -> ~3 s of running cell
CALLS = 12

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} not found (apt-get install chromium; CI's .ci/run installs it)"),
]
pytest.importorskip("jupyterlab")
pytest.importorskip("anywidget")
pytest.importorskip("nbformat")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

SETUP = f"from epic_kernel.llm.sim import SimBackend\nslow = SimBackend(latency={LATENCY})"
PROGRAM = """%%epic --backend slow --no-cache
topics = ["tides", "rainbows", "eclipses", "comets", "glaciers", "volcanoes"]
facts = [llm(f"One fact about {t}.") for t in topics]
links = [llm("Link: " + facts[i] + " / " + facts[i + 1]) for i in range(4)]
wraps = [llm("Summarise: " + links[i] + " " + links[i + 2]) for i in range(2)]
len(facts) + len(links) + len(wraps)"""

# the live view is the anywidget (the text/html snapshot has the extra class epic-snapshot)
LIVE = ".epic-live:not(.epic-snapshot)"

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

# live.js draws the timeline max(320, min(900, host width - 8)) px wide
TIMELINE_FITS = """(sel) => {
  const root = document.querySelectorAll(".jp-Notebook .jp-CodeCell")[1].querySelector(sel);
  const svg = root && root.querySelector("svg.epic-timeline");
  const host = root && root.parentElement;
  return !!svg && +svg.getAttribute("width") === Math.max(320, Math.min(900, host.clientWidth - 8));
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


def _notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "epic", "display_name": "EPIC (Python 3)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_code_cell(SETUP), new_code_cell(PROGRAM)]
    nbformat.write(nb, path)


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


def test_live_widget_updates_in_jupyterlab(tmp_path):
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "epic_demo.ipynb")
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and any(w in m.text.lower() for w in ("epic", "anywidget"))
                    and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/epic_demo.ipynb?reset&token={TOKEN}", timeout=60_000)

            # the notebook opens with the EPIC kernel started (from its metadata) and idle
            page.locator(".jp-Notebook .jp-CodeCell").nth(1).wait_for(timeout=60_000)
            with contextlib.suppress(Exception):          # only if a kernel dialog shows up anyway
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=2000)
            assert page.wait_for_function(KERNEL_READY, timeout=60_000).json_value() == "epic"
            expect(page.locator(".jp-KernelName").first).to_contain_text("EPIC", timeout=30_000)

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

            # then the final state: every call done, the prompt numbered, the cell's value shown
            widget = cell.locator(LIVE)
            expect(widget).to_have_attribute("data-state", "done", timeout=60_000)
            expect(widget.locator("table.epic-calls tbody tr[data-state='done']")).to_have_count(CALLS)
            expect(widget.locator("table.epic-calls tbody tr:not([data-state='done'])")).to_have_count(0)
            expect(widget.locator(".epic-status")).to_have_text("done")
            expect(widget.locator(".epic-counts")).to_have_text(f"{CALLS} calls: 0 running, {CALLS} done")
            expect(widget.locator("svg.epic-timeline rect[data-state='done']")).to_have_count(CALLS)
            expect(widget.locator(".epic-cancel")).to_be_hidden()
            expect(cell.locator(".jp-InputPrompt")).to_contain_text("[2]", timeout=30_000)
            expect(cell.locator(".jp-OutputArea-executeResult")).to_contain_text(str(CALLS))
            final = page.evaluate(PROBE, LIVE)
            assert final["state"] == "done" and final["done"] == CALLS and final["running"] == 0, final
            assert float(widget.locator(".epic-elapsed").inner_text().split()[0]) >= 3 * LATENCY * 0.9
            assert not errors, errors

            # the timeline follows the output's width, also after the final re-publication
            page.wait_for_function(TIMELINE_FITS, arg=LIVE, timeout=10_000)

            # move the active-cell highlight off the %%epic cell, then capture its widget with a margin
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            expect(cell).not_to_have_class(re.compile(r"\bjp-mod-active\b"))
            shot = README_SCREENSHOT if os.environ.get("EPIC_UPDATE_SCREENSHOT") else tmp_path / "widget.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            widget.scroll_into_view_if_needed()
            box = widget.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 200, box
            pad = 6
            page.screenshot(path=str(shot), animations="disabled",
                            clip={"x": box["x"] - pad, "y": box["y"] - pad, "width": box["width"] + 2 * pad,
                                  "height": box["height"] + 2 * pad})
            assert shot.stat().st_size > 5_000
        finally:
            browser.close()
