"""Differential testing of epic against CPython: a generator of programs in the documented subset,
and a comparator that runs each one in CPython and in epic under every strategy.

Why: users trust `%%epic` because it reads as Python, so every program of the documented subset must
mean what CPython says it means (README "The language"), apart from the differences the README lists
under "Where epic differs from Python". A failing program has no exclusion: the same error (type and
message), the same output, and CPython's calls among those epic started (docs/language.md). Those are named, with their reason, in `EXCLUSIONS` (the one
place): the generator consults it so it never writes such programs, the comparator so it tolerates
exactly that difference and nothing else.

Programs are written by a seeded `random.Random` (fast: thousands a minute) from a typed grammar:
nested defs (defaults, keyword arguments, closures, recursion, early return), lambdas handed to host
builtins (map, filter, sorted/min/max with key=, any/all/next/sum over generator expressions,
enumerate/zip/reversed), `if/elif/else`, `for` (break/continue), `while`, tuple unpacking, augmented
assignment, comprehensions with filters, f-strings, slices, displays, and/or, conditional
expressions, assert and print. Values that are still pending appear in every position: `llm()` on the
sim backend (in CPython a plain function computing the sim's deterministic answer) and `async def`
host functions (in CPython their synchronous twins) as container elements, captured variables,
arguments and iterables.

`compare(src)` returns the findings for one program; `shrink(src, finding)` cuts a failing program
down to a few lines while the same finding persists.

The package, by job: `exclusions` (the documented differences), `host` (the functions programs call,
for epic and for CPython), `base`/`scalars`/`containers`/`statements` (the generator, one class per
kind of construct), `runner` (running both sides and comparing), `shrink` (the shrinker).
"""

from __future__ import annotations

from .base import Scope
from .exclusions import EXCLUSIONS, Exclusion, excluded
from .host import cpython_namespace, epic_namespace, sim_chunks, sim_text
from .runner import STRATEGIES, Finding, Outcome, Timeout, compare, run_cpython, run_epic, sampled_variant
from .shrink import shrink
from .statements import ProgramGen, generate

__all__ = ["EXCLUSIONS", "STRATEGIES", "Exclusion", "Finding", "Outcome", "ProgramGen", "Scope", "Timeout",
           "compare", "cpython_namespace", "epic_namespace", "excluded", "generate", "run_cpython", "run_epic",
           "sampled_variant", "shrink", "sim_chunks", "sim_text"]
