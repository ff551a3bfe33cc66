"""The teaching views in real JupyterLab (Debian's chromium, playwright; see tests/test_browser.py):

1. `%%epic --step`: the stepper renders in the output, steps forward and back (buttons, the slider,
   next dispatch / next resolve), and a state reached by going back is exactly the one seen going
   forward. The same cell run again (the answer cache now warm) records the same trace. A
   `%%epic --compare` cell shows its progress while it runs, then four strategies, none faster
   than the bound; the same program under `--compare` counts the stepper's number of steps.
2. Light and dark themes: the text of both views takes the theme's colours (screenshots of both).
3. The notebook is saved, its kernel shut down and reopened: the stepper still steps (no kernel, no
   widget model); nbconvert's HTML of the saved file, opened from disk, steps too. A copy that is
   not trusted (scripts do not run) shows both views as clean tables.

Screenshots: docs/stepper.png and docs/compare.png with EPIC_UPDATE_SCREENSHOT=1 (else tmp), and
their dark-theme twins in tmp."""

from __future__ import annotations

import json
import re
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

SETUP = "from epic_kernel.llm.sim import SimBackend\nslow = SimBackend(latency=0.4)"
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
STEP_AGAIN = STEP                    # the same cell again: the cache is warm now, the trace must not change
COUNTS = STEP.replace("--step", "--compare")
STEPPER = ".epic-stepper.epic-stepper-live"
# the rules of every recorded step, from the stepper's step table (the script-free fallback)
RULES = "(root) => [...root.querySelectorAll('.epic-stepper-static tr[data-rule]')].map((r) => r.dataset.rule)"
DARK = "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
LIGHT = "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})"
# the computed colour of a view's text and of a chart label, as [r, g, b]
COLOURS = """(root) => {
  const rgb = (c) => (c.match(/\\d+(\\.\\d+)?/g) || []).slice(0, 3).map(Number);
  const label = root.querySelector("svg text");
  const cell = root.querySelector("td, .epic-stepper-box-body");
  return {text: rgb(getComputedStyle(cell || root).color), label: label ? rgb(getComputedStyle(label).fill) : null};
}"""


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
    stepper.locator("button[data-action=next-dispatch]").click()     # lands ON the dispatch: the call flies
    expect(stepper.locator(".epic-stepper-now [data-which=last] .epic-rule")).to_have_text("dispatch")
    assert stepper.locator(".epic-stepper-box-body li[data-call]").count() >= 1      # the call in flight
    stepper.locator("button[data-action=next-resolve]").click()
    expect(stepper.locator(".epic-stepper-now [data-which=last] .epic-rule")).to_have_text("resolve")
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


def _bright(rgb: list[float]) -> float:
    return sum(rgb) / 3


def _check_theme(page: Any, cells: Any, dark: bool) -> None:
    """Text and chart labels readable on the theme's background: light on dark, dark on light."""
    for i in (1, 3):
        root = cells.nth(i).locator(".epic-stepper, .epic-compare").first
        c = root.evaluate(COLOURS)
        for what in ("text", "label"):
            if c[what] is not None:
                assert (_bright(c[what]) > 150) == dark, (i, what, c)


@pytest.mark.timeout(900)
def test_stepper_and_compare_in_jupyterlab_then_saved_and_exported(tmp_path):
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "teach.ipynb", [SETUP, STEP, STEP_AGAIN, COMPARE, COUNTS])
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
            # progress while the comparison runs (which run, calls done/total), then the view in its place
            expect(cells.nth(3).locator(".epic-compare-progress")).to_contain_text("calls done", timeout=60_000)
            seen = _step_through(page, stepper)
            # the second run, with the answer cache warm: the same trace, no call marked cached
            again = cells.nth(2).locator(STEPPER)
            expect(again).to_have_count(1, timeout=60_000)
            assert again.evaluate(RULES) == stepper.evaluate(RULES)
            assert again.locator("li[data-cached]").count() == 0
            expect(again.locator(".epic-stepper-state").last).to_have_text("done")
            compare = cells.nth(3).locator(".epic-compare")
            expect(compare).to_have_attribute("data-state", "done", timeout=180_000)
            expect(cells.nth(3).locator(".epic-compare-progress")).to_have_count(0)
            expect(compare.locator(".epic-compare-charts-body > .epic-compare-run")).to_have_count(4)
            expect(compare.locator("table.epic-compare-table tbody tr")).to_have_count(5)
            expect(compare.locator("tr[data-strategy=opportunistic] td").last).to_have_text("agrees")
            expect(cells.nth(3).locator(".jp-OutputArea-executeResult")).to_contain_text("9")
            walls = [float(t.split()[0]) for t in compare.locator("tbody tr td:nth-child(2)").all_inner_texts()]
            assert min(walls[:4]) >= walls[4], walls                 # no strategy beats the bound
            # one step count: the stepper's and the comparison's, for the same program
            counts = cells.nth(4).locator(".epic-compare")
            expect(counts).to_have_attribute("data-state", "done", timeout=120_000)
            steps = counts.locator("tr[data-strategy=opportunistic] td").nth(4).inner_text()
            expect(stepper.locator(".epic-stepper-counts")).to_contain_text(f"opportunistic · {steps} steps")

            # a teaching moment for the picture: a call in flight, nodes parked on its answer
            stepper.locator("button[data-action=first]").click()
            stepper.locator("button[data-action=next-dispatch]").click()
            for _ in range(2):
                stepper.locator("button[data-action=forward]").click()
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            _check_theme(page, cells, dark=False)
            _shot(page, stepper, "stepper.png", tmp_path)
            _shot(page, compare, "compare.png", tmp_path)
            page.evaluate(DARK)
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            _check_theme(page, cells, dark=True)
            _shot(page, stepper, "stepper-dark.png", tmp_path, docs=False)
            _shot(page, compare, "compare-dark.png", tmp_path, docs=False)
            page.evaluate(LIGHT)
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000)
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
            expect(page.locator(".jp-Notebook .jp-CodeCell").nth(3).locator(".epic-compare-run")).to_have_count(8)
            assert not _ours(errors), errors

            # not trusted (a copy whose outputs Lab has not signed): both views are clean tables
            nb = json.loads((nbdir / "teach.ipynb").read_text(encoding="utf-8"))
            nb["metadata"]["copied"] = True
            (nbdir / "untrusted.ipynb").write_text(json.dumps(nb), encoding="utf-8")
            _shutdown_kernels(base)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            _open(page, base, "untrusted.ipynb")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            expect(cells.nth(1).locator("table.epic-stepper-steps")).to_be_visible(timeout=30_000)
            expect(cells.nth(1).locator(STEPPER)).to_have_count(0)
            table = cells.nth(3).locator("table.epic-compare-table")
            expect(table).to_be_visible()
            expect(table.locator("tbody tr")).to_have_count(5)
            expect(cells.nth(3).locator(".epic-compare-nocharts")).to_be_visible()
            text = cells.nth(3).locator(".jp-OutputArea-output").first.inner_text()
            assert not re.search(r"sequentialsequential|s\d\.\d+ s|agreeIn", text), text
            _shot(page, cells.nth(3).locator(".jp-OutputArea-output").first, "compare-untrusted.png", tmp_path,
                  docs=False)

            # nbconvert's HTML of the saved notebook, opened from disk: the stepper steps there too
            out = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(nbdir / "teach.ipynb"),
                                  "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            exported = tmp_path / "teach.html"
            page.goto(exported.as_uri())
            stepper = page.locator(STEPPER).first
            expect(stepper).to_be_visible(timeout=30_000)
            mount = stepper.locator("[data-step]").first
            stepper.locator("button[data-action=last]").click()
            expect(stepper.locator(".epic-stepper-now")).to_contain_text("the run has ended")
            stepper.locator("button[data-action=first]").click()
            for k in (1, 2, 3):
                stepper.locator("button[data-action=forward]").click()
                expect(mount).to_have_attribute("data-step", str(k))
            assert _panels(stepper) == seen[3]
            expect(page.locator(".epic-compare").first.locator(".epic-compare-charts-body > .epic-compare-run")
                   ).to_have_count(4)
        finally:
            browser.close()


SMOL_STEP = """%%epic --step
colour = llm("Name a colour.", max_tokens=4)
llm("Write a line about " + colour, max_tokens=4)"""
SMOL_COMPARE = """%%epic --compare
plan = llm("Name a topic.", max_tokens=4)
parts = [llm(f"Part {i} of {plan}", max_tokens=4) for i in range(3)]
len(parts)"""


@pytest.mark.timeout(900)             # SmolLM2 converts and loads in the kernel (about a minute on 2 cores)
def test_teaching_views_on_the_default_model(tmp_path):
    """On SmolLM2 (the default backend): a --step cell run twice records the same trace (the cache
    is warm the second time), the comparison shows progress, then no strategy faster than the
    bound."""
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "smol.ipynb", ["1", SMOL_STEP, SMOL_STEP, SMOL_COMPARE])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            errors = _console_errors(page)
            _open(page, base, "smol.ipynb")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            first, again = cells.nth(1).locator(STEPPER), cells.nth(2).locator(STEPPER)
            expect(first).to_have_count(1, timeout=400_000)
            expect(again).to_have_count(1, timeout=120_000)
            assert again.evaluate(RULES) == first.evaluate(RULES)
            assert again.locator("li[data-cached]").count() == 0
            expect(cells.nth(3).locator(".epic-compare-progress")).to_contain_text("calls done", timeout=120_000)
            compare = cells.nth(3).locator(".epic-compare")
            expect(compare).to_have_attribute("data-state", "done", timeout=400_000)
            expect(compare.locator(".epic-config")).to_contain_text("SmolLM2")
            walls = [float(t.split()[0]) for t in compare.locator("tbody tr td:nth-child(2)").all_inner_texts()]
            assert len(walls) == 5 and min(walls[:4]) >= walls[4], walls      # no strategy beats the bound
            expect(cells.nth(3).locator(".jp-OutputArea-executeResult")).to_contain_text("3")
            _shot(page, compare, "compare-smollm2.png", tmp_path, docs=False)
            assert not _ours(errors), errors
        finally:
            browser.close()
