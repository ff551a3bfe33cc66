"""Streams: `llm(stream=True)` and host async generators are lists whose tail is still pending.

The property that matters: a call that depends only on a prefix of a stream is dispatched while the
rest of the stream is still being produced (streaming Skeleton-of-Thought), and only then.
"""

from __future__ import annotations

import asyncio

import pytest

from epic_kernel import EpicError, run
from epic_kernel.llm.sim import SimBackend

SKELETON = "1. alpha\n2. beta\n3. gamma\n"


def _sim() -> SimBackend:
    return SimBackend(answers=[(r"^Skeleton", SKELETON), (r"^Expand (\w+)", r"about \1")], per_token_s=0.02)


STREAMING_SOT = '''
points = []
for line in lines(llm("Skeleton please", stream=True)):
    points.append(llm("Expand " + line[3:]))
points
'''


def test_expansions_start_while_the_skeleton_streams():
    res = run(STREAMING_SOT, backend=_sim())
    assert res.value == ["about alpha", "about beta", "about gamma"]
    skeleton, *expansions = res.calls
    assert skeleton.streamed == SKELETON and skeleton.state == "done"
    assert len(expansions) == 3
    # every expansion was dispatched before the skeleton's last chunk arrived
    assert all(e.start < skeleton.end for e in expansions)
    assert [e.start for e in expansions] == sorted(e.start for e in expansions)


def test_sequential_waits_for_the_whole_stream():
    res = run(STREAMING_SOT, backend=_sim(), strategy="sequential")
    assert res.value == ["about alpha", "about beta", "about gamma"]
    skeleton, *expansions = res.calls
    assert all(e.start >= skeleton.end for e in expansions)


def test_a_stream_used_whole_is_the_answer():
    src = 'whole = "".join(llm("Skeleton", stream=True))\nplain = llm("Skeleton")\n(whole, plain, len(lines(whole)))'
    res = run(src, backend=_sim())
    assert res.value == (SKELETON, SKELETON, 3)


def test_fold_and_map_over_a_stream():
    src = '''
n = 0
for chunk in llm("Skeleton", stream=True):
    n += 1
upper = [c.upper() for c in llm("Skeleton", stream=True)]
(n, "".join(upper))
'''
    res = run(src, backend=_sim())
    n, upper = res.value
    assert n > 3 and upper == SKELETON.upper()


def test_early_exit_loop_over_a_stream_stops_consuming():
    src = '''
first = None
for line in lines(llm("Skeleton", stream=True)):
    if "beta" in line:
        first = line
        break
first
'''
    assert run(src, backend=_sim()).value == "2. beta"


def test_host_async_generator_is_a_stream_and_a_failure_keeps_the_prefix():
    seen = []

    async def numbers(n, fail_at=None):
        for i in range(n):
            await asyncio.sleep(0.005)
            if i == fail_at:
                raise RuntimeError("source went away")
            yield i

    def note(x):
        seen.append(x)
        return x

    res = run("[note(x * 10) for x in numbers(4)]", namespace={"numbers": numbers, "note": note})
    assert res.value == [0, 10, 20, 30] and res.calls[0].state == "done"

    seen.clear()
    with pytest.raises(EpicError) as e:
        run("total = 0\nfor x in numbers(5, 3):\n    total += note(x)\ntotal",
            namespace={"numbers": numbers, "note": note})
    assert seen == [0, 1, 2]                            # the chunks before the failure were processed
    (failure,) = e.value.failures
    assert failure.fn == "numbers" and failure.site_line == 2
    assert "source went away" in str(e.value)


def test_cancelling_a_run_cancels_its_stream():
    started = asyncio.Event()

    async def forever():
        i = 0
        while True:
            started.set()
            await asyncio.sleep(0.01)
            yield i
            i += 1

    async def main():
        from epic_kernel import run_async
        task = asyncio.ensure_future(run_async("n = 0\nfor x in forever():\n    n += 1\nn",
                                               namespace={"forever": forever}))
        await started.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 3)

    asyncio.run(main())
