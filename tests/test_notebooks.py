"""Headless notebooks: execute a `%%epic` notebook with nbclient, export it with nbconvert, and find
the run's final snapshot (a call row) in the HTML (notes/jupyter.md section 4.4)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("nbconvert")
pytest.importorskip("anywidget")

from nbclient import NotebookClient  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from epic_kernel.install import install  # noqa: E402

pytestmark = pytest.mark.kernel
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@contextlib.contextmanager
def epic_kernel_env() -> Iterator[str]:
    """The kernelspec under a temporary prefix, with Jupyter, IPython and the cache pointed there."""
    tmp = tempfile.mkdtemp(prefix="epic-nb-test-")
    env = {"JUPYTER_PATH": os.path.join(tmp, "share", "jupyter"), "JUPYTER_RUNTIME_DIR": os.path.join(tmp, "rt"),
           "IPYTHONDIR": os.path.join(tmp, "ipython"), "EPIC_CACHE_DIR": os.path.join(tmp, "cache"),
           "HF_HUB_OFFLINE": "1", "EPIC_VIEW": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        install(prefix=tmp)
        yield tmp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def demo_notebook(kernel_name: str) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    nb.cells = [
        new_code_cell("%load_ext epic_kernel"),
        new_code_cell('%%epic --backend sim\nfacts = [llm(f"a fact about {animal}") for animal in ["owls", "cats"]]\n'
                      "summary = llm(facts[0] + facts[1])\nlen(facts)"),
        new_code_cell("len(summary) > 0, _epic_last.summary()[:13]"),
    ]
    return nb


def execute(nb: nbformat.NotebookNode, kernel_name: str, path: str, **kw) -> nbformat.NotebookNode:
    NotebookClient(nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": path}}, **kw).execute()
    return nb


def outputs(cell: nbformat.NotebookNode, output_type: str) -> list:
    return [o for o in cell.outputs if o.output_type == output_type]


@pytest.mark.parametrize("kernel_name", ["epic", "python3"])
def test_notebook_runs_in_the_epic_kernel_and_with_load_ext(kernel_name, tmp_path):
    with epic_kernel_env():
        nb = execute(demo_notebook(kernel_name), kernel_name, str(tmp_path), store_widget_state=False)
    view = outputs(nb.cells[1], "display_data")
    assert len(view) == 1
    data = view[0].data
    assert WIDGET_VIEW not in data                                 # the live widget was replaced ...
    assert data["text/html"].count('<tr data-state="done"') == 3   # ... by its final snapshot
    assert data["text/plain"].startswith("epic In [2] [done]")
    assert outputs(nb.cells[1], "execute_result")[0].data["text/plain"] == "2"
    assert outputs(nb.cells[2], "execute_result")[0].data["text/plain"] == "(True, 'opportunistic')"


def test_nbconvert_execute_html_shows_the_final_snapshot(tmp_path):
    """`jupyter nbconvert --to html --execute` with the default view (the live widget while it
    runs): the export is offline and shows the final snapshot, not a blank widget area."""
    path = tmp_path / "demo.ipynb"
    with epic_kernel_env():
        nbformat.write(demo_notebook("epic"), path)
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--execute", str(path)], check=True,
                       capture_output=True, timeout=180)
    html = (tmp_path / "demo.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr [^>]*data-state="done"', html)          # nbconvert may reorder attributes
    assert len(rows) == 3 and 'class="epic-live epic-snapshot"' in html
    assert "a fact about owls" in html                             # a prompt in the calls table
    assert "<svg" in html and 'class="epic-timeline"' in html      # the timeline, drawn inline
    # no widget view to render: nbconvert's loader script for the widget CDN (added whenever the
    # notebook's metadata holds widget state) finds nothing to draw, so offline loses nothing
    assert f'<script type="{WIDGET_VIEW}"' not in html


def test_saved_notebook_has_no_widget_left_to_break(tmp_path):
    """With widget state stored (nbclient's default; it keeps the state of closed widgets too),
    the saved outputs still hold no widget view: a reopened notebook or an export never meets a
    model that died with the kernel."""
    with epic_kernel_env():
        nb = execute(demo_notebook("epic"), "epic", str(tmp_path))
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert WIDGET_VIEW not in out.get("data", {}), out
    final = outputs(nb.cells[1], "display_data")[0].data
    assert final["text/html"].count('<tr data-state="done"') == 3 and "[done]" in final["text/plain"]
