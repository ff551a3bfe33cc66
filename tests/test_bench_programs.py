"""Smoke test of benchmarks/bench_programs.py on the committed SmolLM2 recordings: `--quick` with
latencies sped up 500x. The benchmark itself stops if sequential, opportunistic and the hand-written
asyncio version disagree on the result or on the multiset of requests; this checks that it ran,
agreed, and wrote its report. Behaviour only: no timing is asserted (the machine is shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "benchmarks" / "recordings"


def test_bench_programs_quick_modes_agree(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "benchmarks.bench_programs", "--quick", "--speed", "500",
                        "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "programs.json").read_text())
    md = (tmp_path / "programs.md").read_text()
    assert data["meta"]["quick"] is True and data["meta"]["speed"] == 500 and data["meta"]["reps"] == 1

    recorded = {name for name in ("tot", "tot-model", "tools", "constrained")
                if (RECORDINGS / f"{name}.jsonl").exists()}
    assert {"tot", "tools", "constrained"} <= recorded        # committed with the benchmark
    assert set(data["workloads"]) == recorded
    for name, w in data["workloads"].items():
        assert w["same_results_and_requests"] is True
        solo = (RECORDINGS / f"{name}.sequential.jsonl").exists()   # the real sequential run, replayed too
        assert set(w["wall_s"]) == {"sequential", "opportunistic", "asyncio"} | ({"solo"} if solo else set())
        assert w["calls"] > 1 and w["critical_path_s"] > 0
        assert w["sum_latency_s"] >= w["critical_path_s"] and w["bound"] >= 1
        assert f"| {name} |" in md
    assert set(data["workloads"]["tot"]["targets"]) == {"speedup_at_least_4x", "opportunistic_within_5pct_of_asyncio"}
