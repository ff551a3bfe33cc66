"""benchmarks/report.py: the one writer of benchmarks/results/NAME.{json,md}."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.report import write_results


def test_writes_json_and_markdown_side_by_side(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results" / "quick"
    data = {"meta": {"when": "now"}, "ratio": 2.5, "odd": Path("x"), "nan": math.nan}
    j, m = write_results(out, "demo", data, "# demo\n\n| a | b |\n", echo=True)
    assert (j, m) == (out / "demo.json", out / "demo.md")
    text = j.read_text()
    assert text.endswith("}\n") and json.loads(text)["odd"] == "x" and json.loads(text)["ratio"] == 2.5
    assert m.read_text() == "# demo\n\n| a | b |\n"
    assert "# demo" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["demo.json", "demo.md"]      # no temporary files left


def test_partial_results_are_rewritten_whole(tmp_path: Path) -> None:
    write_results(tmp_path, "p", {"done": [1]})
    j, m = write_results(tmp_path, "p", {"done": [1, 2]})
    assert m is None and json.loads(j.read_text()) == {"done": [1, 2]} and not (tmp_path / "p.md").exists()
