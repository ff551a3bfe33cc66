"""The documented differences between epic and Python (README "Where epic differs from Python"),
each named with its reason and with how the tester keeps out of its way.

Why one place: the generator consults it so it never writes such programs, the comparator so it
tolerates exactly that difference and nothing else; `EPIC_FUZZ_INCLUDE=late-binding,...` turns an
exclusion off to watch the tester flag it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["EXCLUSIONS", "Exclusion", "excluded"]


@dataclass(frozen=True)
class Exclusion:
    """A documented difference between epic and Python, and how the tester keeps out of its way."""

    name: str
    reason: str          # why epic differs (the README's words)
    how: str             # "generator": such programs are never written; "comparator": tolerated


EXCLUSIONS: dict[str, Exclusion] = {e.name: e for e in (
    Exclusion("append-rebinds",
              "README: `xs.append(v)` rebinds `xs` (lists are values); an alias or a caller's list keeps "
              "the old value. `xs += ys` on a list is the same (Python extends in place). The generator "
              "appends only to accumulators that are never aliased, passed or captured, reads them only "
              "after the appends, and writes `xs = xs + ys` for lists.", "generator"),
    Exclusion("in-place-methods",
              "README: in-place methods other than append/extend (sort, pop, update, ...) are rejected. "
              "The generator never calls them.", "generator"),
    Exclusion("late-binding",
              "README: functions capture values when they are defined; reading a name assigned only after "
              "the def is rejected, and a lambda made in a loop keeps that iteration's value. The generator "
              "never rebinds a name after a def or a stored lambda read it, and never lets a function "
              "made in a loop body outlive its iteration.", "generator"),
    Exclusion("iterators-are-values",
              "README: zip/enumerate/reversed, map/filter of an epic function and generator expressions are "
              "values; iterating the same one twice gives its items twice instead of nothing. The generator "
              "never binds an iterator to a name: each is consumed by the call or loop it is written in.",
              "generator"),
    Exclusion("host-mutation",
              "README: host objects mutated by host functions are not ordered by statements. The "
              "generator's host functions are pure.", "generator"),
    Exclusion("list-identity",
              "README: lists are values, `is` between lists is False. The generator never uses `is`.",
              "generator"),
    Exclusion("callback-kept-by-host",
              "README (late binding): a lambda is captured by value unless the call it is passed to uses it "
              "up; a host function may keep it, so a lambda handed to one (happly) reading a name rebound "
              "later is rejected. The generator freezes the names such a lambda reads.", "generator"),
    Exclusion("lazy-map-filter",
              "Python's map/filter/generator objects are lazy; epic closures capture values, so a lazy "
              "iterator consumed after a rebinding differs (a case of late binding). The generator "
              "consumes every map/filter/generator expression where it is made.", "generator"),
)}


# EPIC_FUZZ_INCLUDE=late-binding,append-rebinds turns exclusions off, to watch the tester flag them
_INCLUDED = {n for n in os.environ.get("EPIC_FUZZ_INCLUDE", "").split(",") if n}


def excluded(name: str) -> bool:
    """Whether the documented difference `name` is kept out of the test (a typo is a KeyError, not
    a silently disabled exclusion)."""
    return EXCLUSIONS[name] is not None and name not in _INCLUDED
