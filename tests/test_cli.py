"""The `epic` command, run as a user runs it: `python -m epic_kernel ...` in a subprocess, offline."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.py"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("EPIC_BACKEND", None)
    env["COLUMNS"] = "120"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def epic(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "epic_kernel", *args], cwd=cwd, env=_env(), text=True,
                          capture_output=True, timeout=timeout)


def run_json(path: str | Path, *extra: str, cwd: Path = REPO) -> tuple[subprocess.CompletedProcess, dict]:
    proc = epic("run", str(path), "--backend", "sim", "--json", *extra, cwd=cwd)
    try:
        obj = json.loads(proc.stdout)        # the whole of stdout is one JSON object
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON object (rc {proc.returncode}):\n{proc.stdout}\n--- stderr:\n{proc.stderr}")
    return proc, obj


# ------------------------------------------------------------------------------------------ epic run
def test_run_fanout_json() -> None:
    proc, obj = run_json("examples/fanout.py")
    assert proc.returncode == 0, proc.stderr
    assert set(obj) >= {"value", "elapsed", "steps", "rules", "strategy", "calls"}
    assert obj["strategy"] == "opportunistic"
    assert obj["steps"] > 0 and obj["elapsed"] > 0
    assert obj["rules"]["dispatch"] == 5
    value = obj["value"]
    assert set(value) == {"facts", "summary"}
    assert list(value["facts"]) == ["volcanoes", "coral reefs", "glaciers", "deserts"]
    assert all(isinstance(v, str) and v for v in value["facts"].values())
    calls = obj["calls"]
    assert len(calls) == 5
    assert all(c["fn"] == "llm" and c["state"] == "done" and c["error"] is None for c in calls)
    facts, summary = calls[:4], calls[4]
    # the four questions were in flight together; the summary started after all of them finished
    assert max(c["start"] for c in facts) < min(c["end"] for c in facts)
    assert summary["start"] >= max(c["end"] for c in facts)
    line = next(i for i, s in enumerate((REPO / "examples" / "fanout.py").read_text().splitlines(), 1)
                if s.startswith("summary = llm("))
    assert summary["site_line"] == line and summary["args"].startswith("Summarize")


def test_run_json_keeps_stdout_clean_of_prints(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text('print("hello from the program")\nx = llm("hi", max_tokens=4)\nprint("got", x)\n[1, 2.5, None]\n')
    proc, obj = run_json(prog)
    assert proc.returncode == 0, proc.stderr
    assert obj["value"] == [1, 2.5, None]
    assert "hello from the program" in proc.stderr and "got " in proc.stderr
    assert "hello" not in proc.stdout


def test_run_plain_prints_value_and_summary(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text('print("first")\nanswers = [llm(q, max_tokens=4) for q in ["a", "b"]]\nlen(answers)\n')
    proc = epic("run", str(prog), "--backend", "sim", "--strategy", "sequential")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["first", "2"]
    assert "sequential:" in proc.stderr and "2 calls" in proc.stderr
    assert "llm" in proc.stderr                      # the calls table
    quiet = epic("run", str(prog), "--backend", "sim", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout.splitlines() == ["first", "2"] and quiet.stderr == ""


def test_run_non_json_value_is_repr_fallback(tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text('{"s": set([1, 2]), (1, 2): float("nan"), "r": range(3)}\n')
    proc, obj = run_json(prog)
    assert proc.returncode == 0, proc.stderr
    assert obj["value"] == {"s": "{1, 2}", "(1, 2)": "nan", "r": "range(0, 3)"}
    assert obj["calls"] == []


def test_syntax_error_exit_2_with_location(tmp_path: Path) -> None:
    prog = tmp_path / "bad.py"
    prog.write_text('x = llm("hi")\n\nclass A:\n    pass\n')
    proc = epic("run", str(prog), "--backend", "sim")
    assert proc.returncode == 2
    assert f"{prog}:3:1: 'class' is not supported" in proc.stderr
    assert "hint:" in proc.stderr and "class A:" in proc.stderr
    assert proc.stdout == ""                         # nothing ran


def test_python_syntax_error_exit_2(tmp_path: Path) -> None:
    prog = tmp_path / "bad.py"
    prog.write_text("def f(x):\n    return x +\n")
    proc = epic("run", str(prog), "--backend", "sim")
    assert proc.returncode == 2
    assert f"{prog}:2:" in proc.stderr and "return x +" in proc.stderr
    proc, obj = run_json(prog)
    assert proc.returncode == 2
    assert obj["error_type"] == "EpicSyntaxError" and obj["line"] == 2 and obj["value"] is None


def test_runtime_error_exit_1_names_the_line(tmp_path: Path) -> None:
    prog = tmp_path / "oops.py"
    prog.write_text('a = llm("hello", max_tokens=5)\nb = {"k": 1}\nc = b["missing"]\n[a, c]\n')
    proc = epic("run", str(prog), "--backend", "sim")
    assert proc.returncode == 1
    assert f"{prog}:3" in proc.stderr and "KeyError" in proc.stderr
    assert 'c = b["missing"]' in proc.stderr
    proc, obj = run_json(prog)
    assert proc.returncode == 1
    assert "KeyError" in obj["error"]
    assert [(f["site_line"], f["state"]) for f in obj["failures"]] == [(3, "failed")]
    assert [(c["fn"], c["state"]) for c in obj["calls"]] == [("llm", "done")]   # finished calls are kept


def test_missing_file_and_bad_usage_exit_2(tmp_path: Path) -> None:
    assert epic("run", str(tmp_path / "nope.py")).returncode == 2
    prog = tmp_path / "p.py"
    prog.write_text("1\n")
    assert epic("run", str(prog), "--strategy", "nope").returncode == 2
    bad = epic("run", str(prog), "--backend", "bogus")
    assert bad.returncode == 2 and "unknown backend" in bad.stderr
    assert epic().returncode == 2
    assert epic("frobnicate").returncode == 2
    assert epic("--version").stdout.startswith("epic-kernel ")


def test_trace_out_is_chrome_trace(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    proc, obj = run_json("examples/fanout.py", "--trace-out", str(out))
    assert proc.returncode == 0, proc.stderr
    trace = json.loads(out.read_text())
    spans = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    assert len(spans) == len(obj["calls"]) == 5


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_runs_on_sim(name: str) -> None:
    proc, obj = run_json(f"examples/{name}")
    assert proc.returncode == 0, proc.stderr
    assert obj["value"] not in (None, "", [], {})
    assert obj["calls"] and all(c["fn"] == "llm" and c["state"] == "done" for c in obj["calls"])
    value = obj["value"]
    if name == "sot.py":
        assert 2 <= len(value["points"]) <= 5
        assert len(obj["calls"]) == 1 + len(value["points"])          # skeleton + one expansion per point
        assert value["answer"].startswith("1. ")
    elif name == "tot.py":
        assert value["explored"] == 3 + 2 * 3 and len(obj["calls"]) == 2 * value["explored"]
        assert value["best_plan"].startswith("- ")
    elif name == "tools.py":
        assert [v["tool_result"] for v in value] == ["9", "desserts", "OPPORTUNISTIC EVALUATION"]
    elif name in ("demo.py", "fanout.py"):
        assert len(obj["calls"]) == {"demo.py": 7, "fanout.py": 5}[name]


def test_examples_give_the_same_value_sequentially() -> None:
    _, opp = run_json("examples/sot.py")
    _, seq = run_json("examples/sot.py", "--strategy", "sequential")
    assert opp["value"] == seq["value"]
    assert sorted(c["args"] for c in opp["calls"]) == sorted(c["args"] for c in seq["calls"])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupt_exits_130_and_keeps_finished_calls(tmp_path: Path) -> None:
    prog = tmp_path / "long.py"
    prog.write_text('print("started")\nout = []\nfor i in range(500):\n'
                    '    out.append(llm(f"q{i} " + (out[-1] if out else ""), max_tokens=8))\nlen(out)\n')
    p = subprocess.Popen([sys.executable, "-m", "epic_kernel", "run", str(prog), "--backend", "sim", "--json"],
                         cwd=REPO, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stderr is not None
        assert "started" in p.stderr.readline()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    obj = json.loads(out)
    assert "interrupted" in obj["error"]
    assert {c["state"] for c in obj["calls"]} <= {"done", "cancelled"} and obj["calls"][0]["state"] == "done"


# ------------------------------------------------------------------------------------------ epic demo
def test_demo_on_sim_prints_speedup() -> None:
    proc = epic("demo", "--backend", "sim", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "speedup:" in proc.stdout
    assert "sequential" in proc.stdout and "opportunistic" in proc.stdout
    assert 'city = "Lisbon"' in proc.stdout                        # the program is shown
    speedup = float(proc.stdout.split("speedup:")[1].split("x")[0])
    assert math.isfinite(speedup) and speedup > 0       # its size is the benchmarks' job, not a test's


def test_demo_falls_back_to_sim_when_the_model_cannot_load(tmp_path: Path) -> None:
    proc = epic("demo", "--model", str(tmp_path / "no-such-model"), timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "could not be loaded" in proc.stdout and "pip install" in proc.stdout
    assert "simulated model" in proc.stdout and "speedup:" in proc.stdout


def test_demo_program_is_examples_demo() -> None:
    from epic_kernel.cli import DEMO_PROGRAM

    assert DEMO_PROGRAM == (REPO / "examples" / "demo.py").read_text()


# ------------------------------------------------------------------------------------------ epic serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_models() -> None:
    pytest.importorskip("uvicorn")
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "epic_kernel", "serve", "--backend", "sim", "--port", str(port),
                          "--log-level", "warning"], cwd=REPO, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        assert body is not None, f"server did not answer (rc {p.poll()})"
        assert body["object"] == "list" and body["data"][0]["object"] == "model"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"model": body["data"][0]["id"], "max_tokens": 5,
                             "messages": [{"role": "user", "content": "hi"}]}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            chat = json.loads(r.read())
        assert chat["choices"][0]["message"]["content"]
    finally:
        p.terminate()
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
    assert "127.0.0.1:" in err                                    # it said where it listens


# ------------------------------------------------------------------------------------------ the rest
def test_install_writes_a_kernelspec(tmp_path) -> None:
    proc = epic("install", "--prefix", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "epic" / "kernel.json").read_text())
    assert spec["display_name"] == "EPIC (Python 3)" and os.path.isabs(spec["argv"][0])

def test_bench_runs_the_checkout_runner(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import epic_kernel.cli as cli

    seen: list = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: seen.append((cmd, kw)) or 0)
    rc = cli.main(["bench", "--quick", "--only", "core"])
    if (REPO / "benchmarks" / "__main__.py").exists():
        assert rc == 0
        [(cmd, kw)] = seen
        assert cmd == [sys.executable, "-m", "benchmarks", "--quick", "--only", "core"]
        assert Path(kw["cwd"]) == REPO
    else:
        assert rc == 2 and not seen
        assert "benchmarks" in capsys.readouterr().err


def test_json_helpers() -> None:
    from epic_kernel.cli import _jsonable

    v = _jsonable({1: float("inf"), None: [(1, "a")], "x": {frozenset(): object}})
    assert json.loads(json.dumps(v, allow_nan=False)) == {"1": "inf", "null": [[1, "a"]],
                                                          "x": {"frozenset()": "<class 'object'>"}}
