"""The teaching views through real kernels: `%%epic --step`, `%epic step` and `%%epic --compare` in
the EPIC kernel and with `%load_ext epic_kernel` in a stock python3 kernel (nbclient), then the
notebook saved, read back and exported with nbconvert: the static views are in the file and the
export, with no widget model to lose."""

from __future__ import annotations

import json

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

from nbclient import NotebookClient  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402
from test_notebooks import epic_kernel_env  # noqa: E402  (the kernelspec under a temporary prefix)

from epic_kernel.runtime.recorder import state_at  # noqa: E402

pytestmark = pytest.mark.kernel
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

STEP_CELL = '''%%epic --backend sim --step
a = llm("Name a colour.")
if len(a) > 3:
    b = llm("Name a fruit.")
else:
    b = "none"
len(b) > 0'''

COMPARE_CELL = '''%%epic --backend sim --compare --out cmp
topics = ["tides", "rainbows", "eclipses"]
facts = [llm(f"One fact about {t}.") for t in topics]
summary = llm("Summarise: " + " ".join(facts))
len(facts)'''


def notebook(kernel_name: str) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    nb.cells = [new_code_cell("%load_ext epic_kernel"), new_code_cell(STEP_CELL), new_code_cell("%epic step"),
                new_code_cell(COMPARE_CELL),
                new_code_cell("print(cmp.ok, [r.strategy for r in cmp.runs], len(summary) > 0, b == _epic_b)")]
    nb.cells.insert(2, new_code_cell("_epic_b = b"))
    return nb


def outputs(cell, kind: str) -> list:
    return [o for o in cell.outputs if o.output_type == kind]


def recording_in(html: str) -> dict:
    data = html.split('class="epic-stepper-data">', 1)[1].split("</script>", 1)[0]
    return json.loads(data)


@pytest.mark.parametrize("kernel_name", ["epic", "python3"])
def test_stepper_and_compare_in_a_kernel_saved_and_exported(kernel_name, tmp_path):
    with epic_kernel_env():
        nb = notebook(kernel_name)
        NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    step_cell, again, compare_cell, check = nb.cells[1], nb.cells[3], nb.cells[4], nb.cells[5]
    shown = outputs(step_cell, "display_data")
    assert len(shown) == 1 and WIDGET_VIEW not in shown[0].data          # --step: the stepper only
    html = shown[0].data["text/html"]
    assert 'class="epic-stepper"' in html and "epicStepper(" in html
    assert shown[0].data["text/plain"].startswith("reduction stepper [done]: opportunistic")
    rec = recording_in(html)
    assert [c[1] for c in rec["calls"]] == ["llm", "llm"] and rec["source"].startswith('a = llm("Name a colour.")')
    assert rec["first_line"] == 2 and rec["title"] == "In [2]"
    n = len(rec["steps"])
    assert state_at(rec, n)["queue"] == [] and state_at(rec, n)["flight"] == []
    assert outputs(step_cell, "execute_result")[0].data["text/plain"] == "True"
    # %epic step shows the same recording again
    again_html = outputs(again, "execute_result")[0].data["text/html"]
    assert recording_in(again_html) == rec
    # --compare: one static view, four strategies, the value and the names
    view = outputs(compare_cell, "display_data")
    assert len(view) == 1 and WIDGET_VIEW not in view[0].data
    chtml = view[0].data["text/html"]
    for s in ("sequential", "opportunistic", "opportunistic-dfs", "random", "critical chain"):
        assert f'data-strategy="{s}"' in chtml
    assert outputs(compare_cell, "execute_result")[0].data["text/plain"] == "3"
    assert outputs(check, "stream")[0].text == (
        "True ['sequential', 'opportunistic', 'opportunistic-dfs', 'random'] True True\n")

    # saved, read back, exported: the views are in the file and the HTML
    path = tmp_path / "teach.ipynb"
    nbformat.write(nb, path)
    back = nbformat.read(path, as_version=4)
    assert recording_in(outputs(back.cells[1], "display_data")[0].data["text/html"]) == rec
    exported, _ = nbconvert.HTMLExporter().from_notebook_node(back)
    assert exported.count('class="epic-stepper"') == 2 and exported.count("epicStepper(") >= 2
    assert 'class="epic-live epic-snapshot epic-compare"' in exported
    assert f'<script type="{WIDGET_VIEW}"' not in exported


def test_epic_step_without_a_recording_says_what_to_do(tmp_path):
    with epic_kernel_env():
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
        nb.cells = [new_code_cell("%load_ext epic_kernel"), new_code_cell("%epic step"),
                    new_code_cell("%%epic --backend sim --compare --strategy random\n1")]
        NotebookClient(nb, kernel_name="python3", timeout=60, allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    # IPython prints a UsageError as one line on stderr, no traceback
    err = outputs(nb.cells[1], "stream")[0]
    assert err.name == "stderr" and err.text.startswith("UsageError: %epic step: no recorded run")
    assert "%%epic --step" in err.text
    err = outputs(nb.cells[2], "stream")[0]
    assert err.name == "stderr" and "drop --strategy" in err.text
