"""The call budget (issue 20): a runaway loop must not spend unbounded model calls.

A run has a per-run limit on calls (`MAX_CALLS` unless set: `run(..., max_calls=)`, `%%epic
--max-calls N`, `epic run --max-calls N`); the call that would go over it fails with
CallLimitExceeded at its line, which stops the run there, finished results kept. Checked through
the three ways a user sets it, with the sim backend.
"""

from __future__ import annotations

import json
import sys

import pytest

from epic_kernel import EpicError, run
from epic_kernel.errors import CallLimitExceeded
from epic_kernel.llm.sim import SimBackend
from epic_kernel.runtime.options import MAX_CALLS, RunOptions, parse_budget

RUNAWAY = "answers = []\nwhile True:\n    answers.append(llm('again', max_tokens=2))\n"


@pytest.mark.parametrize("strategy", ["opportunistic", "sequential"])
def test_a_runaway_loop_stops_at_the_budget_naming_its_line(strategy: str) -> None:
    with pytest.raises(EpicError) as ei:
        run(RUNAWAY, backend=SimBackend(latency=0), strategy=strategy, max_calls=50)
    err = ei.value
    first = err.failures[0]
    assert isinstance(first.error, CallLimitExceeded) and first.site_line == 3
    assert str(err).startswith("line 3: `answers.append(llm('again', max_tokens=2))` CallLimitExceeded: ")
    assert "call budget of 50 calls" in str(err) and "--max-calls" in str(err)
    started = err.result.calls
    assert len(started) == 50 and all(c.state == "done" for c in started)     # finished results are kept


def test_the_default_budget_is_named_and_can_be_lifted() -> None:
    assert MAX_CALLS == 10_000 and RunOptions().max_calls == MAX_CALLS
    res = run("[llm(f'q{i}', max_tokens=1) for i in range(30)]", backend="sim", max_calls=30)
    assert len(res.calls) == 30
    with pytest.raises(EpicError):
        run("[llm(f'q{i}', max_tokens=1) for i in range(30)]", backend="sim", max_calls=29)
    assert len(run("[llm(f'q{i}', max_tokens=1) for i in range(30)]", backend="sim", max_calls=None).calls) == 30
    with pytest.raises(ValueError, match="max_calls"):
        RunOptions(max_calls=-1)
    assert (parse_budget("500"), parse_budget("10,000"), parse_budget("none")) == (500, 10_000, None)
    with pytest.raises(ValueError, match="--max-calls"):
        parse_budget("lots")


def test_the_budget_reaches_the_live_view() -> None:
    from epic_kernel.widgets import RunModel
    model = RunModel(title="t")
    run("[llm(f'q{i}', max_tokens=1) for i in range(3)]", backend="sim", observers=[model.on_event], max_calls=7)
    snap = model.snapshot()
    assert snap["header"]["max_calls"] == 7 and snap["header"]["calls"] == 3
    from epic_kernel.widgets._snapshot import snapshot_text
    assert "3 calls (budget 7):" in snapshot_text(snap)


def test_epic_run_takes_max_calls(tmp_path) -> None:
    import subprocess
    prog = tmp_path / "loop.py"
    prog.write_text(RUNAWAY)
    proc = subprocess.run([sys.executable, "-m", "epic_kernel", "run", str(prog), "--backend", "sim",
                           "--max-calls", "20", "--json"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    obj = json.loads(proc.stdout)
    assert len(obj["calls"]) == 20
    assert "CallLimitExceeded" in json.dumps(obj["failures"][0]) and f"{prog}:3" in proc.stderr


def test_epic_cell_takes_max_calls() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from epic_kernel.llm.registry import set_default_backend
    ip = InteractiveShell.instance()
    try:
        ip.run_line_magic("load_ext", "epic_kernel")
        with capture_output():
            res = ip.run_cell("%%epic --backend sim --view none --no-cache --max-calls 12\n" + RUNAWAY)
        assert not res.success
        assert len(ip.user_ns["_epic_last"].calls) == 12
        with capture_output() as out:
            res = ip.run_cell("%%epic --backend sim --view none --max-calls lots\n1\n")
        assert not res.success and "--max-calls" in (out.stderr + out.stdout + repr(res.error_in_exec))
    finally:
        ip.run_line_magic("unload_ext", "epic_kernel")
        set_default_backend(None, None)
        InteractiveShell.clear_instance()
