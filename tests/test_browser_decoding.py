"""The decoding comparison view in real JupyterLab (Debian's chromium, playwright; see tests/test_browser.py):
a `%%epic --decode` cell answers one question with normal decoding, SoT, SoT-R and streaming SoT
side by side, judged; the notebook is saved, its kernel shut down and reopened (the view is still
there, from the saved output alone), and nbconvert's HTML export shows it too.

Screenshot: docs/decoding.png with EPIC_UPDATE_SCREENSHOT=1 (else tmp)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from test_browser import (
    BROWSER_MARKS,
    CHROME_ARGS,
    CHROMIUM,
    _console_errors,
    _notebook,
    _open,
    _ours,
    _shot,
    _shutdown_kernels,
    jupyterlab,
    sync_api,
)

expect = sync_api.expect
pytestmark = BROWSER_MARKS

SETUP = """from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs.sot import sim_script
answers = SimBackend(scripts=[sim_script], per_token_s=0.01)
judge = SimBackend(latency=0.05, answers=[(r"\\[System\\]\\nWe would like your feedback", "8 6\\nThe first one.")])"""
DECODE = """%%epic --decode normal,sot,sot-r,sot-stream --backend answers --judge judge
How can I improve my time management skills? <i>really</i>"""
PROGRAMS = ("normal", "sot", "sot-r", "sot-stream")


def _check(view: Any) -> None:
    expect(view.locator("table.epic-decode-table").first.locator("tbody tr")).to_have_count(4)
    for p in PROGRAMS:
        expect(view.locator(f'.epic-decode-card[data-program="{p}"]')).to_have_count(1)
        expect(view.locator(f'svg.epic-decode-lanes g[data-program="{p}"] rect').first).to_be_attached()
    expect(view.locator('.epic-decode-card[data-program="sot"] ol.epic-decode-points li').first).to_be_visible()
    expect(view.locator(".epic-decode-verdict")).to_have_count(3)           # sot, sot-r, sot-stream vs normal
    expect(view.locator(".epic-question")).to_contain_text("<i>really</i>")  # escaped, shown as text
    assert view.locator("i").count() == 0


@pytest.mark.timeout(600)
def test_decode_view_in_jupyterlab_saved_reopened_and_exported(tmp_path):
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "decode.ipynb", [SETUP, DECODE])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            errors = _console_errors(page)
            _open(page, base, "decode.ipynb")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            cell = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            view = cell.locator(".epic-decode")
            expect(view).to_have_attribute("data-state", "done", timeout=120_000)
            expect(view).to_have_count(1)                  # the live view was replaced, not added to
            _check(view)
            expect(view.locator(".epic-decode-verdict").first).to_contain_text("vs normal")
            _shot(page, view, "decoding.png", tmp_path)
            assert not _ours(errors), errors

            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=30_000)
            _shutdown_kernels(base)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            errors.clear()
            _open(page, base, "decode.ipynb")
            view = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".epic-decode")
            expect(view).to_have_count(1, timeout=30_000)
            _check(view)
            assert not _ours(errors), errors

            out = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(nbdir / "decode.ipynb"),
                                  "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            page.goto((tmp_path / "decode.html").as_uri())
            view = page.locator(".epic-decode")
            expect(view).to_have_count(1, timeout=30_000)
            _check(view)
        finally:
            browser.close()
