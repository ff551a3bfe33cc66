"""Smoke tests of the benchmarks: `--quick` runs end to end and writes its JSON and markdown.

Speed is never asserted here (the machine running the tests is shared and noisy); the full run is
`make bench`, whose numbers go into benchmarks/results/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The benchmark as a user runs it. It may start servers of its own: on a timeout the whole
    process group goes, so no server outlives the test (a hang guard, not a speed check)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    with subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(args)} did not finish within {timeout:g} s\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_bench_core_quick_writes_results(tmp_path: Path) -> None:
    p = _run("-m", "benchmarks.bench_core", "--quick", "--latency", "0.01", "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "core.json").read_text())
    md = (tmp_path / "core.md").read_text()

    assert data["meta"]["quick"] is True and data["meta"]["latency_s"] == 0.01
    assert {"cpu", "cpus", "python"} <= set(data["machine"])
    assert isinstance(data["targets_met"], bool)

    pure = data["steps_per_second"]
    assert {"for", "while", "recursion", "listcomp"} <= set(pure)
    for row in pure.values():
        assert {"sizes", "flatness", "min_steps_per_s", "targets"} <= set(row)
        assert [s["target_steps"] for s in row["sizes"]] == [1_000, 10_000]
        for s in row["sizes"]:
            assert s["steps"] > 0 and s["steps_per_s"] > 0 and s["steps_per_s_wall"] > 0

    graphs = data["call_graphs"]
    assert set(graphs) == {"map", "sot", "tot"}
    shapes = {"map": (32, 1), "sot": (9, 2), "tot": (60, 6)}
    for name, g in graphs.items():
        assert (g["calls"], g["critical_path"]) == shapes[name]
        assert g["observed"]["calls"] == g["calls"]           # the epic program made the calls it should
        assert set(g["wall_s"]) == {"sequential", "opportunistic", "asyncio"}
        for key in ("opportunistic_vs_asyncio", "speedup_vs_sequential", "speedup_over_bound", "bound"):
            assert g[key] > 0
        assert set(g["targets"]) == {"opportunistic_within_5pct_of_asyncio", "speedup_within_5pct_of_bound"}

    assert "| program |" in md and "| graph |" in md
    for name in ("map", "sot", "tot", "recursion", "listcomp"):
        assert f"| {name} |" in md


def test_bench_runner_rejects_unknown_names() -> None:
    p = _run("-m", "benchmarks", "--only", "nope", timeout=60)
    assert p.returncode == 2 and "unknown benchmark" in p.stderr


def test_bench_serve_quick_writes_results(tmp_path: Path) -> None:
    """`epic serve` (tiny10m) in its own process, 4 client processes, in-process comparison."""
    p = _run("-m", "benchmarks.bench_serve", "--quick", "--out", str(tmp_path), timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "serve.json").read_text())
    md = (tmp_path / "serve.md").read_text()

    assert data["meta"]["quick"] is True
    res = data["results"]
    assert (res["clients"], res["per_client"], res["N"], res["reps"]) == (4, 8, 32, 1)
    for ep in ("completions", "chat"):
        r = res[ep]
        assert r["server_tok_s"] > 0 and r["inproc_tok_s"] > 0 and r["server_vs_inproc"] > 0
        assert all(t > 0 for t in r["server_tokens"] + r["inproc_tokens"])
        assert isinstance(r["target_within_20pct"], bool)
    assert len(res["serial_clients"]["per_client_wall_s"]) == 4
    assert res["stream_probe"]["token_events"] > 0
    assert "| /v1/completions |" in md and "| /v1/chat/completions |" in md


def test_bench_translate_writes_results(tmp_path: Path) -> None:
    """The translation benchmark side by side with a baseline tree (here the same tree)."""
    p = _run("-m", "benchmarks.bench_translate", "--reps", "1", "--passes", "1", "--baseline", str(ROOT),
             "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "translate.json").read_text())
    assert data["meta"]["programs"] > 200                     # tutorials, examples and progen programs
    assert set(data["median_s"]) == {"current", "baseline"} and data["ratio_current_over_baseline"] > 0
    assert "current / baseline" in (tmp_path / "translate.md").read_text()


def test_bench_recorder_quick_writes_results(tmp_path: Path) -> None:
    p = _run("-m", "benchmarks.bench_recorder", "--quick", "--out", str(tmp_path))
    assert p.returncode == 0 and not p.stderr, p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((tmp_path / "recorder.json").read_text())
    row = data["rows"][0]
    assert row["recorded"] > 100 and not row["truncated"] and row["recording_kb"] > 0
    assert "| recorder / plain |" in (tmp_path / "recorder.md").read_text()
