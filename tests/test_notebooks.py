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
    assert WIDGET_VIEW in data                                     # the live widget ...
    assert data["text/html"].count('<tr data-state="done"') == 3   # ... with its final snapshot stored
    assert data["text/plain"].startswith("epic In [2] [done]")
    assert outputs(nb.cells[1], "execute_result")[0].data["text/plain"] == "2"
    assert outputs(nb.cells[2], "execute_result")[0].data["text/plain"] == "(True, 'opportunistic')"


def test_nbconvert_html_shows_the_final_snapshot(tmp_path):
    path = tmp_path / "demo.ipynb"
    with epic_kernel_env():
        nb = execute(demo_notebook("epic"), "epic", str(tmp_path), store_widget_state=False)
        nbformat.write(nb, path)
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(path)], check=True,
                       capture_output=True, timeout=120)
    html = (tmp_path / "demo.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr [^>]*data-state="done"', html)          # nbconvert may reorder attributes
    assert len(rows) == 3 and 'class="epic-live epic-snapshot"' in html
    assert "a fact about owls" in html                             # a prompt in the calls table


def test_saved_widget_state_holds_the_final_run(tmp_path):
    """With widget state stored (nbclient's default) nbconvert renders the widget view instead,
    from the saved traits (online, via the widget CDN); those traits are the final state."""
    with epic_kernel_env():
        nb = execute(demo_notebook("epic"), "epic", str(tmp_path))
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    model_id = outputs(nb.cells[1], "display_data")[0].data[WIDGET_VIEW]["model_id"]
    saved = state[model_id]["state"]
    assert saved["header"]["state"] == "done" and saved["header"]["calls"] == 3
    assert [r["state"] for r in saved["rows"]] == ["done"] * 3 and saved["cancellable"] is False
