"""Program order, and the point where a failing run stops.

Why: a failing program must stop where Python stops. Opportunistic evaluation runs statements out
of order, so a failure may be found while work that Python would have done before it is still
running, and work Python would never reach has already started. What decides is each piece of
work's place in *program order*, not when it ran. A node's place is its frame's keys from the root,
then its `site.uid` (graph.py): frames nest as bodies are instantiated and loops unfold, and within
a body uids grow in Python's evaluation order. Comparing two places is comparing those key
sequences lexicographically, where a prefix (the call that instantiated a body) is not after
anything inside it.

`StopPoint` is the first failure known so far in program order. Everything after it is work Python
never does: `after(frame, uid)` is asked before a body is instantiated, a call dispatched, a print
written or a finished call kept. A frame off the stop's own chain gets one verdict for everything
inside it, so the answers are memoized per frame and a deep unfolding is walked once, not once per
question.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StopPoint"]


class StopPoint:
    """The first failure in program order found so far: its place and its failure record."""

    __slots__ = ("frame", "uid", "rec", "_chain", "_memo")

    def __init__(self, frame: tuple, uid: int, rec: Any):
        self.frame = frame
        self.uid = uid
        self.rec = rec
        # id(frame on the stop's chain) -> (frame, the stop's key just below it)
        chain: dict[int, tuple[tuple, int]] = {id(frame): (frame, uid)}
        f = frame
        while f[0] is not None:
            up = f[0]
            chain[id(up)] = (up, f[1])
            f = up
        self._chain = chain
        self._memo: dict[int, tuple[tuple, bool]] = {}

    def after(self, frame: tuple, uid: int) -> bool:
        """Is the place (frame, uid) after the stop in program order? Equal places, and the calls
        that contain the stop, are not after it."""
        chain = self._chain
        e = chain.get(id(frame))
        if e is not None and e[0] is frame:
            return uid > e[1]
        memo = self._memo
        walked = []
        f = frame
        while True:
            m = memo.get(id(f))
            if m is not None and m[0] is f:
                verdict = m[1]
                break
            up = f[0]
            walked.append(f)
            if up is None:                     # another root: not part of this run's order
                verdict = False
                break
            e = chain.get(id(up))
            if e is not None and e[0] is up:
                verdict = f[1] > e[1]
                break
            f = up
        for g in walked:
            memo[id(g)] = (g, verdict)
        return verdict

    def key_at(self, depth: int) -> int | None:
        """The stop's key at `depth` frames below the root (1: its place in the program's body)."""
        keys = [self.uid]
        f = self.frame
        while f[0] is not None:
            keys.append(f[1])
            f = f[0]
        keys.reverse()          # keys[0]: the program body's key under the root, keys[1]: in the body
        return keys[depth] if depth < len(keys) else None

    def before(self, frame: tuple, uid: int) -> bool:
        """Is (frame, uid) strictly before the stop (so a failure there is the new first one)?"""
        if frame is self.frame and uid == self.uid:
            return False
        if self.after(frame, uid):
            return False
        # not after: before, equal, or an ancestor of the stop; only a different place that is
        # not an ancestor moves the stop
        e = self._chain.get(id(frame))
        if e is not None and e[0] is frame:
            return uid < e[1]
        return True
