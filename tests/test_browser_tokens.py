"""The token view in real JupyterLab (Debian's chromium, playwright; see tests/test_browser.py): a
`%%epic` cell on a local model asks for `logprobs=3`; its output lists the call under Tokens; a click
opens the view, hovering a token shows its probability and alternatives. The notebook is saved, its
kernel shut down and reopened: the view opens again and hovering still shows the alternatives (no
kernel, no widget model: the saved snapshot alone).

Screenshot: docs/token-view.png with EPIC_UPDATE_SCREENSHOT=1 (else tmp)."""

from __future__ import annotations

from typing import Any

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


def _hover_first_token(page: Any, cell: Any) -> str:
    view = cell.locator("details.epic-tokview").first
    expect(view).to_have_count(1, timeout=60_000)
    view.locator("summary").click()
    row = view.locator("table.epic-toks tbody tr").nth(1)
    alts = row.locator("td").nth(3)
    expect(alts).to_be_hidden()                    # alternatives only on hover
    row.locator("td").first.hover()
    expect(alts).to_be_visible()
    expect(row.locator("td").nth(1)).to_be_visible()   # its probability
    return alts.inner_text()


def test_token_view_hover_then_saved_and_reopened(tmp_path, tiny_model_dir):
    setup = ("from epic_kernel.llm.transformers_backend import TransformersBackend\n"
             f"tb = TransformersBackend({str(tiny_model_dir)!r}, device='cpu')")
    cell = '%%epic --backend tb --no-cache\nanswer = llm("The cat", max_tokens=10, logprobs=3)'
    with jupyterlab() as (base, nbdir), sync_api.sync_playwright() as pw:
        _notebook(nbdir / "tokens.ipynb", [setup, cell])
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors = _console_errors(page)
            _open(page, base, "tokens.ipynb")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            out = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            expect(out.locator(".epic-status").first).to_have_text("done", timeout=120_000)
            first = _hover_first_token(page, out)
            assert len(first.split(";")) >= 2 and any(ch.isdigit() for ch in first), first  # the others, with p
            _shot(page, out.locator("details.epic-tokview").first, "token-view.png", tmp_path)
            assert not _ours(errors), errors

            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                   timeout=30_000)
            _shutdown_kernels(base)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            errors.clear()
            _open(page, base, "tokens.ipynb")
            out = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
            again = _hover_first_token(page, out)
            assert again == first
            assert not _ours(errors), errors
        finally:
            browser.close()
