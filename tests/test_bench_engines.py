"""bench_engines' workloads and report on the sim backend (the engines themselves: `make bench-engines`)."""

from __future__ import annotations

from benchmarks.bench_engines import markdown, measure
from epic_kernel.llm.sim import SimBackend


def test_workloads_and_table_on_the_sim():
    r = measure(SimBackend(), quick=True)
    assert set(r["fanout"]) == {"1", "4"} and len(r["fanout"]["4"]["answers"]) == 4
    assert r["sequential"]["n"] == 4 and r["sot"]["questions"] == 1 and r["tot-level"]["calls"] == 6
    assert r["sot-seq"]["questions"] == 1 and r["tot"]["calls"] >= 1 and "prefill" not in r["tot"]
    other = {**r, "start_s": 0.5}
    table = markdown({"meta": {"device": "cpu", "dtype": "float32", "machine": "m", "when": "now", "quick": True},
                      "engines": {"batcher": {**r, "start_s": 1.0}, "serve": other, "llama-server": {"error": "boom"}}})
    assert "| batcher | 1.0 s |" in table and "7/7 |" in table and "| llama-server | failed: boom |" in table
