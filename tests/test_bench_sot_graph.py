"""The skeleton-graph benchmark's machinery on the sim: behaviour, not speed."""

from __future__ import annotations

import json

from benchmarks import bench_sot_graph


def test_runs_every_mode_and_writes_its_tables(tmp_path):
    bench_sot_graph.main(["--model", "sim", "--questions", "1,21", "--per-token-s", "0.0005", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "sot_graph-sim.json").read_text())
    assert sorted(results["questions"]) == ["1", "21"]
    for row in results["questions"].values():
        modes = row["modes"]
        assert set(modes) == set(bench_sot_graph.MODES)
        graph = modes["graph"]
        assert graph["used_sot"] and graph["points"] >= 2 and graph["calls"] == graph["points"] + 1
        assert 1 <= graph["critical"] <= graph["points"] and graph["dropped"] == 0
        assert modes["graph-seq"]["answer"] == graph["answer"]           # same program, another strategy
        assert modes["normal"]["calls"] == 1 and modes["router"]["calls"] == 1
    md = (tmp_path / "sot_graph-sim.md").read_text()
    assert "| **all** | 2 |" in md and "critical / points" in md and "Quality is not measured here" in md
