"""The critical chain of a set of runs of one program: a lower bound on every run's wall time.

Why not replay the calls at their "solo" latencies and time the replay (what `--compare` did
before): a latency taken from one run is noisy and a replay's own overheads differ, so strategies
beat such a "bound" (by up to 7x on a small model, whose first run also paid one-off costs). A
bound a class can trust has to hold by construction, so it is built from the runs themselves:

* Calls are matched across runs by what they are, not when they ran: (function, place in the
  program, arguments), numbered in start order where those repeat. `CallRecord.path` (call site and
  loop path) is the same under every strategy, so matching needs no timing.
* Call A **precedes** call B when, in *every* run, B started only after A had ended. A call that
  needs another's answer always does (it cannot be dispatched before its arguments exist), so the
  data dependencies of the program are among these edges; an edge that is only an accident of
  every schedule tried is a constraint those schedules shared, and it keeps the bound honest for
  them.
* Each call counts at the **smallest latency** it had in any run.
* The bound is the longest chain A1 -> A2 -> ... under "precedes", summed at those latencies.

In any one run the chain's calls ran one after another inside the run, each for at least its
smallest latency, so that run's wall time is at least the chain's sum: `wall >= bound` for every run
taken into account, whatever the noise. (Only calls that finished in every run are used.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChainLink", "CriticalChain", "critical_chain"]


@dataclass(frozen=True)
class ChainLink:
    """One call of the chain: what it was and the smallest latency it had in any run."""

    fn: str
    line: int | None
    args: str
    latency: float

    def label(self) -> str:
        at = f" (line {self.line})" if self.line else ""
        return f"{self.fn}{at} {self.latency:.3f} s"


@dataclass(frozen=True)
class CriticalChain:
    """The bound (seconds) and the calls it is made of, in order."""

    seconds: float
    links: tuple[ChainLink, ...] = field(default_factory=tuple)
    calls: int = 0                         # calls matched in every run (the chain is drawn from these)

    def describe(self) -> str:
        return " → ".join(link.label() for link in self.links)


def _keys(calls: Sequence[Any]) -> dict[tuple, Any]:
    """key -> CallRecord for the calls that finished; repeats of one key numbered in start order."""
    seen: Counter[tuple] = Counter()
    out = {}
    for c in sorted(calls, key=lambda c: (c.start, c.id)):
        if c.state != "done" or c.end is None:
            continue
        base = (c.fn, c.path, c.site_line, c.args_preview)
        out[(*base, seen[base])] = c
        seen[base] += 1
    return out


def critical_chain(runs: Sequence[Any]) -> CriticalChain | None:
    """The critical chain over `runs` (RunResults of one program); None when no call finished in all."""
    if not runs:
        return None
    keyed = [_keys(r.calls) for r in runs]
    common = set(keyed[0]).intersection(*keyed[1:])
    if not common:
        return None
    # a topological order: in any run, a predecessor starts (and ends) before its successor starts
    order = sorted(common, key=lambda k: (keyed[0][k].start, keyed[0][k].id))
    lat = [min(kr[k].end - kr[k].start for kr in keyed) for k in order]
    starts = [[kr[k].start for k in order] for kr in keyed]
    ends = [[kr[k].end for k in order] for kr in keyed]
    best = list(lat)                        # longest chain ending at i, its length in seconds
    prev = [-1] * len(order)
    for j in range(len(order)):
        for i in range(j):
            if best[i] + lat[j] > best[j] and all(e[i] <= s[j] for e, s in zip(ends, starts, strict=True)):
                best[j] = best[i] + lat[j]
                prev[j] = i
    j = max(range(len(order)), key=best.__getitem__)
    total = math.floor(best[j] * 1e6) / 1e6     # rounded down: float sums never lift it past a wall
    chain = []
    while j >= 0:
        c = keyed[0][order[j]]
        chain.append(ChainLink(c.fn, c.user_line if c.user_line is not None else c.site_line, c.args_preview,
                               lat[j]))
        j = prev[j]
    return CriticalChain(seconds=total, links=tuple(reversed(chain)), calls=len(common))
