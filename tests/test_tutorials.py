"""Every tutorial notebook runs top to bottom: a fresh copy of each tutorials/*.ipynb is executed with
nbclient in the stock python3 kernel (the notebooks `%load_ext epic_kernel` themselves) and no cell
may leave an error output."""

from __future__ import annotations

import pathlib
import shutil

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")          # 04 draws a chart

from nbclient import NotebookClient  # noqa: E402

pytestmark = pytest.mark.kernel
TUTORIALS = sorted((pathlib.Path(__file__).resolve().parent.parent / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 2


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_without_errors(path, tmp_path, monkeypatch):
    for key, sub in [("JUPYTER_RUNTIME_DIR", "rt"), ("IPYTHONDIR", "ipython"), ("EPIC_CACHE_DIR", "cache")]:
        monkeypatch.setenv(key, str(tmp_path / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EPIC_VIEW", "")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "nb"
    work.mkdir()
    copy = work / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:                      # run from scratch, not from the committed outputs
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True,    # SmolLM2 loads in 02 and 07
                   resources={"metadata": {"path": str(work)}}).execute()
    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{path.name}: error outputs in cells {errors}"
    assert all(cell.outputs for cell in nb.cells
               if cell.cell_type == "code" and cell.source.lstrip().startswith("%%epic"))
