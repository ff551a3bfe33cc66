"""Which part of a prompt the call table shows.

Calls of one program often share a long head: a few-shot header, the instructions of a tool loop, a
question and its skeleton. A table that shows each prompt from its start shows that head on every
row, and a reader cannot tell the calls apart. So a prompt that shares at least `SHARED_MIN`
characters with a prompt sent shortly before it in the same run is shown from the line where the
two part ("…Continue and only continue the writing of point 3."), and so is the earlier one. A
prompt that is all head (the first turn of a tool loop, whose later turns only add lines) is shown
from its last line, and a prompt sent twice is shown as its twin is. `args_preview` keeps the prompt's start: it names the call (compare, caching)
and must not depend on which calls were sent before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["SHARED_MIN", "note_prompt", "shared_prefix", "shown_from"]

SHARED_MIN = 60      # a shorter shared head leaves the difference inside a preview's first words
WINDOW = 16          # how many earlier calls of the run a prompt is compared with
LINE_BACK = 80       # show from the start of the line where they part, if that line starts this close


def shared_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of `a` and `b` (a binary search over slice compares,
    which run in C: a prompt of thousands of characters costs a dozen compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def shown_from(text: str, at: int) -> int:
    """Where to start showing `text` when its first `at` characters are shared with another prompt:
    the start of the line it parts in (or of the word, in a long line), or of its last line when the
    whole text is shared."""
    body = text.rstrip()
    if at >= len(body):
        return body.rfind("\n") + 1
    line = text.rfind("\n", 0, at) + 1
    if at - line <= LINE_BACK:
        return line
    return text.rfind(" ", 0, at) + 1


def note_prompt(calls: Sequence[Any], rec: Any, text: str) -> None:
    """Record `rec`'s prompt `text` and set `rec.prompt_shown` (and its partner's, when the partner
    still shows its start) if it shares a long head with one of the run's last `WINDOW` calls."""
    rec.prompt_text = text
    best, partner = 0, None
    seen = 0
    for other in reversed(calls):
        if seen >= WINDOW:
            break
        if other is rec or not getattr(other, "prompt_text", ""):
            continue
        seen += 1
        n = shared_prefix(text, other.prompt_text)
        if n > best:
            best, partner = n, other
    if best < SHARED_MIN or partner is None:
        return
    if best == len(text) == len(partner.prompt_text):   # the same prompt again: shown as its twin is
        rec.prompt_shown = partner.prompt_shown
        return
    rec.prompt_shown = "…" + text[shown_from(text, best):].lstrip()
    if not partner.prompt_shown:
        partner.prompt_shown = "…" + partner.prompt_text[shown_from(partner.prompt_text, best):].lstrip()
