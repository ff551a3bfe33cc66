"""Focused behaviour tests of the opportunistic evaluator (DESIGN sections 3, 4 and 7).

No timing thresholds: parallelism is asserted on the order of events (which call intervals overlap),
never on wall time, except a generous bound on how fast a cancelled run lets go.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from epic_kernel import EpicError, EpicSyntaxError, epic, run, run_async, tool
from epic_kernel.runtime.api import RunHandle

ALL_STRATEGIES = [("opportunistic", 0), ("opportunistic-dfs", 0), ("random", 1), ("random", 7), ("sequential", 0)]


# --------------------------------------------------------------------------------------- helpers
class Recorder:
    """Async host functions that record what was dispatched (and what was cancelled)."""

    def __init__(self, latency: float = 0.002):
        self.latency = latency
        self.log: list[tuple] = []
        self.cancelled: list = []

    async def work(self, tag, *deps):
        self.log.append((tag, deps))
        await asyncio.sleep(self.latency)
        return tag + sum(deps)

    async def boom(self, x):
        self.log.append(("boom", (x,)))
        await asyncio.sleep(self.latency)
        raise ValueError(f"boom {x}")

    async def hang(self, i):
        self.log.append(("hang", (i,)))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise
        return i

    def ns(self, **extra) -> dict:
        return {"work": self.work, "boom": self.boom, "hang": self.hang, **extra}


def barrier(n: int, timeout: float = 10.0):
    """An async host function whose calls return only once `n` of them are running at the same time:
    a run that completes proves those calls were in flight together."""
    state = {"arrived": 0}
    all_in = asyncio.Event()

    async def meet(i):
        state["arrived"] += 1
        if state["arrived"] >= n:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout)
        return i

    return meet


def overlap_all(calls) -> bool:
    """Every pair of [start, end] intervals intersects."""
    return max(c.start for c in calls) < min(c.end for c in calls)


def disjoint(calls) -> bool:
    """No two intervals intersect (each call starts after the previous one ended)."""
    cs = sorted(calls, key=lambda c: c.start)
    return all(a.end <= b.start for a, b in zip(cs, cs[1:], strict=False))


def run_all(src: str, **kw):
    """Run under every strategy with a fresh Recorder; yields (strategy, result, recorder)."""
    for strategy, seed in ALL_STRATEGIES:
        rec = Recorder()
        res = run(src, strategy=strategy, seed=seed, namespace=rec.ns(), **kw)
        yield strategy, res, rec


# ---------------------------------------------------------------------------------- invariants
def test_untaken_branch_never_dispatches():
    src = """
a = work(1)
if a > 100:
    b = work(2, a)
    c = work(3, b)
else:
    b = work(4, a)
d = work(5) if a < 0 else 7
e = a > 0 or work(6)
f = a < 0 and work(7)
(b, d, e, f)
"""
    for strategy, res, rec in run_all(src):
        assert res.value == (5, 7, True, False), strategy
        assert sorted(t for t, _ in rec.log) == [1, 4], strategy
        assert sorted(c.args_preview for c in res.calls) == ["1", "4, 1"], strategy


def test_break_does_not_speculate_later_iterations():
    src = """
out = []
for i in range(10):
    r = work(i)
    if r >= 3:
        break
    out.append(r)
out
"""
    for strategy, res, rec in run_all(src):
        assert res.value == [0, 1, 2], strategy
        assert [t for t, _ in rec.log] == [0, 1, 2, 3], strategy


def test_dead_call_still_runs():
    src = """
work(1)
unused = work(2)
def helper(x):
    work(10, x)
    return x
helper(3)
5
"""
    for strategy, res, rec in run_all(src):
        assert res.value == 5, strategy
        assert sorted(t for t, _ in rec.log) == [1, 2, 10], strategy
        assert [c.state for c in res.calls] == ["done"] * 3, strategy


def test_dead_failing_call_is_reported():
    rec = Recorder()
    with pytest.raises(EpicError) as ei:
        run("boom(1)\n5", namespace=rec.ns())
    assert [f.site_line for f in ei.value.failures] == [1]
    assert ei.value.result.value is None             # Python stops at line 1: the program has no value


# ---------------------------------------------------------------------------------- parallelism
def test_opportunistic_runs_independent_calls_together():
    meet = barrier(8)
    res = run("[meet(i) for i in range(8)]", namespace={"meet": meet})
    assert res.value == list(range(8))
    assert len(res.calls) == 8 and all(c.state == "done" for c in res.calls)
    assert overlap_all(res.calls)


@pytest.mark.parametrize("strategy", ["opportunistic", "opportunistic-dfs", "random"])
def test_independent_calls_overlap_under_every_parallel_strategy(strategy):
    meet = barrier(8)
    src = """
acc = []
for i in range(4):
    acc.append(meet(i))
a = meet(10)
b = meet(11)
def two(x):
    return meet(x) + meet(x + 1)
(acc, a, b, two(20))
"""
    res = run(src, strategy=strategy, seed=3, namespace={"meet": meet})
    assert res.value == ([0, 1, 2, 3], 10, 11, 41)
    assert overlap_all(res.calls)


def test_sequential_runs_one_call_at_a_time():
    rec = Recorder(latency=0.003)
    res = run("[work(i) for i in range(8)]", strategy="sequential", namespace=rec.ns())
    assert res.value == list(range(8))
    assert len(res.calls) == 8
    assert disjoint(res.calls)
    assert [c.args_preview for c in sorted(res.calls, key=lambda c: c.start)] == [str(i) for i in range(8)]


def test_dependent_call_starts_after_its_argument_resolves():
    rec = Recorder(latency=0.02)
    res = run("a = work(1)\nb = work(2, a)\nc = work(3)\n(b, c)", namespace=rec.ns())
    assert res.value == (3, 3)
    by = {c.args_preview: c for c in res.calls}
    assert by["2, 1"].start >= by["1"].end
    assert by["3"].start < by["1"].end                # the independent one did not wait


def test_early_exit_loop_waits_for_the_exit_test():
    """A loop that can break runs its iterations one after another (no speculative calls)."""
    rec = Recorder()
    res = run("for i in range(4):\n    r = work(i)\n    if r < 0:\n        break\nr", namespace=rec.ns())
    assert res.value == 3
    assert disjoint(res.calls)


# --------------------------------------------------------------------------------------- errors
def test_a_failure_stops_the_run_where_python_stops():
    """The first failure in program order is the error; work before it completes, work after it
    never starts (sequential) or is cancelled and never kept as a result (concurrent strategies)."""
    src = """
a = work(1)
b = boom(a)
c = work(2, b)
d = work(3)
e = work(4, d)
(a, e)
"""
    for strategy, seed in ALL_STRATEGIES:
        rec = Recorder()
        with pytest.raises(EpicError) as ei:
            run(src, strategy=strategy, seed=seed, namespace=rec.ns())
        err = ei.value
        assert len(err.failures) == 1, strategy
        f = err.failures[0]
        assert f.fn == "boom" and f.site_line == 3 and isinstance(f.error, ValueError), strategy
        assert str(err).startswith("line 3: `b = boom(a)` boom(1) -> ValueError: boom 1"), strategy
        assert 2 not in [t for t, _ in rec.log], strategy          # c depends on b: never dispatched
        states = {(c.fn, c.args_preview): c.state for c in err.result.calls}
        assert states[("work", "1")] == "done" and states[("boom", "1")] == "failed", strategy
        # work(3) and work(4, 3) are after the failure: started only by a concurrent strategy before
        # the failure was known, and then cancelled or discarded, never kept as results
        assert states.get(("work", "3"), "cancelled") == "cancelled", strategy
        assert states.get(("work", "4, 3"), "cancelled") == "cancelled", strategy
        if strategy == "sequential":
            assert sorted(states) == [("boom", "1"), ("work", "1")]
        assert err.result.namespace == {"a": 1}, strategy


def test_calls_after_a_failure_are_cancelled_and_the_engine_sees_it():
    """A call in flight for work after the failure is cancelled (as an interrupt cancels it), and
    reported as cancelled, never as a result; one before it finishes and is kept."""
    rec = Recorder(latency=0.05)
    src = "x = work(7)\ny = boom(1)\nslow = [hang(i) for i in range(3)]\nslow"
    t0 = time.perf_counter()
    with pytest.raises(EpicError) as ei:
        run(src, namespace=rec.ns())
    assert time.perf_counter() - t0 < 10                  # hang() would take 30 s
    calls = ei.value.result.calls
    assert sorted((c.fn, c.state) for c in calls) == [("boom", "failed")] + [("hang", "cancelled")] * 3 + \
        [("work", "done")]
    assert sorted(rec.cancelled) == [0, 1, 2]             # the host coroutines saw the cancellation
    assert ei.value.result.namespace == {"x": 7}
    assert "3 cancelled" in str(ei.value).splitlines()[1]


@pytest.mark.parametrize("strategy", [s for s, _ in ALL_STRATEGIES[:1]] + ["sequential"])
def test_a_failing_program_prints_what_python_prints(strategy, capsys):
    src = "print('a', work(1))\nx = boom(2)\nprint('b')\nys = [work(i) for i in range(20)]\nprint('after', len(ys))"
    rec = Recorder()
    with pytest.raises(EpicError) as ei:
        run(src, strategy=strategy, namespace=rec.ns())
    assert capsys.readouterr().out == "a 1\n"
    assert isinstance(ei.value.failures[0].error, ValueError)
    assert not [c for c in ei.value.result.calls if c.fn == "work" and c.state == "done" and c.args_preview != "1"]


def test_the_first_failure_in_program_order_is_the_error():
    """A later failure found first (it needs no call) is secondary; the run raises Python's error."""
    rec = Recorder()
    src = "a = boom(work(1))\nb = 1 / 0\n(a, b)"
    with pytest.raises(EpicError) as ei:
        run(src, namespace=rec.ns())
    err = ei.value
    assert isinstance(err.failures[0].error, ValueError) and err.failures[0].site_line == 1
    assert [type(f.error) for f in err.failures[1:]] == [ZeroDivisionError]
    text = str(err).splitlines()
    assert text[0].startswith("line 1:") and "  also failed before the run stopped:" in text
    assert any("line 2: `b = 1 / 0` ZeroDivisionError" in t for t in text)


def test_a_runaway_loop_stops_at_its_error():
    """The loop body fails in its first iteration; the string it doubles never grows (issue 20)."""
    src = "d = {'a': 1}\ns = 'x'\nfor i in range(60):\n    y = d['b']\n    s = repr([s, s])\nprint(len(s))"
    for strategy, seed in ALL_STRATEGIES:
        with pytest.raises(EpicError) as ei:
            run(src, strategy=strategy, seed=seed)
        assert isinstance(ei.value.failures[0].error, KeyError) and ei.value.failures[0].site_line == 4
        # no iteration after the first ran its body (a 60-iteration doubling would take forever)
        assert ei.value.result.steps < 1000, (strategy, ei.value.result.steps)


def test_zero_calls_after_an_error_on_the_first_line(capsys):
    from epic_kernel.llm.sim import SimBackend
    src = "x = 1 / 0\nout = []\nfor i in range(30):\n    out = out + [llm(f'q{i}', max_tokens=4)]\nprint('after', len(out))"
    for strategy, seed in ALL_STRATEGIES:
        with pytest.raises(EpicError) as ei:
            run(src, strategy=strategy, seed=seed, backend=SimBackend(latency=0.01))
        assert [type(f.error) for f in ei.value.failures] == [ZeroDivisionError]
        if strategy != "random":        # a random order may start some before 1 / 0 is reduced: cancelled
            assert ei.value.result.calls == [], strategy
        assert {c.state for c in ei.value.result.calls} <= {"cancelled"}
    assert capsys.readouterr().out == ""


def test_inline_error_names_its_line():
    rec = Recorder()
    with pytest.raises(EpicError) as ei:
        run("x = 1\ny = work(2)\nz = x / 0\nw = z + 1\n(y, w)", namespace=rec.ns())
    err = ei.value
    assert len(err.failures) == 1                   # w only depends on the error: it is not a second failure
    assert err.failures[0].site_line == 3
    assert isinstance(err.failures[0].error, ZeroDivisionError)
    assert "line 3" in str(err)
    assert [c.state for c in err.result.calls] == ["done"]


def test_host_function_error_names_its_line():
    with pytest.raises(EpicError) as ei:
        run("a = 1\nb = int('not a number')\nb")
    assert ei.value.failures[0].site_line == 2
    assert isinstance(ei.value.failures[0].error, ValueError)


def test_name_error_at_the_use_line():
    with pytest.raises(EpicError) as ei:
        run("x = 1\n\ny = undefined_name + x\ny")
    f = ei.value.failures[0]
    assert isinstance(f.error, NameError) and "undefined_name" in str(f.error)
    assert f.site_line == 3


def test_name_error_inside_a_function_at_the_use_line():
    with pytest.raises(EpicError) as ei:
        run("def f(x):\n    y = x * 2\n    return y + missing\nf(1)")
    f = ei.value.failures[0]
    assert isinstance(f.error, NameError)
    assert f.site_line == 3


def test_unbound_local_error():
    src = "def f():\n    y = x + 1\n    x = 1\n    return y\nf()"
    with pytest.raises(EpicError) as ei:
        run(src)
    f = ei.value.failures[0]
    assert isinstance(f.error, UnboundLocalError)
    assert f.site_line == 2


def test_unbound_local_error_after_untaken_branch():
    src = "def f(c):\n    if c:\n        x = 1\n    return x + 1\nf(False)"
    with pytest.raises(EpicError) as ei:
        run(src)
    assert isinstance(ei.value.failures[0].error, UnboundLocalError)
    assert ei.value.failures[0].site_line == 4


def test_unbound_local_returned_as_value_raises():
    with pytest.raises(EpicError) as ei:
        run("def f():\n    y = x\n    x = 1\n    return y\nf()")
    assert isinstance(ei.value.failures[0].error, UnboundLocalError)


def test_unbound_name_as_program_value_raises():
    with pytest.raises(EpicError) as ei:
        run("if False:\n    x = 1\nx")
    assert isinstance(ei.value.failures[0].error, NameError)


def test_undefined_name_in_dead_statement_raises():
    with pytest.raises(EpicError) as ei:
        run("y = undefined_name\n5")
    assert isinstance(ei.value.failures[0].error, NameError)
    assert ei.value.failures[0].site_line == 1


@pytest.mark.parametrize(("call", "message"), [
    ("f(1)", "missing required argument 'b'"),
    ("f(1, 2, 3)", "takes 2 positional arguments but 3 were given"),
    ("f(1, c=3)", "unexpected keyword argument 'c'"),
    ("f(1, a=2)", "multiple values for argument 'a'"),
])
def test_wrong_arguments_to_epic_functions(call, message):
    src = f"def f(a, b):\n    return a + b\nok = f(1, 2)\n{call}"
    with pytest.raises(EpicError) as ei:
        run(src)
    f = ei.value.failures[0]
    assert isinstance(f.error, TypeError)
    assert message in str(f.error)
    assert f.site_line == 4
    assert ei.value.result.namespace["ok"] == 3


def test_syntax_error_before_anything_runs():
    rec = Recorder()
    with pytest.raises(EpicSyntaxError) as ei:
        run("a = work(1)\nclass C:\n    pass\n", namespace=rec.ns())
    assert ei.value.line == 2
    assert rec.log == []


# ------------------------------------------------------------------------------------ cancellation
def test_cancelling_run_async_cancels_in_flight_calls():
    rec = Recorder()
    handle = RunHandle()

    async def main():
        task = asyncio.create_task(run_async("done = work(1)\n[hang(i) for i in range(4)]",
                                             namespace=rec.ns(), handle=handle))
        for _ in range(2000):                      # until work(1) is done and all four hang() calls run
            await asyncio.sleep(0.005)
            calls = handle.ev.calls if handle.ev is not None else []
            if len(rec.log) == 5 and [c.state for c in calls if c.fn == "work"] == ["done"]:
                break
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - t0

    took = asyncio.run(main())
    assert took < 3.0
    assert sorted(rec.cancelled) == [0, 1, 2, 3]              # each coroutine saw CancelledError
    calls = handle.ev.calls
    states = sorted((c.fn, c.state) for c in calls)
    assert states == [("hang", "cancelled")] * 4 + [("work", "done")]
    assert all(c.end is not None for c in calls)


# ---------------------------------------------------------------------------------------- print
def test_prints_appear_in_program_order(capsys):
    async def val(x, delay):
        await asyncio.sleep(delay)
        return x

    src = """
a = val("first", 0.04)
b = val("second", 0.02)
c = val("third", 0.0)
print(a)
print(b)
for i in range(2):
    print("loop", i, c)
print("end")
"""
    expected = "first\nsecond\nloop 0 third\nloop 1 third\nend\n"
    for strategy, seed in ALL_STRATEGIES:
        res = run(src, strategy=strategy, seed=seed, namespace={"val": val})
        assert capsys.readouterr().out == expected, strategy
        assert [e.data["text"] for e in res.trace if e.kind == "print"] == expected.splitlines(keepends=True)


def test_print_does_not_block_later_calls(capsys):
    async def val(x, delay):
        await asyncio.sleep(delay)
        return x

    res = run("a = val('A', 0.05)\nprint(a)\nb = val('B', 0)\nb", namespace={"val": val})
    assert res.value == "B"
    assert capsys.readouterr().out == "A\n"
    by = {c.args_preview: c for c in res.calls}
    assert by["B, 0"].start < by["A, 0.05"].end


# ----------------------------------------------------------------------------------------- interop
@tool
def blocking_lookup(x):
    time.sleep(0.001)
    return (x, threading.current_thread().name)


def test_tool_runs_in_the_thread_pool():
    res = run("[blocking_lookup(i) for i in range(3)]", namespace={"blocking_lookup": blocking_lookup})
    assert [v for v, _ in res.value] == [0, 1, 2]
    assert all(name.startswith("epic-tool") for _, name in res.value)
    assert [c.fn for c in res.calls] == ["blocking_lookup"] * 3
    assert all(c.state == "done" for c in res.calls)


def test_plain_def_runs_inline():
    def inline(x):
        return (x, threading.current_thread().name)

    res = run("inline(1)", namespace={"inline": inline})
    assert res.value == (1, threading.current_thread().name)
    assert res.calls == []                          # not an external call
    assert res.rules["delta"] > 0


async def _halve(x):
    await asyncio.sleep(0.001)
    return x // 2


@epic
def halve_all(xs, extra=0):
    return [_halve(x) + extra for x in xs]


def test_epic_function_callable_from_python():
    assert halve_all([2, 4, 10]) == [1, 2, 5]
    assert halve_all([2, 4], extra=1) == [2, 3]
    res = halve_all.run([8, 6])
    assert res.value == [4, 3]
    assert [c.fn for c in res.calls] == ["_halve", "_halve"]


def test_epic_function_callable_from_epic_code():
    res = run("a = halve_all([2, 4])\nb = halve_all([6], extra=10)\n(a, b)", namespace={"halve_all": halve_all})
    assert res.value == ([1, 2], [13])
    assert sorted(c.fn for c in res.calls) == ["_halve"] * 3       # its calls join the caller's schedule
    assert res.rules["beta"] > 0


def test_program_functions_are_exported_and_callable_from_python():
    rec = Recorder()
    res = run("def bump(x, by=1):\n    return work(x) + by\nseven = bump(6)", namespace=rec.ns())
    assert res.namespace["seven"] == 7
    bump = res.namespace["bump"]
    assert callable(bump)
    assert bump(1) == 2
    assert bump(1, by=5) == 6
    assert bump(x=3) == 4


def test_program_function_called_from_python_inside_a_running_loop():
    rec = Recorder()
    res = run("def bump(x):\n    return work(x) + 1", namespace=rec.ns())
    bump = res.namespace["bump"]

    async def main():
        sync_value = bump(10)                        # blocking call while this loop runs
        async_value = await bump.acall(20)
        return sync_value, async_value

    assert asyncio.run(main()) == (11, 21)


def test_keyword_arguments_and_defaults():
    src = """
def f(a, b=10, c=100):
    return a + b + c
def g(x, y):
    return x - y
(f(1), f(1, 2), f(1, c=3), f(c=3, a=1, b=2), g(y=1, x=5))
"""
    assert run(src).value == (111, 103, 14, 6, 4)


def test_default_values_evaluated_once_at_definition():
    rec = Recorder()
    res = run("d = work(5)\ndef f(x, y=d):\n    return x + y\n(f(1), f(2), f(3, 0))", namespace=rec.ns())
    assert res.value == (6, 7, 3)
    assert [t for t, _ in rec.log] == [5]


def test_closures_capture_variables():
    rec = Recorder()
    src = """
base = work(100)
def make_adder(n):
    def add(x):
        return x + n + base
    return add
add3 = make_adder(3)
scale = 2
mul = lambda v: v * scale
([add3(i) for i in range(3)], mul(add3(0)))
"""
    for strategy, seed in ALL_STRATEGIES:
        res = run(src, strategy=strategy, seed=seed, namespace=rec.ns())
        assert res.value == ([103, 104, 105], 206), strategy


def test_top_level_function_reading_a_global_assigned_later_is_rejected():
    """Epic functions capture values when defined (there is no mutable global store), so reading a
    name the program assigns only after the def is a clear error, not Python's late binding."""
    with pytest.raises(EpicSyntaxError) as e:
        run("def g(x):\n    return x + K\nK = 5\ng(1)")
    assert e.value.line == 2


def test_top_level_function_reading_a_rebound_global_is_rejected():
    with pytest.raises(EpicSyntaxError) as e:
        run("K = 1\ndef g(x):\n    return x + K\nK = 5\ng(1)")
    assert e.value.line == 3


def test_recursion_fib():
    src = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\nfib(15)"
    res = run(src)
    assert res.value == 610
    assert res.rules["beta"] > 610


def test_recursion_with_external_calls():
    src = """
def count(n):
    if n == 0:
        return 0
    return work(1) + count(n - 1)
count(6)
"""
    for strategy, res, _ in run_all(src):
        assert res.value == 6, strategy
        assert len(res.calls) == 6, strategy


def test_mutual_recursion():
    src = """
def even(n):
    if n == 0:
        return True
    return odd(n - 1)
def odd(n):
    if n == 0:
        return False
    return even(n - 1)
(even(10), odd(7), even(3))
"""
    assert run(src).value == (True, True, False)


# ------------------------------------------------------------------------------- results and trace
def test_trace_json_has_one_complete_event_per_call():
    rec = Recorder()
    res = run("a = [work(i) for i in range(5)]\nprint(a[0])\nwork(9, a[1])", namespace=rec.ns())
    doc = json.loads(res.trace_json())
    events = doc["traceEvents"]
    xs = [e for e in events if e["ph"] == "X"]
    assert len(xs) == len(res.calls) == 6
    assert sorted(e["name"] for e in xs) == sorted(f"work #{c.id}" for c in res.calls)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    assert {e["args"]["line"] for e in xs} == {1, 3}
    assert any(e["ph"] == "i" and e["name"] == "print" for e in events)


def test_call_records():
    rec = Recorder()
    res = run("x = work(1)\n\ny = work(2, x)\ny", namespace=rec.ns())
    assert [c.id for c in res.calls] == [1, 2]
    c1, c2 = res.calls
    assert (c1.fn, c1.site_line, c1.state, c1.args_preview, c1.result_preview) == ("work", 1, "done", "1", "1")
    assert (c2.fn, c2.site_line, c2.state, c2.args_preview, c2.result_preview) == ("work", 3, "done", "2, 1", "3")
    assert c1.start <= c1.end <= c2.start <= c2.end
    assert res.elapsed > 0 and res.steps == sum(res.rules.values())


def test_rule_counts():
    rec = Recorder()
    src = """
def f(x):
    return x + 1
a, b = work(1), 2
c = f(a) * b
c
"""
    res = run(src, namespace=rec.ns())
    assert res.value == 4
    r = res.rules
    for rule in ("beta", "delta", "dispatch", "resolve", "project"):
        assert r[rule] > 0, rule
    assert r["dispatch"] == r["resolve"] == 1
    assert res.steps == sum(r.values())


def test_pure_program_dispatches_nothing():
    res = run("sum([i * i for i in range(10)])")
    assert res.value == 285
    assert res.calls == []
    assert res.rules["dispatch"] == res.rules["resolve"] == 0
    assert res.rules["delta"] > 0


def test_namespace_holds_top_level_names():
    rec = Recorder()
    res = run("a = work(1)\nb, c = a + 1, [a]\ndef f():\n    return 0\nfor i in range(3):\n    pass\n",
              namespace=rec.ns())
    ns = res.namespace
    assert (ns["a"], ns["b"], ns["c"], ns["i"]) == (1, 2, [1], 2)
    assert callable(ns["f"]) and ns["f"]() == 0
    assert res.value is None


def test_trace_modes():
    rec = Recorder()
    src = "a = work(1)\nb = a + 1\nb"
    full = run(src, namespace=rec.ns(), trace="full")
    steps = [e for e in full.trace if e.kind == "step"]
    assert steps and {e.data["rule"] for e in steps} >= {"beta", "dispatch", "delta"}
    kinds = [e.kind for e in full.trace]
    assert kinds[0] == "run.start" and kinds[-1] == "run.end"
    assert kinds.index("call.dispatch") < kinds.index("call.done")
    quiet = run(src, namespace=rec.ns(), trace=False)
    assert quiet.trace == [] and quiet.value == 2 and len(quiet.calls) == 1


def test_full_trace_has_one_step_event_per_reduction_step():
    rec = Recorder()
    res = run("a = work(1)\nb = a + 1\nb", namespace=rec.ns(), trace="full")
    steps = [e for e in res.trace if e.kind == "step"]
    assert [e.data["step"] for e in steps] == list(range(1, res.steps + 1))
    assert "resolve" in {e.data["rule"] for e in steps}


def test_observers_see_events_and_cannot_break_the_run():
    rec = Recorder()
    seen: list[str] = []

    def good(ev):
        seen.append(ev.kind)

    def bad(ev):
        raise RuntimeError("observer bug")

    res = run("[work(i) for i in range(3)]", namespace=rec.ns(), observers=[bad, good])
    assert res.value == [0, 1, 2]
    assert seen.count("call.dispatch") == 3 and seen.count("call.done") == 3
    assert seen[-1] == "run.end"


def test_run_works_inside_a_running_event_loop():
    rec = Recorder()

    async def main():
        return run("[work(i) for i in range(3)]", namespace=rec.ns()).value

    assert asyncio.run(main()) == [0, 1, 2]


def test_run_async_result():
    rec = Recorder()
    res = asyncio.run(run_async("x = work(2)\nx * 10", namespace=rec.ns(), strategy="opportunistic-dfs"))
    assert res.value == 20 and res.namespace == {"x": 2} and res.strategy == "opportunistic-dfs"


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError):
        run("1", strategy="depth-first-please")


# --------------------------------------------------------------------------------------------- llm
def test_llm_sim_backend_batches_calls():
    res = run('[llm(f"q{i}") for i in range(8)]', backend="sim")
    assert len(res.value) == 8
    assert all(isinstance(v, str) and v for v in res.value)
    assert len(res.calls) == 8
    assert all(c.fn == "llm" and c.state == "done" for c in res.calls)
    assert all(c.tokens_out > 0 for c in res.calls)
    batch_ids = [c.batch_id for c in res.calls]
    assert all(b is not None for b in batch_ids)
    assert len(set(batch_ids)) < len(batch_ids)
    assert sorted(c.args_preview for c in res.calls) == sorted(f"q{i}" for i in range(8))


def test_llm_sim_is_deterministic_across_strategies():
    src = 'a = llm("name a colour", max_tokens=8)\nb = llm(f"describe {a}", max_tokens=8)\n(a, b)'
    values = {s: run(src, backend="sim", strategy=s).value for s in ("opportunistic", "sequential")}
    assert values["opportunistic"] == values["sequential"]
