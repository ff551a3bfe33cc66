"""`%%epic` and `%epic` through a real in-process IPython shell (no kernel): the await rewrite, the
sync cell magic, namespace interop, values, errors, interrupts, config and trace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("IPython")

from epic_kernel.magics import EpicCellSyntaxError, epic_transform  # noqa: E402
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

from epic_kernel import EpicError, EpicInterrupted, RunResult  # noqa: E402
from epic_kernel.llm.sim import SimBackend  # noqa: E402


class StuckBackend(SimBackend):
    """A sim whose calls take 30 s, and that says when the first one starts."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.in_flight = threading.Event()

    async def generate(self, request):
        self.in_flight.at = time.monotonic()
        self.in_flight.set()
        return await super().generate(request)


@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    from traitlets.config import Config

    from epic_kernel.llm.registry import set_default_backend

    tmp = tmp_path_factory.mktemp("ipython")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp / "ipython"))
        mp.setenv("EPIC_CACHE_DIR", str(tmp / "cache"))
        mp.delenv("EPIC_VIEW", raising=False)
        cfg = Config()
        cfg.HistoryManager.hist_file = ":memory:"
        shell = InteractiveShell.instance(config=cfg)
        shell.run_line_magic("load_ext", "epic_kernel")
        shell.user_ns["slow"] = SimBackend(latency=2.0)
        shell.user_ns["fast"] = SimBackend(latency=0.01)
        shell.user_ns["stuck"] = StuckBackend(latency=30.0)
        with capture_output():
            shell.run_line_magic("epic", "config backend=sim view=none")
        yield shell
        shell.run_line_magic("unload_ext", "epic_kernel")
        set_default_backend(None, None)
        InteractiveShell.clear_instance()


def cell(ip, source: str):
    with capture_output() as out:
        result = ip.run_cell(source)
    return result, out


# ------------------------------------------------------------------------------------- rewrite
@pytest.fixture
def kernel_like(ip, monkeypatch):
    """Make the shell look like a kernel's, so %%epic cells take the await path in-process."""
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    return ip


def test_epic_cells_become_a_top_level_await_in_a_kernel(kernel_like):
    ip = kernel_like
    code = ip.transform_cell("%%epic --backend sim\nx = llm('hi')\nx\n")
    assert code.startswith("await get_ipython().magics_manager.registry['EpicMagics'].epic_async(")
    assert "'--backend sim'" in code and "x = llm('hi')" in code
    assert ip.should_run_async("%%epic\nx = 1\n", transformed_cell=code)
    res, _ = cell(ip, '%%epic\nawaited = [llm(f"a{i}") for i in range(3)]\nlen(awaited)\n')
    assert res.success and res.result == 3 and len(ip.user_ns["awaited"]) == 3


def test_terminal_shells_keep_the_cell_magic(ip):
    """Outside a kernel Ctrl-C would escape the loop and strand the task: use the sync path."""
    assert ip.transform_cell("%%epic\nx = 1\n").startswith("get_ipython().run_cell_magic('epic'")


@pytest.mark.parametrize("src", ["%%epic?\n", "%%epicure\nx\n", "x = 1\n", "%%time\nx = 1\n"])
def test_other_cells_are_left_alone(src, kernel_like):
    assert epic_transform(src.splitlines(keepends=True)) == src.splitlines(keepends=True)
    assert epic_transform(["%%epic\n", "x\n"]) != ["%%epic\n", "x\n"]


def test_help_lists_the_flags(ip):
    doc = ip.find_cell_magic("epic").__doc__
    for flag in ("--backend", "--model", "--strategy", "--no-cache", "--view", "--out", "--trace"):
        assert flag in doc
    res, out = cell(ip, "%%epic?\n")
    assert res.success


# ----------------------------------------------------------------------------------- namespaces
def test_python_names_flow_into_epic_and_back(ip):
    cell(ip, "n = 3\ndef shout(s):\n    return s.upper()\n")
    res, _ = cell(ip, '%%epic\nwords = [llm(f"word {i}") for i in range(n)]\nloud = [shout(w) for w in words]\nlen(loud)\n')
    assert res.success and res.result == 3
    ns = ip.user_ns
    assert ns["loud"] == [w.upper() for w in ns["words"]] and len(ns["words"]) == 3
    res, _ = cell(ip, "total = sum(len(w) for w in loud)\ntotal")
    assert res.result == sum(len(w) for w in ns["loud"])
    assert isinstance(ns["_epic_last"], RunResult) and len(ns["_epic_last"].calls) == 3


def test_functions_defined_in_a_cell_are_callable_from_python_and_later_cells(ip):
    res, _ = cell(ip, '%%epic --backend fast\ndef ask(topic):\n    return llm(f"one word about {topic}")\n')
    assert res.success and res.result is None
    ask = ip.user_ns["ask"]
    assert ask.run_options["backend"] is ip.user_ns["fast"]        # the cell's explicit backend sticks
    res, _ = cell(ip, 'a = ask("cats")\na')
    assert res.success and isinstance(res.result, str) and res.result
    res, _ = cell(ip, '%%epic\nboth = [ask("dogs"), ask("owls")]\nlen(both)\n')
    assert res.result == 2 and len(ip.user_ns["_epic_last"].calls) == 2   # inlined: its calls are ours


def test_value_out_var_and_semicolon(ip):
    res, _ = cell(ip, '%%epic --out first_run\nllm("hello")\n')
    assert isinstance(res.result, str)
    assert ip.user_ns["first_run"] is ip.user_ns["_epic_last"] and ip.user_ns["first_run"].value == res.result
    res, _ = cell(ip, '%%epic\nllm("quiet");\n')
    assert res.success and res.result is None


def test_sync_cell_magic_path(ip):
    value = ip.run_cell_magic("epic", "--strategy sequential", 'xs = [llm(f"s{i}") for i in range(2)]\nlen(xs)\n')
    assert value == 2 and ip.user_ns["_epic_last"].strategy == "sequential"


# ---------------------------------------------------------------------------------------- errors
def test_syntax_error_is_short_and_names_the_cell_line(ip):
    res, out = cell(ip, "%%epic\nx = 1\nclass A:\n    pass\n")
    err = res.error_in_exec
    assert isinstance(err, EpicCellSyntaxError) and err.line == 3
    assert "line 3" in out.stdout and "class" in out.stdout
    assert "Traceback" not in out.stdout and "_magics.py" not in out.stdout
    assert len(out.stdout.strip().splitlines()) <= 4


def test_runtime_error_names_the_call_line_and_keeps_finished_work(ip):
    cell(ip, "def boom(x):\n    raise ValueError('no ' + x[:5])\n")
    res, out = cell(ip, '%%epic --out broken\ngood = llm("fine")\n\nbad = boom(good)\n[good, bad]\n')
    err = res.error_in_exec
    assert isinstance(err, EpicError) and not isinstance(err, EpicInterrupted)
    assert "line 4" in out.stdout and "ValueError" in out.stdout and "Traceback" not in out.stdout
    assert isinstance(ip.user_ns["good"], str) and "bad" not in ip.user_ns        # finished names are kept
    assert ip.user_ns["broken"] is ip.user_ns["_epic_last"] and ip.user_ns["broken"].state == "failed"
    res, _ = cell(ip, '%%epic\nllm("next cell works")\n')
    assert res.success


def test_bad_flags_are_usage_errors(ip):
    res, out = cell(ip, "%%epic --bogus\nx = 1\n")
    assert isinstance(res.error_in_exec, UsageError)
    res, _ = cell(ip, "%%epic --backend nosuch\nx = 1\n")
    assert isinstance(res.error_in_exec, UsageError) and "nosuch" in str(res.error_in_exec)
    res, _ = cell(ip, "%%epic --strategy fastest\nx = 1\n")
    assert isinstance(res.error_in_exec, UsageError)


def test_cancelling_the_cell_cancels_calls_fast_and_keeps_results(ip):
    magics = ip.magics_manager.registry["EpicMagics"]
    cell(ip, "async def quick(x):\n    return x + '!'\n")
    src = 'first = quick("go")\nmany = [llm(f"{first} slow {i}") for i in range(8)]\nmany\n'

    async def main():
        task = asyncio.ensure_future(magics.epic_async("--backend slow --no-cache", src))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        task.cancel()                                  # what ipykernel does on SIGINT
        with pytest.raises(EpicInterrupted) as info:
            await task
        return info.value, time.monotonic() - t0

    err, took = asyncio.run(main())
    assert took < 1.0
    lines = err._render_traceback_()
    assert len(lines) == 1 and "1 call finished, 8 cancelled" in lines[0] and "_epic_last" in lines[0]
    last = ip.user_ns["_epic_last"]
    assert last.state == "cancelled" and [c.state for c in last.calls] == ["done"] + ["cancelled"] * 8
    res, _ = cell(ip, '%%epic\nllm("still fine")\n')
    assert res.success


def test_ctrl_c_in_a_terminal_shell_cancels_calls(ip):
    """The sync path: asyncio.run turns SIGINT into a cancel of the run and waits for it."""
    stuck = ip.user_ns["stuck"]
    stuck.in_flight.clear()

    def interrupt():                      # once the calls are in flight, not after a guess at how long that takes
        if stuck.in_flight.wait(30):
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt)
    timer.start()
    res, out = cell(ip, '%%epic --backend stuck --no-cache\n[llm(f"t{i}") for i in range(3)]\n')
    timer.join()
    assert isinstance(res.error_in_exec, EpicInterrupted), out.stdout
    assert time.monotonic() - stuck.in_flight.at < 3.0                 # not the 30 s the calls would take
    assert "0 calls finished, 3 cancelled" in out.stdout and "Traceback" not in out.stdout
    assert [c.state for c in ip.user_ns["_epic_last"].calls] == ["cancelled"] * 3


# ---------------------------------------------------------------------------------- config/trace
def test_config_sets_validates_and_shows(ip):
    with capture_output() as out:
        ip.run_line_magic("epic", "config")
    assert "backend=sim" in out.stdout and "cache=on" in out.stdout
    with pytest.raises(UsageError):
        ip.run_line_magic("epic", "config strategy=fastest")
    with pytest.raises(UsageError):
        ip.run_line_magic("epic", "config colour=blue")
    with pytest.raises(UsageError):
        ip.run_line_magic("epic", "config backend=nosuch")
    with capture_output():
        ip.run_line_magic("epic", "config strategy=sequential cache=off")
    try:
        cell(ip, '%%epic\n[llm("c1"), llm("c2")]\n')
        last = ip.user_ns["_epic_last"]
        assert last.strategy == "sequential"
        assert last.calls[0].end <= last.calls[1].start             # one at a time
    finally:
        with capture_output():
            ip.run_line_magic("epic", "config strategy=opportunistic cache=on")


def test_trace_shows_rules_calls_and_full_steps(ip, tmp_path):
    cell(ip, '%%epic --trace full\nq = llm("traced")\nq\n')
    report = ip.run_line_magic("epic", "trace")
    text = repr(report)
    assert "rules:" in text and "dispatch" in text and "steps:" in text and "traced" in text
    bundle = report._repr_mimebundle_()
    assert 'class="epic-live epic-snapshot"' in bundle["text/html"] and "epic-steps" in bundle["text/html"]
    path = tmp_path / "trace.json"
    with capture_output():
        ip.run_line_magic("epic", f"trace {path}")
    assert any(e.get("ph") == "X" for e in json.loads(path.read_text())["traceEvents"])
    with pytest.raises(UsageError):
        ip.run_line_magic("epic", "nonsense")


# ----------------------------------------------------------------------------------------- views
def test_html_and_text_views_display_snapshots(ip):
    res, out = cell(ip, '%%epic --view html\nxs = [llm(f"h{i}") for i in range(3)]\nlen(xs)\n')
    assert res.result == 3
    html = [o.data["text/html"] for o in out.outputs if "text/html" in o.data]
    assert html and 'data-state="done"' in html[-1] and html[-1].count("<tr data-state=") == 3
    res, out = cell(ip, '%%epic --view text\nllm("t")\n')
    assert "[done]" in out.stdout and " llm " in out.stdout


def test_auto_view_outside_a_kernel_is_text(ip):
    with capture_output():
        ip.run_line_magic("epic", "config view=auto")
    try:
        _, out = cell(ip, '%%epic\nllm("auto")\n')
        assert "[done]" in out.stdout
    finally:
        with capture_output():
            ip.run_line_magic("epic", "config view=none")


def test_unload_and_reload(ip):
    ip.run_line_magic("unload_ext", "epic_kernel")
    assert "epic" not in ip.magics_manager.magics["cell"]
    assert epic_transform not in ip.input_transformers_cleanup
    ip.run_line_magic("load_ext", "epic_kernel")
    with capture_output():
        ip.run_line_magic("epic", "config backend=sim view=none")
    res, _ = cell(ip, '%%epic\nllm("back")\n')
    assert res.success


def test_help_names_the_cell_magic_and_the_trace_has_no_empty_lines():
    from epic_kernel.magics import EpicMagics

    from epic_kernel.llm.sim import SimBackend
    from epic_kernel.runtime.api import run as run_program

    doc = EpicMagics.epic_cell.__doc__
    assert doc.lstrip().startswith("%%epic [--backend B]") and "::" not in doc and "epic_cell" not in doc
    res = run_program('a = llm("x")\nb = llm(a)\n', backend=SimBackend(), trace="full")
    steps = [ev.data["text"] for ev in res.trace if ev.kind == "step"]
    assert steps and not any("None" in s for s in steps) and "enter the program" in steps[0]


# ------------------------------------------------------------------------ --step and --compare
def test_step_in_a_terminal_shell_records_and_shows_the_steps(ip):
    """The sync path: the stepper is displayed (even with the session's view=none: it is the
    point of the flag); `%epic step` gives the recording back."""
    res, out = cell(ip, '%%epic --backend sim --step\na = llm("x")\nb = llm("y")\nlen(a + b) > 0\n')
    assert res.success and res.result is True
    shown = [o.data for o in out.outputs]
    assert len(shown) == 1 and shown[0]["text/plain"].startswith("reduction stepper [done]: opportunistic")
    assert 'class="epic-stepper"' in shown[0]["text/html"]
    stepper = ip.run_line_magic("epic", "step")
    rec = stepper.recording
    assert [c[1] for c in rec["calls"]] == ["llm", "llm"] and rec["first_line"] == 2
    assert [s["r"] for s in rec["steps"]].count("resolve") == 2


def test_step_never_takes_answers_from_the_cache_unless_asked(ip):
    """A second run of a --step cell reduces as the first did (the cache would resolve every call
    at once and reorder the steps); --cache asks for it, and the stepper marks those calls."""
    src = '%%epic --backend sim --step\na = llm("cache me")\nb = llm("and me")\nlen(a + b) > 0\n'
    traces = []
    for _ in range(2):
        res, _out = cell(ip, src)
        assert res.success
        rec = ip.run_line_magic("epic", "step").recording
        traces.append([s["r"] for s in rec["steps"]])
        assert not any(c[8] for c in rec["calls"])
    assert traces[0] == traces[1]
    for _ in range(2):                    # the first fills the cache, the second takes from it
        res, out = cell(ip, src.replace("--step", "--step --cache"))
    rec = ip.run_line_magic("epic", "step").recording
    assert rec["calls"] and all(c[8] for c in rec["calls"])
    assert "from the answer cache" in out.outputs[-1].data["text/plain"]


def test_compare_in_a_terminal_shell_and_a_disagreement_fails_the_cell(ip):
    res, out = cell(ip, "%%epic --backend sim --compare --view text --out cmp_out\nxs = [llm(str(i)) for i in range(3)]\nlen(xs)\n")
    assert res.success and res.result == 3, out.stdout
    assert "strategy comparison" in out.stdout and "critical chain" in out.stdout
    assert ip.user_ns["cmp_out"].ok and len(ip.user_ns["xs"]) == 3
    assert ip.user_ns["_epic_last"].strategy == "opportunistic"

    async def busy(i):                    # a side effect the schedule changes
        busy.now += 1
        seen = busy.now
        await asyncio.sleep(0.01)
        busy.now -= 1
        return seen

    busy.now = 0
    ip.user_ns["busy"] = busy
    res, out = cell(ip, "%%epic --backend sim --compare\nmax([busy(i) for i in range(3)])\n")
    assert not res.success and type(res.error_in_exec).__name__ == "CompareMismatch"
    lines = res.error_in_exec._render_traceback_()
    assert "the strategies do not agree" in lines[0] and any("value differs" in ln for ln in lines)
    with pytest.raises(UsageError, match="drop --step"):
        ip.run_cell_magic("epic", "--backend sim --compare --step", "1\n")


def test_compare_progress_line_names_the_run_and_its_calls(ip):
    from epic_kernel.magics._teaching import _ProgressLine

    from epic_kernel.llm.compare import CompareProgress

    line = _ProgressLine("In [3]")
    with capture_output() as out:
        line.update(CompareProgress("warm-up", 0, 4, 0, None))
    html = out.outputs[0].data["text/html"]
    assert "warm-up run" in html and "0 calls done" in html and 'class="epic-compare-progress"' in html
    assert line.handle is not None
    assert CompareProgress("random", 3, 4, 5, 9).text() == "running random (3 of 4): 5/9 calls done"


def test_an_interrupted_and_a_failed_step_run_are_labelled_so(ip):
    """The stepper of an interrupted run says "interrupted" (not only "too long to record"), and a
    failed run's says "failed"; both count every call the run made."""
    from epic_kernel.widgets import stepper_text

    magics = ip.magics_manager.registry["EpicMagics"]
    src = 'n = 0\nwhile True:\n    n += len(llm(f"slow {n}"))\n'

    async def main():
        task = asyncio.ensure_future(magics.epic_async("--backend slow --step", src))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(EpicInterrupted):
            await task

    with capture_output():
        asyncio.run(main())
    rec = ip.run_line_magic("epic", "step").recording
    assert rec["state"] == "cancelled" and "[interrupted]" in stepper_text(rec)
    assert rec["calls_total"] == len(ip.user_ns["_epic_last"].calls)
    res, _ = cell(ip, '%%epic --backend sim --step\nx = llm("a")\nundefined_name + x\n')
    assert not res.success
    rec = ip.run_line_magic("epic", "step").recording
    assert "[failed]" in stepper_text(rec)
