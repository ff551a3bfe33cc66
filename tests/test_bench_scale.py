"""bench_scale end to end with tiny sizes: the fake server in its own process, every run in a fresh
process, the table written. Speed is never asserted (the full run: `python -m benchmarks.bench_scale`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import bench_scale

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_every_measure(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--sizes", "60", "--tot-nodes", "100",
                        "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "scale.json").read_text())
    for mode in ("bare", "epic"):
        r = data["fanout"]["60"][mode]
        assert r["calls"] == 60 and r["cpu_s"] > 0 and r["wall_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["server"]["requests"] >= 60 and r["server"]["inflight_at_arrival_peak"] >= 1
    for mode in ("local-bare", "local-epic"):
        assert data["local"]["60"][mode]["calls"] == 60
    assert set(data["summary_local"]["60"]) == {"evaluator_cpu_ms_per_call", "epic_mem_kb_per_call",
                                                "bare_mem_kb_per_call"}
    breadth, levels, k = bench_scale.tot_shape(100)
    assert data["tot"]["tot"]["calls"] == data["tot"]["tot-bare"]["calls"] == levels * breadth * (1 + k)
    assert set(data["summary"]["60"]) == {"evaluator_cpu_ms_per_call", "throughput_vs_bare",
                                          "epic_mem_kb_per_call", "bare_mem_kb_per_call"}
    assert "Call budget passed to run()" in (tmp_path / "scale.md").read_text()


def test_inflight_is_time_weighted() -> None:
    # two 1.5 s calls over a 2 s span, overlapping for 1 s: 3 call-seconds / 2 s = 1.5 in flight, peak 2
    assert bench_scale.inflight([(0.0, 1.5), (0.5, 2.0)]) == {"mean": 1.5, "peak": 2}
    assert bench_scale.inflight([]) == {"mean": 0.0, "peak": 0}
