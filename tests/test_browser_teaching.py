"""The teaching views in real JupyterLab (Debian's chromium, playwright; see tests/test_browser.py):

1. `%%epic --step`: the stepper renders in the output, steps forward and back (buttons, the slider,
   next dispatch / next resolve), and a state reached by going back is exactly the one seen going
   forward. A `%%epic --compare` cell shows four strategies on one axis.
2. The notebook is saved, its kernel shut down and reopened: the stepper still steps (no kernel, no
   widget model); nbconvert's HTML of the saved file, opened from disk, steps too.

Screenshots: docs/stepper.png and docs/compare.png with EPIC_UPDATE_SCREENSHOT=1 (else tmp)."""

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

SETUP = "from epic_kernel.llm.sim import SimBackend\nslow = SimBackend(latency=0.2)"
STEP = """%%epic --backend sim --step
colour = llm("Name a colour.")
if len(colour) > 3:
    fruit = llm("Name a fruit.")
else:
    fruit = "none"
llm("Write a poem about " + colour + " and " + fruit)"""
COMPARE = """%%epic --backend slow --compare
topics = ["tides", "rainbows", "eclipses", "volcanoes"]
facts = [llm(f"One fact about {t}.") for t in topics]
checks = [llm("Is this true? " + f) for f in facts]
summary = llm("Summarise: " + " ".join(facts))
len(facts) + len(checks) + 1"""
STEPPER = ".epic-stepper.epic-stepper-live"


def _panels(stepper: Any) -> str:
    """Everything the stepper shows about the current state, as one text."""
    return "\n".join(stepper.locator(".epic-stepper-now, .epic-stepper-box-body").all_inner_texts())


def _step_through(page: Any, stepper: Any) -> dict[int, str]:
    """Forward and back with every control; returns {step: panels} seen on the way."""
    mount = stepper.locator("[data-step]").first
    step = lambda: int(mount.get_attribute("data-step"))            # noqa: E731
    expect(mount).to_have_attribute("data-step", "0")
    seen = {0: _panels(stepper)}
    fwd = stepper.locator("button[data-action=forward]")
    for k in range(1, 6):
        fwd.click()
        expect(mount).to_have_attribute("data-step", str(k))
        seen[k] = _panels(stepper)
    assert seen[1] != seen[0]
    stepper.locator("button[data-action=next-dispatch]").click()
    expect(stepper.locator(".epic-stepper-now .epic-rule")).to_have_text("dispatch")
    stepper.locator("button[data-action=next-resolve]").click()
    expect(stepper.locator(".epic-stepper-now .epic-rule")).to_have_text("resolve")
    assert stepper.locator(".epic-stepper-box-body li[data-call]").count() >= 1      # the call in flight
    k = step()
    seen[k] = _panels(stepper)
    back = stepper.locator("button[data-action=back]")
    for j in range(k - 1, -1, -1):                                  # all the way back, one step at a time
        back.click()
        expect(mount).to_have_attribute("data-step", str(j))
        if j in seen:
            assert _panels(stepper) == seen[j], j                  # going back is exact
    stepper.locator(".epic-stepper-slider").fill(str(k))           # the slider jumps
    expect(mount).to_have_attribute("data-step", str(k))
    assert _panels(stepper) == seen[k]
    return seen


@pytest.mark.timeout(600)
def test_stepper_and_compare_in_jupyterlab_then_saved_and_exported(tmp_path):
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "teach.ipynb", [SETUP, STEP, COMPARE])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            errors = _console_errors(page)
            _open(page, base, "teach.ipynb")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            stepper = cells.nth(1).locator(STEPPER)
            expect(stepper).to_have_count(1, timeout=60_000)
            expect(cells.nth(1).locator(".epic-stepper-static")).to_be_hidden()
            seen = _step_through(page, stepper)
            # a teaching moment for the picture: both calls decided, the first in flight, nodes parked
            stepper.locator("button[data-action=first]").click()
            stepper.locator("button[data-action=next-dispatch]").click()
            for _ in range(3):
                stepper.locator("button[data-action=forward]").click()
            expect(stepper.locator(".epic-stepper-now .epic-rule")).to_have_text("wait")
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            _shot(page, stepper, "stepper.png", tmp_path)

            compare = cells.nth(2).locator(".epic-compare")
            expect(compare).to_have_attribute("data-state", "done", timeout=120_000)
            expect(compare.locator(".epic-compare-run")).to_have_count(4)
            expect(compare.locator("table.epic-compare-table tbody tr")).to_have_count(5)
            expect(compare.locator("tr[data-strategy=opportunistic] td").last).to_have_text("agrees")
            expect(cells.nth(2).locator(".jp-OutputArea-executeResult")).to_contain_text("9")
            _shot(page, compare, "compare.png", tmp_path)
            assert not _ours(errors), errors

            # saved, kernel gone, reopened: the stepper still steps, from the saved output alone
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=30_000)
            _shutdown_kernels(base)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            errors.clear()
            _open(page, base, "teach.ipynb")
            stepper = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(STEPPER)
            expect(stepper).to_have_count(1, timeout=30_000)
            mount = stepper.locator("[data-step]").first
            for k in (1, 2, 3):
                stepper.locator("button[data-action=forward]").click()
                expect(mount).to_have_attribute("data-step", str(k))
            assert _panels(stepper) == seen[3]
            expect(page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".epic-compare")).to_have_count(1)
            assert not _ours(errors), errors

            # nbconvert's HTML of the saved notebook, opened from disk: the stepper steps there too
            out = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(nbdir / "teach.ipynb"),
                                  "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            exported = tmp_path / "teach.html"
            page.goto(exported.as_uri())
            stepper = page.locator(STEPPER)
            expect(stepper).to_have_count(1, timeout=30_000)
            mount = stepper.locator("[data-step]").first
            stepper.locator("button[data-action=last]").click()
            expect(stepper.locator(".epic-stepper-now")).to_contain_text("the run has ended")
            stepper.locator("button[data-action=first]").click()
            for k in (1, 2, 3):
                stepper.locator("button[data-action=forward]").click()
                expect(mount).to_have_attribute("data-step", str(k))
            assert _panels(stepper) == seen[3]
            expect(page.locator(".epic-compare .epic-compare-run")).to_have_count(4)
        finally:
            browser.close()
