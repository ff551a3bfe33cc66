"""Differential testing of epic against CPython: a generator of programs in the documented subset,
and a comparator that runs each one in CPython and in epic under every strategy.

Why: users trust `%%epic` because it reads as Python, so every program of the documented subset must
mean what CPython says it means (README "The language"), apart from the differences the README lists
under "Where epic differs from Python". Those are named, with their reason, in `EXCLUSIONS` (the one
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
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import random
import re
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import EpicError, EpicInternalError, EpicSyntaxError
from ..llm.base import LLMRequest, SamplingParams
from ..llm.sim import SimBackend
from ..runtime.api import run

__all__ = ["EXCLUSIONS", "STRATEGIES", "Exclusion", "Finding", "Outcome", "ProgramGen", "compare",
           "generate", "run_cpython", "run_epic", "sampled_variant", "shrink"]


# ---------------------------------------------------------------------------------- exclusions
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
    Exclusion("errors-keep-independent-work",
              "README 'Errors lose nothing': statements do not order effects, so after a failure the work "
              "that does not depend on it still runs (more prints, more calls) and every failure is "
              "reported. When CPython raises, the comparator only asks that epic fails too, with the same "
              "error type among its failures, that CPython's output is a prefix of epic's, and that "
              "CPython's calls are a sub-multiset of epic's. Work Python never reached may also be long "
              "(a string doubled in a loop whose assert failed): a run that had already failed as CPython "
              "did and then hits the deadline is this difference, not a hang.", "comparator"),
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


# ---------------------------------------------------------------------------------- host side
_SIM = SimBackend(latency=0)


def sim_text(prompt: str, max_tokens: int = 256) -> str:
    """What `llm(prompt, max_tokens=...)` returns on the sim backend (greedy): its pure answer."""
    req = LLMRequest.build(prompt, params=SamplingParams(max_tokens=int(max_tokens)))
    return _SIM.answer(req).text


def sim_chunks(prompt: str, max_tokens: int = 256) -> list[str]:
    """What `llm(prompt, stream=True, ...)` is once finished: the sim's word pieces, the last with the tail."""
    from ..llm.sim.answers import split_words
    words, tail = split_words(sim_text(prompt, max_tokens))
    chunks = words[:-1] + [words[-1] + tail] if words else ([tail] if tail else [])
    return [c for c in chunks if c]


def _aint(x: int) -> int:
    return (x * 7 + 3) % 23


def _astr(s: str) -> str:
    return s[::-1][:6] + "!"


def _alist(n: int) -> list[int]:
    return list(range(n % 4))


def _acheck(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"acheck refuses {x}")
    return x + 1


def _hint(x: int) -> int:
    return x * 3 - 1


def epic_namespace(log: list) -> dict[str, Any]:
    """Host functions for the epic run: async ones are dispatched (pending values), sync ones inline."""
    async def aint(x):
        log.append(("aint", x))
        await asyncio.sleep(0)
        return _aint(x)

    async def astr(s):
        log.append(("astr", s))
        await asyncio.sleep(0)
        return _astr(s)

    async def alist(n):
        log.append(("alist", n))
        await asyncio.sleep(0)
        return _alist(n)

    async def acheck(x):
        log.append(("acheck", x))
        await asyncio.sleep(0)
        return _acheck(x)

    def hint(x):
        return _hint(x)

    def happly(f, x):
        return f(x)

    return {"aint": aint, "astr": astr, "alist": alist, "acheck": acheck, "hint": hint, "happly": happly}


def cpython_namespace(log: list) -> dict[str, Any]:
    """The synchronous twins: the same answers, computed at once, with every call logged."""
    def llm(prompt, max_tokens=256, stream=False, **_sampling):
        log.append(("llm", prompt))
        return sim_chunks(prompt, max_tokens) if stream else sim_text(prompt, max_tokens)

    def aint(x):
        log.append(("aint", x))
        return _aint(x)

    def astr(s):
        log.append(("astr", s))
        return _astr(s)

    def alist(n):
        log.append(("alist", n))
        return _alist(n)

    def acheck(x):
        log.append(("acheck", x))
        return _acheck(x)

    def lines(s):
        return ("".join(s) if isinstance(s, list) else s).splitlines()

    return {"llm": llm, "aint": aint, "astr": astr, "alist": alist, "acheck": acheck, "hint": _hint,
            "happly": lambda f, x: f(x), "lines": lines}


# ---------------------------------------------------------------------------------- generator
INT, STR, BOOL, LINT, LSTR, DICT = "int", "str", "bool", "lint", "lstr", "dict"
TYPES = (INT, STR, BOOL, LINT, LSTR, DICT)
WORDS = ("ab", "cat", "x y", "Hi", "q", "", "a,b", "zz top")


@dataclass
class Scope:
    """What the code being written may read and write. Copied for each block, so names a block
    introduces are forgotten after it (Python would keep them, possibly unbound)."""

    vars: dict[str, str]                       # readable names and their types
    own: set[str]                              # names this function may assign
    funcs: dict[str, tuple[list[str], str, int]]  # name -> (param types, return type, #defaults)
    func: str | None = None                    # the function being written (its return type below)
    ret: str | None = None
    loop: bool = False                         # inside a loop of this function (break/continue allowed)
    accs: set[str] = field(default_factory=set)   # append-only accumulators (exclusion append-rebinds)
    depth: int = 0

    def child(self, **kw: Any) -> Scope:
        s = Scope(dict(self.vars), set(self.own), dict(self.funcs), self.func, self.ret, self.loop,
                  set(self.accs), self.depth + 1)
        for k, v in kw.items():
            setattr(s, k, v)
        return s


class ProgramGen:
    """Writes one program from a seeded `random.Random`. `size` scales statement counts and depth."""

    def __init__(self, seed: int, size: int = 3):
        self.r = random.Random(seed)
        self.size = size
        self.n = 0
        self.frozen: set[str] = set()          # exclusion late-binding: names a def/stored lambda read
        self.captures: list[set[str]] = []     # names read while writing each enclosing def

    # -- helpers --------------------------------------------------------------------------
    def p(self, prob: float) -> bool:
        return self.r.random() < prob

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def read(self, name: str) -> str:
        for c in self.captures:
            c.add(name)
        return name

    def names_of(self, sc: Scope, t: str) -> list[str]:
        return [n for n, ty in sc.vars.items() if ty == t and n not in sc.accs]

    def lit(self, t: str) -> str:
        r = self.r
        if t == INT:
            return str(r.randint(-3, 12))
        if t == STR:
            return repr(r.choice(WORDS))
        if t == BOOL:
            return r.choice(["True", "False"])
        if t == LINT:
            return "[" + ", ".join(str(r.randint(-4, 9)) for _ in range(r.randint(0, 4))) + "]"
        if t == LSTR:
            return "[" + ", ".join(repr(r.choice(WORDS)) for _ in range(r.randint(0, 3))) + "]"
        return "{" + ", ".join(f"{r.choice(WORDS)!r}: {r.randint(0, 9)}" for _ in range(r.randint(0, 3))) + "}"

    def small(self, sc: Scope, d: int) -> str:
        """A small non-negative int (repeat counts, ranges)."""
        if self.p(0.5):
            return str(self.r.randint(0, 4))
        return f"({self.expr(INT, sc, d)}) % {self.r.randint(2, 5)}"

    def prompt(self, sc: Scope, d: int) -> str:
        if self.p(0.4):
            return repr(self.r.choice(["a", "hi", "Say one word.", "q1", "name a colour"]))
        if self.p(0.5):
            return f'f"p {{{self.field(self.r.choice([INT, STR]), sc, d)}}}"'
        return self.expr(STR, sc, d)

    def field(self, t: str, sc: Scope, d: int) -> str:
        """An expression for an f-string field: Python 3.11 forbids quotes and backslashes there, and
        a leading brace would read as an escape, so anything with them falls back to a name or a number."""
        e = self.expr(t, sc, d)
        if any(ch in e for ch in "'\"\\{}"):
            names = self.names_of(sc, t)
            e = self.read(self.r.choice(names)) if names else ("7" if t == INT else "[1, 2]" if t == LINT else "3")
        return f"({e})" if not e.isidentifier() else e

    def pending(self, t: str, sc: Scope, d: int) -> str | None:
        """A value still in flight when the code around it is reduced."""
        r = self.r
        k = r.randint(1, 4)
        if t == STR:
            return r.choice([f"llm({self.prompt(sc, d)}, max_tokens={k})",
                             f"astr({self.expr(STR, sc, d)})",
                             f'"".join(llm({self.prompt(sc, d)}, max_tokens={k}, stream=True))'])
        if t == INT:
            return r.choice([f"len(llm({self.prompt(sc, d)}, max_tokens={k}))",
                             f"aint({self.expr(INT, sc, d)})",
                             f"aint({self.expr(INT, sc, d)})",
                             f"acheck({self.expr(INT, sc, d)})",          # fails for x % 7 == 3
                             f"len(llm({self.prompt(sc, d)}, max_tokens={k}, stream=True))"])
        if t == LINT:
            return f"alist({self.expr(INT, sc, d)})"
        if t == LSTR:
            return r.choice([f"llm({self.prompt(sc, d)}, max_tokens={k}).split()",
                             f"llm({self.prompt(sc, d)}, max_tokens={k}, stream=True)",
                             f"lines(llm({self.prompt(sc, d)}, max_tokens={k}))",
                             f"lines([{self.expr(STR, sc, d)}, llm({self.prompt(sc, d)}, max_tokens={k})])",
                             f"[llm({self.prompt(sc, d)}, max_tokens={k}), {self.expr(STR, sc, d)}]"])
        return None

    # -- lambdas (inline, consumed at once: no freezing needed) ---------------------------------
    def lam(self, arg_t: str, ret_t: str, sc: Scope, d: int) -> str:
        v = self.fresh("q")
        inner = sc.child(vars={**sc.vars, v: arg_t})
        body = self.expr(ret_t, inner, d)
        if self.p(0.05):                                   # print from a callback (issue 10 #6)
            body = f'print("k", {v}) or {body}'
        return f"lambda {v}: {body}"

    def pure_lam(self, arg_t: str, ret_t: str, sc: Scope, d: int) -> str:
        """A lambda that reads only its parameter: safe to hand to a lazy map/filter that a loop
        consumes while its body rebinds names (exclusion late-binding)."""
        v = self.fresh("q")
        bare = Scope(vars={v: arg_t}, own=set(), funcs={}, depth=sc.depth + 1)
        return f"lambda {v}: {self.expr(ret_t, bare, d)}"

    # -- expressions -------------------------------------------------------------------------
    def expr(self, t: str, sc: Scope, d: int) -> str:
        d = d - 1
        names = self.names_of(sc, t)
        if d <= 0 or self.p(0.15):
            if names and self.p(0.7):
                return self.read(self.r.choice(names))
            return self.lit(t)
        if self.p(0.12):
            pend = self.pending(t, sc, d)
            if pend:
                return pend
        if names and self.p(0.25):
            return self.read(self.r.choice(names))
        return getattr(self, f"e_{t}")(sc, d)

    def call_user(self, t: str, sc: Scope, d: int) -> str | None:
        fs = [(n, sig) for n, sig in sc.funcs.items() if sig[1] == t]
        if not fs:
            return None
        name, (params, _, ndef) = self.r.choice(fs)
        self.read(name)
        args = [self.expr(pt, sc, d) for pt in params]
        if ndef and self.p(0.4):
            args = args[: len(params) - self.r.randint(1, ndef)]
        if len(args) >= 1 and self.p(0.3):              # the last argument by keyword
            args[-1] = f"a{len(args) - 1}={args[-1]}"
        return f"{name}({', '.join(args)})"

    def cond(self, t: str, sc: Scope, d: int) -> str:
        return f"({self.expr(t, sc, d)} if {self.expr(BOOL, sc, d)} else {self.expr(t, sc, d)})"

    def e_int(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(25)
        if c == 0:
            return f"({e(INT, sc, d)} {r.choice(['+', '-', '*'])} {e(INT, sc, d)})"
        if c == 1:
            div = str(r.choice([2, 3, -4, 5])) if self.p(0.85) else e(INT, sc, d)
            return f"({e(INT, sc, d)} {r.choice(['//', '%'])} {div})"
        if c == 2:
            return f"len({e(r.choice([STR, LINT, LSTR, DICT]), sc, d)})"
        if c == 3:
            return f"sum({e(LINT, sc, d)})"
        if c == 4:
            x = self.fresh("g")
            inner = sc.child(vars={**sc.vars, x: INT})
            return f"sum({e(INT, inner, d)} for {x} in {e(LINT, sc, d)} if {e(BOOL, inner, d)})"
        if c == 5:
            f = r.choice(["min", "max"])
            default = f", default={e(INT, sc, d)}" if self.p(0.7) else ""
            return f"{f}({e(LINT, sc, d)}, key={self.lam(INT, INT, sc, d)}{default})"
        if c == 6:
            x = self.fresh("g")
            inner = sc.child(vars={**sc.vars, x: INT})
            return f"{r.choice(['min', 'max'])}(({e(INT, inner, d)} for {x} in {e(LINT, sc, d)}), default=0)"
        if c == 7:
            x = self.fresh("g")
            inner = sc.child(vars={**sc.vars, x: INT})
            return f"next(({e(INT, inner, d)} for {x} in {e(LINT, sc, d)} if {e(BOOL, inner, d)}), {e(INT, sc, d)})"
        if c == 8:
            return self.cond(INT, sc, d)
        if c == 9:
            u = self.call_user(INT, sc, d)
            if u:
                return u
            return f"hint({e(INT, sc, d)})"
        if c == 10:
            xs = e(LINT, sc, d)
            if self.p(0.8):
                return f"({xs}[{e(INT, sc, d)} % len({xs})] if {xs} else -1)"
            return f"{xs}[{e(INT, sc, d)}]"
        if c == 11:
            if self.p(0.85):
                return f"{e(DICT, sc, d)}.get({e(STR, sc, d)}, {e(INT, sc, d)})"
            return f"{e(DICT, sc, d)}[{e(STR, sc, d)}]"
        if c == 12:
            return f"({e(INT, sc, d)} {r.choice(['and', 'or'])} {e(INT, sc, d)})"
        if c == 13:
            return f"abs({e(INT, sc, d)})"
        if c == 14:
            return f"{e(STR, sc, d)}.find({e(STR, sc, d)})"
        if c == 15:                # a host function may keep its callback: freeze what it reads
            self.captures.append(set())
            lam = self.lam(INT, INT, sc, d)
            self.frozen |= self.captures.pop()
            return f"happly({lam}, {e(INT, sc, d)})"
        if c == 16:
            return f"len([{e(INT, sc, d)} for _ in range({self.small(sc, d)})])"
        if c == 17:
            return f"{e(LINT, sc, d)}.count({e(INT, sc, d)})"
        if c == 18:
            return f"int({e(BOOL, sc, d)})"
        if c == 19:
            return f"sum(map({self.lam(INT, INT, sc, d)}, {e(LINT, sc, d)}))"
        if c == 20:
            return f"len({{{e(INT, sc, d)}, {e(INT, sc, d)}, {e(INT, sc, d)}}})"
        if c == 22:
            return f"next({r.choice(['map', 'filter'])}({self.lam(INT, INT, sc, d)}, {e(LINT, sc, d)}), {e(INT, sc, d)})"
        if c == 23:
            return f"sum(filter({self.lam(INT, BOOL, sc, d)}, {e(LINT, sc, d)}))"
        if c == 24:
            return f"len(list(zip({e(LINT, sc, d)}, map({self.lam(INT, STR, sc, d)}, {e(LINT, sc, d)}))))"
        return f"(-{e(INT, sc, d)})"

    def e_str(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(16)
        if c == 0:
            return f"({e(STR, sc, d)} + {e(STR, sc, d)})"
        if c == 1:
            parts = []
            for _ in range(r.randint(1, 3)):
                t = r.choice([INT, STR, LINT])
                conv = r.choice(["", "", "!r"])
                spec = r.choice(["", "", ":>4" if t != LINT else "", ":03d" if t == INT else ""])
                parts.append(f"{{{self.field(t, sc, d)}{conv}{spec if not conv else ''}}}")
            return 'f"' + "-".join(parts) + '"'
        if c == 2:
            lo = e(INT, sc, d) if self.p(0.6) else ""
            hi = e(INT, sc, d) if self.p(0.6) else ""
            step = f":{r.choice([-1, 2, -2, 3, 3, 0] if self.p(0.1) else [-1, 2, -2, 3])}" if self.p(0.3) else ""
            return f"{e(STR, sc, d)}[{lo}:{hi}{step}]"
        if c == 3:
            return f"{e(STR, sc, d)}.{r.choice(['upper', 'strip', 'lower', 'title'])}()"
        if c == 4:
            return f"{e(STR, sc, d)}.join({e(LSTR, sc, d)})"
        if c == 5:
            return f"str({e(INT, sc, d)})"
        if c == 6:
            return f"({e(STR, sc, d)} * {r.randint(0, 3)})"
        if c == 7:
            return self.cond(STR, sc, d)
        if c == 8:
            u = self.call_user(STR, sc, d)
            if u:
                return u
            return f"{e(STR, sc, d)}.replace({e(STR, sc, d)}, {e(STR, sc, d)})"
        if c == 9:
            return f"({e(STR, sc, d)} {r.choice(['and', 'or'])} {e(STR, sc, d)})"
        if c == 10:
            return f"max({e(LSTR, sc, d)}, key={self.lam(STR, INT, sc, d)}, default={e(STR, sc, d)})"
        if c == 11:
            x = self.fresh("g")
            inner = sc.child(vars={**sc.vars, x: STR})
            return f"''.join({e(STR, inner, d)} for {x} in {e(LSTR, sc, d)})"
        if c == 12:
            return f'" ".join(sorted({e(LSTR, sc, d)}, key={self.lam(STR, INT, sc, d)}))'
        if c == 13:
            return f"{e(STR, sc, d)}.split({e(STR, sc, d)} or None)[0]" if self.p(0.2) else \
                f"({e(STR, sc, d)}.split() or ['-'])[0]"
        if c == 14:
            return self.pending(STR, sc, d) or self.lit(STR)
        return f"repr({e(r.choice([INT, STR, LINT]), sc, d)})"

    def e_bool(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(13)
        if c == 11:
            return f"{r.choice(['any', 'all'])}(map({self.lam(INT, BOOL, sc, d)}, {e(LINT, sc, d)}))"
        if c == 12:
            return f"{r.choice(['any', 'all'])}(filter({self.lam(STR, BOOL, sc, d)}, {e(LSTR, sc, d)}))"
        if c == 0:
            return f"({e(INT, sc, d)} {r.choice(['<', '<=', '==', '!=', '>', '>='])} {e(INT, sc, d)})"
        if c == 1:
            return f"({e(STR, sc, d)} {r.choice(['in', 'not in', '==', '<'])} {e(STR, sc, d)})"
        if c == 2:
            return f"({e(INT, sc, d)} {r.choice(['in', 'not in'])} {e(LINT, sc, d)})"
        if c == 3:
            return f"(not {e(BOOL, sc, d)})"
        if c == 4:
            return f"({e(BOOL, sc, d)} {r.choice(['and', 'or'])} {e(BOOL, sc, d)})"
        if c in (5, 6):
            x = self.fresh("g")
            inner = sc.child(vars={**sc.vars, x: INT})
            return f"{r.choice(['any', 'all'])}({e(BOOL, inner, d)} for {x} in {e(LINT, sc, d)})"
        if c == 7:
            return f"bool({e(r.choice([INT, STR, LINT, DICT]), sc, d)})"
        if c == 8:
            return f"({e(STR, sc, d)} in {e(DICT, sc, d)})"
        if c == 9:
            u = self.call_user(BOOL, sc, d)
            if u:
                return u
        return f"({e(LINT, sc, d)} == {e(LINT, sc, d)})"

    def e_lint(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(19)
        if c == 0:
            return "[" + ", ".join(e(INT, sc, d) for _ in range(r.randint(0, 3))) + "]"
        if c in (1, 2):
            x = self.fresh("c")
            src_t = r.choice([LINT, LINT, STR, LSTR])
            inner = sc.child(vars={**sc.vars, x: INT if src_t == LINT else STR})
            it = e(src_t, sc, d) if self.p(0.7) else f"range({self.small(sc, d)})"
            if it.startswith("range("):
                inner.vars[x] = INT
            flt = f" if {e(BOOL, inner, d)}" if self.p(0.5) else ""
            return f"[{e(INT, inner, d)} for {x} in {it}{flt}]"
        if c == 3:
            return f"list(range({self.small(sc, d)}, {self.small(sc, d) if self.p(0.5) else 6}))"
        if c == 4:
            rev = f", reverse={e(BOOL, sc, d)}" if self.p(0.3) else ""
            key = f", key={self.lam(INT, INT, sc, d)}" if self.p(0.6) else ""
            return f"sorted({e(LINT, sc, d)}{key}{rev})"
        if c == 5:
            return f"list(map({self.lam(INT, INT, sc, d)}, {e(LINT, sc, d)}))"
        if c == 6:
            return f"list(filter({self.lam(INT, BOOL, sc, d)}, {e(LINT, sc, d)}))"
        if c == 7:
            return f"({e(LINT, sc, d)} + {e(LINT, sc, d)})"
        if c == 8:
            lo = e(INT, sc, d) if self.p(0.6) else ""
            hi = e(INT, sc, d) if self.p(0.6) else ""
            step = f":{r.choice([-1, 2, -2, 3])}" if self.p(0.3) else ""
            return f"{e(LINT, sc, d)}[{lo}:{hi}{step}]"
        if c == 9:
            return f"list(reversed({e(LINT, sc, d)}))"
        if c == 10:
            i, v = self.fresh("i"), self.fresh("v")
            inner = sc.child(vars={**sc.vars, i: INT, v: INT})
            return f"[{e(INT, inner, d)} for {i}, {v} in enumerate({e(LINT, sc, d)})]"
        if c == 11:
            a, b = self.fresh("a"), self.fresh("b")
            inner = sc.child(vars={**sc.vars, a: INT, b: STR})
            return f"[{e(INT, inner, d)} for {a}, {b} in zip({e(LINT, sc, d)}, {e(LSTR, sc, d)})]"
        if c == 12:
            return f"[aint({e(INT, sc, d)}) for _ in range({r.randint(0, 3)})]"
        if c == 13:
            return f"sorted({{{e(INT, sc, d)} % 5 for _ in range({r.randint(0, 3)})}} | {{{e(INT, sc, d)}}})" \
                if self.p(0.5) else f"sorted({{{e(INT, sc, d)}, {e(INT, sc, d)}}})"
        if c == 14:
            return f"list({e(DICT, sc, d)}.values())"
        if c == 15:
            x, y = self.fresh("c"), self.fresh("c")
            inner = sc.child(vars={**sc.vars, x: INT, y: INT})
            return f"[{e(INT, inner, d)} for {x} in {e(LINT, sc, d)} for {y} in range({self.small(sc, d)})]"
        if c == 16:
            u = self.call_user(LINT, sc, d)
            if u:
                return u
        if c == 17:
            return self.cond(LINT, sc, d)
        return self.pending(LINT, sc, d) or self.lit(LINT)

    def e_lstr(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(11)
        if c == 0:
            return "[" + ", ".join(e(STR, sc, d) for _ in range(r.randint(0, 3))) + "]"
        if c == 1:
            x = self.fresh("c")
            inner = sc.child(vars={**sc.vars, x: STR})
            flt = f" if {e(BOOL, inner, d)}" if self.p(0.5) else ""
            return f"[{e(STR, inner, d)} for {x} in {e(LSTR, sc, d)}{flt}]"
        if c == 2:
            return f"{e(STR, sc, d)}.split()"
        if c == 3:
            return f"sorted({e(LSTR, sc, d)}, key={self.lam(STR, r.choice([INT, STR]), sc, d)})"
        if c == 4:
            return f"list({e(STR, sc, d)})[:{r.randint(0, 4)}]"
        if c == 5:
            return f"sorted({e(DICT, sc, d)})"
        if c == 6:
            x = self.fresh("c")
            inner = sc.child(vars={**sc.vars, x: STR})
            return f"[llm({self.prompt(inner, d)}, max_tokens={r.randint(1, 3)}) for {x} in {e(LSTR, sc, d)}]"
        if c == 7:
            return f"list(map({self.lam(STR, STR, sc, d)}, {e(LSTR, sc, d)}))"
        if c == 8:
            return f"({e(LSTR, sc, d)} + {e(LSTR, sc, d)})"
        if c == 9:
            u = self.call_user(LSTR, sc, d)
            if u:
                return u
        return self.pending(LSTR, sc, d) or self.lit(LSTR)

    def e_dict(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(4)
        if c == 0:
            return "{" + ", ".join(f"{e(STR, sc, d)}: {e(INT, sc, d)}" for _ in range(r.randint(0, 3))) + "}"
        if c == 1:
            k, v = self.fresh("k"), self.fresh("v")
            inner = sc.child(vars={**sc.vars, k: STR, v: INT})
            return f"{{{k}: {e(INT, inner, d)} for {k}, {v} in zip({e(LSTR, sc, d)}, {e(LINT, sc, d)})}}"
        if c == 2:
            x = self.fresh("c")
            inner = sc.child(vars={**sc.vars, x: STR})
            return f"{{{x}: len({x}) for {x} in {e(LSTR, sc, d)} if {e(BOOL, inner, d)}}}"
        return f"{{**{e(DICT, sc, d)}, {e(STR, sc, d)}: {e(INT, sc, d)}}}"

    # -- statements ---------------------------------------------------------------------------
    def late(self, name: str) -> bool:
        """Rebinding `name` now would be late binding (a def or a kept lambda already read it)."""
        return excluded("late-binding") and name in self.frozen

    def assignable(self, sc: Scope, t: str) -> list[str]:
        frozen = self.frozen if excluded("late-binding") else set()
        return [n for n, ty in sc.vars.items()
                if ty == t and n in sc.own and n not in frozen and n not in sc.accs]

    def block(self, sc: Scope, n: int) -> list[str]:
        out: list[str] = []
        for _ in range(n):
            out += self.stmt(sc)
        return out or ["pass"]

    def stmt(self, sc: Scope) -> list[str]:
        r = self.r
        d = 3 if sc.depth < 2 else 2
        deep = sc.depth < self.size
        c = r.randrange(20)
        if c <= 4:                                               # assignment
            t = r.choice(TYPES)
            old = self.assignable(sc, t)
            name = r.choice(old) if old and self.p(0.4) else self.fresh(t[0] + "v")
            rhs = self.expr(t, sc, d)
            if self.late(name):                  # the right side handed a host a lambda reading it
                name = self.fresh(t[0] + "v")
            sc.vars[name] = t
            sc.own.add(name)
            return [f"{name} = {rhs}"]
        if c == 5:                                               # augmented assignment
            t = r.choice([INT, STR, LINT])
            old = self.assignable(sc, t)
            if not old:
                return self.stmt(sc)
            name = r.choice(old)
            rhs = self.expr(t, sc, d)
            target = self.fresh(t[0] + "v") if self.late(name) else name
            if target != name:
                sc.vars[target] = t
                sc.own.add(target)
            if t == LINT and excluded("append-rebinds"):      # `xs += ys` extends in place in Python
                return [f"{target} = {name} + {rhs}"]
            op = r.choice(["+", "-", "*"]) if t == INT else "+"
            return [f"{name} {op}= {rhs}" if target == name else f"{target} = {name} {op} ({rhs})"]
        if c == 6:                                               # tuple unpacking
            t1, t2 = r.choice(TYPES[:3]), r.choice(TYPES[:3])
            a, b = self.fresh("u"), self.fresh("u")
            rhs = f"{self.expr(t1, sc, d)}, {self.expr(t2, sc, d)}"
            if t1 == t2 == INT and self.p(0.3):
                rhs = f"divmod({self.expr(INT, sc, d)}, {r.choice([3, 4, -5])})"
            sc.vars[a], sc.vars[b] = t1, t2
            sc.own |= {a, b}
            return [f"{a}, {b} = {rhs}"]
        if c == 7 and deep:                                      # if / elif / else
            out = [f"if {self.expr(BOOL, sc, d)}:"] + _indent(self.block(sc.child(), r.randint(1, 2)))
            if self.p(0.3):
                out += [f"elif {self.expr(BOOL, sc, d)}:"] + _indent(self.block(sc.child(), 1))
            if self.p(0.5):
                out += ["else:"] + _indent(self.block(sc.child(), r.randint(1, 2)))
            return out
        if c == 8 and deep:                                      # for
            return self.for_loop(sc, d)
        if c == 9 and deep:                                      # while
            w = self.fresh("w")
            sc.vars[w] = INT                                     # readable, never assigned by the body
            inner = sc.child(loop=True)
            body = [f"{w} += 1"] + self.block(inner, r.randint(1, 2))
            if self.p(0.4):
                body += [f"if {self.expr(BOOL, inner, d)}:", "    break"]
            return [f"{w} = 0", f"while {w} < {r.randint(0, 4)}:"] + _indent(body)
        if c == 10 and deep:                                     # def
            return self.define(sc)
        if c == 11:                                              # print
            args = [self.expr(r.choice(TYPES), sc, d) for _ in range(r.randint(0, 3))]
            kw = ""
            if self.p(0.2):
                kw = f", sep={r.choice(['-', '', ', '])!r}"
            if self.p(0.2):
                kw += f", end={r.choice(['!', '', chr(10)])!r}"
            if not args:
                kw = kw[2:]
            return [f"print({', '.join(args)}{kw})"]
        if c == 12:                                              # assert
            msg = f", {self.expr(STR, sc, d)}" if self.p(0.3) else ""
            if self.p(0.6):                                      # mostly true: a failed assert ends the program
                return [f"assert len(repr({self.expr(r.choice(TYPES), sc, d)})) > 0{msg}"]
            return [f"assert {self.expr(BOOL, sc, d)}{msg}"]
        if c == 13 and excluded("append-rebinds"):               # append to an accumulator
            accs = [a for a in sc.accs if a in sc.own]
            if not accs or self.p(0.3):
                a = self.fresh("acc")
                sc.vars[a] = LINT
                sc.own.add(a)
                sc.accs.add(a)
                return [f"{a} = []"]
            return [f"{r.choice(accs)}.append({self.expr(INT, sc, d)})"]
        if c == 14 and sc.loop:
            return [f"if {self.expr(BOOL, sc, d)}:", f"    {r.choice(['break', 'continue'])}"]
        if c == 15 and sc.func is not None and self.p(0.5):     # early return
            return [f"if {self.expr(BOOL, sc, d)}:", f"    return {self.expr(sc.ret, sc, d)}"]
        if c == 16 and sc.depth == 0 and self.p(0.3):          # recursion
            f = self.fresh("rec")
            n, acc = "a0", "a1"                                  # so a keyword call can name them
            inner = sc.child(vars={**sc.vars, n: INT, acc: INT})
            self.captures.append(set())
            step = self.expr(INT, inner, 2)
            self.frozen |= self.captures.pop()
            sc.funcs[f] = ([INT, INT], INT, 0)
            return [
                f"def {f}({n}, {acc}):", f"    if {n} <= 0 or {n} > 30:", f"        return {acc}",
                f"    return {f}({n} - 1, {acc} + ({step}) % 7)"]
        if c == 17:                                              # stored lambda
            if sc.loop:
                return self.stmt(sc)
            name = self.fresh("fn")
            v = "a0"                                             # so a keyword call can name it
            self.captures.append(set())
            inner = sc.child(vars={**sc.vars, v: INT}, func=name)
            body = self.expr(INT, inner, 3)
            self.frozen |= self.captures.pop()
            sc.funcs[name] = ([INT], INT, 0)
            return [f"{name} = lambda {v}: {body}"]
        a = self.fresh("xv")
        t = r.choice(TYPES)
        rhs = self.pending(t, sc, d) or self.expr(t, sc, d)
        sc.vars[a] = t
        sc.own.add(a)
        return [f"{a} = {rhs}"]

    def for_loop(self, sc: Scope, d: int) -> list[str]:
        r = self.r
        inner = sc.child(loop=True)
        c = r.randrange(7)
        if c == 6:                                # a lazy map/filter walked by the loop itself
            x = self.fresh("x")
            fn = r.choice(["map", "filter"])
            lam = self.pure_lam(INT, INT if fn == "map" else BOOL, sc, d)
            head = f"for {x} in {fn}({lam}, {self.expr(LINT, sc, d)}):"
            inner.vars[x] = INT
        elif c == 0:
            x = self.fresh("x")
            head = f"for {x} in {self.expr(LINT, sc, d)}:"
            inner.vars[x] = INT
        elif c == 1:
            x = self.fresh("x")
            head = f"for {x} in {self.expr(r.choice([STR, LSTR]), sc, d)}:"
            inner.vars[x] = STR
        elif c == 2:
            x = self.fresh("x")
            head = f"for {x} in range({self.small(sc, d)}):"
            inner.vars[x] = INT
        elif c == 3:
            i, x = self.fresh("i"), self.fresh("x")
            head = f"for {i}, {x} in enumerate({self.expr(LSTR, sc, d)}):"
            inner.vars[i], inner.vars[x] = INT, STR
        elif c == 4:
            k, v = self.fresh("k"), self.fresh("v")
            head = f"for {k}, {v} in {self.expr(DICT, sc, d)}.items():"
            inner.vars[k], inner.vars[v] = STR, INT
        else:
            a, b = self.fresh("x"), self.fresh("y")
            head = f"for {a}, {b} in zip({self.expr(LINT, sc, d)}, reversed({self.expr(LINT, sc, d)})):"
            inner.vars[a], inner.vars[b] = INT, INT
        body = self.block(inner, r.randint(1, 3))
        if self.p(0.3):
            body += [f"if {self.expr(BOOL, inner, d)}:", f"    {r.choice(['break', 'continue'])}"]
        # loop-carried names keep their (possibly rebound) values; names made in the body are dropped
        return [head] + _indent(body)

    def define(self, sc: Scope) -> list[str]:
        r = self.r
        name = self.fresh("f")
        nparams = r.randint(0, 3)
        ptypes = [r.choice([INT, INT, STR, LINT, LSTR]) for _ in range(nparams)]
        ret = r.choice([INT, INT, STR, LINT, LSTR, BOOL])
        ndef = r.randint(0, nparams) if self.p(0.4) else 0
        params = [f"a{k}" for k in range(nparams)]
        # parameters are named a0..an in every def, so a keyword call can name them
        inner = sc.child(func=name, ret=ret, loop=False)
        inner.depth = sc.depth + 1
        for pname in list(inner.vars):                          # parameter names shadow outer a*
            if pname.startswith("a") and pname[1:].isdigit():
                del inner.vars[pname]
        inner.own = set(params)
        inner.vars.update(zip(params, ptypes, strict=True))
        sig = []
        for k, pn in enumerate(params):
            if k < nparams - ndef:
                sig.append(pn)
                continue
            if ptypes[k] not in (INT, STR):              # no mutable defaults: such a parameter is an int
                ptypes[k] = INT
                inner.vars[pn] = INT
            sig.append(f"{pn}={self.lit(ptypes[k])}")
        self.captures.append(set())
        body = self.block(inner, r.randint(1, 3))
        body.append(f"return {self.expr(ret, inner, 3)}")
        self.frozen |= self.captures.pop()
        # a def in a loop body lands in that body's scope, dropped after it: it never outlives its
        # iteration (exclusion late-binding)
        sc.funcs[name] = (ptypes, ret, ndef)
        return [f"def {name}({', '.join(sig)}):"] + _indent(body)

    def program(self) -> str:
        sc = Scope(vars={}, own=set(), funcs={})
        lines: list[str] = []
        for _ in range(self.r.randint(2, 3 + 2 * self.size)):
            lines += self.stmt(sc)
        final_t = self.r.choice(TYPES)
        live = list(sc.vars)
        if live and self.p(0.6):
            picks = self.r.sample(live, min(len(live), self.r.randint(1, 3)))
            final = "(" + ", ".join(picks) + ("," if len(picks) == 1 else "") + ")"
        else:
            final = self.expr(final_t, sc, 3)
        lines.append(final)
        return "\n".join(lines) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return ["    " + ln for ln in lines] or ["    pass"]


def generate(seed: int, size: int = 0) -> str:
    """The program for one seed: the same seed always writes the same program. `size` 0 mixes
    sizes 2, 3 and 4 by seed (small programs shrink well, large ones nest deeply)."""
    return ProgramGen(seed, size or 2 + seed % 3).program()


# ---------------------------------------------------------------------------------- running
STRATEGIES: tuple[tuple[str, int], ...] = (
    ("opportunistic", 0), ("opportunistic-dfs", 0), ("random", 1), ("random", 2), ("random", 3), ("sequential", 0))


class Timeout(Exception):
    """A run took longer than the tester allows (a hang is a finding, not a stuck fuzz run)."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Timeout(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """What one run produced, in a form both sides share."""

    ok: bool
    value: Any = None
    value_repr: str = ""
    stdout: str = ""
    errors: list[str] = field(default_factory=list)   # exception type names (epic: every failure)
    error_text: str = ""
    kind: str = "ok"        # ok | error | syntax | internal | crash | timeout
    gist: str = ""          # the first error as "Type: message", without the program's own names
    calls: Counter = field(default_factory=Counter)   # (fn, args) multiset
    fns: Counter = field(default_factory=Counter)     # fn-name multiset


def _safe_repr(v: Any) -> str:
    try:
        return repr(v)
    except Exception as e:             # pragma: no cover - a value whose repr fails
        return f"<repr failed: {type(e).__name__}>"


def run_cpython(src: str, timeout: float = 10.0) -> Outcome:
    """Run the program as plain Python with the synchronous twins; value of the last expression."""
    tree = ast.parse(src)
    *stmts, last = tree.body
    log: list = []
    ns = cpython_namespace(log)
    out = io.StringIO()
    try:
        with _deadline(timeout), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            exec(compile(ast.Module(stmts, type_ignores=[]), "<cpython>", "exec"), ns)
            value = eval(compile(ast.Expression(last.value), "<cpython>", "eval"), ns)
    except Timeout as e:
        return Outcome(False, stdout=out.getvalue(), kind="timeout", error_text=str(e))
    except Exception as e:
        return Outcome(False, stdout=out.getvalue(), errors=[type(e).__name__], error_text=str(e),
                       kind="error", fns=Counter(f for f, _ in log))
    return Outcome(True, value, _safe_repr(value), out.getvalue(), fns=Counter(f for f, _ in log))


def run_epic(src: str, strategy: str, seed: int = 0, timeout: float = 30.0) -> Outcome:
    """Run the program in epic on the zero-latency sim with the async host functions. A run that
    takes `timeout` seconds (generated programs take milliseconds) is a "timeout" finding; the
    deadline fires in the main thread, possibly inside a host call, hence the check of failures."""
    log: list = []
    out = io.StringIO()
    try:
        with _deadline(timeout), contextlib.redirect_stdout(out):
            res = run(src, strategy=strategy, seed=seed, backend=SimBackend(latency=0),
                      namespace=epic_namespace(log), trace=False)
    except Timeout as e:
        return Outcome(False, stdout=out.getvalue(), kind="timeout", error_text=str(e))
    except EpicSyntaxError as e:
        return Outcome(False, stdout=out.getvalue(), errors=["EpicSyntaxError"], error_text=str(e), kind="syntax",
                       gist=_gist(e.msg.split("\n")[0]))
    except EpicInternalError as e:
        return Outcome(False, stdout=out.getvalue(), errors=["EpicInternalError"],
                       error_text=f"{e}", kind="internal", gist=_gist(f"EpicInternalError: {e}"))
    except EpicError as e:
        errs = [type(f.error).__name__ for f in e.failures]
        calls = Counter((c.fn, c.args_preview) for c in e.result.calls) if e.result is not None else Counter()
        internal = [f for f in e.failures if isinstance(f.error, EpicInternalError)]
        worst = internal[0] if internal else (e.failures[0] if e.failures else None)
        gist = _gist(f"{type(worst.error).__name__}: {worst.error}") if worst is not None else _gist(str(e))
        kind = "internal" if internal else "timeout" if "Timeout" in errs else "error"
        return Outcome(False, stdout=out.getvalue(), errors=errs, error_text=str(e), kind=kind, calls=calls,
                       fns=Counter(fn for (fn, _), k in calls.items() for _ in range(k)), gist=gist)
    except Exception as e:
        return Outcome(False, stdout=out.getvalue(), errors=[type(e).__name__], error_text=f"{type(e).__name__}: {e}",
                       kind="crash", gist=_gist(f"{type(e).__name__}: {e}"))
    calls = Counter((c.fn, c.args_preview) for c in res.calls)
    return Outcome(True, res.value, _safe_repr(res.value), out.getvalue(), calls=calls,
                   fns=Counter(c.fn for c in res.calls))


def _gist(text: str) -> str:
    """An error message with the program's generated names, numbers and long quotes blanked, so
    one mechanism gives one gist."""
    text = text.split("\n")[0][:120]
    text = re.sub(r"`[^`]*`", "`_`", text)
    text = re.sub(r"\b[a-z]+\d+\b", "_", text)
    text = re.sub(r"'[^']{12,}'", "'_'", text)
    return re.sub(r"-?\b\d+\b", "N", text)


@dataclass
class Finding:
    """One disagreement. `key` groups findings of one mechanism (what the shrinker keeps)."""

    kind: str
    strategy: str
    expected: str
    got: str
    gist: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(kind, gist): what groups findings of one mechanism."""
        return (self.kind, self.gist)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.strategy}: expected {self.expected} | got {self.got}"


def _error_matches(py: str, epic: list[str]) -> bool:
    """Sensible error-type equality: the same name, or a Python subclass relation (UnboundLocalError
    is a NameError; epic reports the exception Python would have raised)."""
    import builtins
    pt = getattr(builtins, py, None)
    for name in epic:
        if name == py:
            return True
        et = getattr(builtins, name, None)
        if isinstance(pt, type) and isinstance(et, type) and (issubclass(et, pt) or issubclass(pt, et)):
            return True
    return False


def _call_gist(want: Counter, got: Counter, extra: bool = True) -> str:
    """Which functions were called too few (-) or too many (+) times: missing calls and speculative
    ones are different mechanisms."""
    parts = [f"{fn}-" for fn in sorted(want) if got[fn] < want[fn]]
    if extra:
        parts += [f"{fn}+" for fn in sorted(got) if got[fn] > want[fn]]
    return " ".join(parts) or "same functions, other arguments"


def _sub_multiset(small: Counter, big: Counter) -> bool:
    return all(big[k] >= v for k, v in small.items())


def compare(src: str, strategies: tuple[tuple[str, int], ...] = STRATEGIES,
            expected: Outcome | None = None, cpython: bool = True) -> list[Finding]:
    """Every disagreement of `src` between CPython and epic, and between epic's strategies.
    `cpython=False` compares the strategies only (programs whose answers CPython cannot know:
    sampled calls, whose k-th sample is named by its place in epic's program)."""
    py = expected if expected is not None else run_cpython(src)
    findings: list[Finding] = []
    if py.kind == "timeout":
        return findings                      # the generator wrote a slow program: nothing to compare
    first: Outcome | None = None
    first_name = ""
    for strategy, seed in strategies:
        name = f"{strategy}/{seed}" if strategy == "random" else strategy
        ep = run_epic(src, strategy, seed)

        def add(kind: str, exp: str, got: str, name: str = name, gist: str = "") -> None:
            findings.append(Finding(kind, name, exp[:300], got[:300], gist))

        if (ep.kind == "timeout" and not py.ok and not excluded("errors-keep-independent-work")
                and _error_matches(py.errors[0], ep.errors)):
            continue                         # it failed as CPython did, then kept working (see the exclusion)
        if ep.kind in ("internal", "crash", "timeout", "syntax"):
            add(ep.kind, "ok" if py.ok else f"{py.errors}", ep.error_text.replace("\n", " "), gist=ep.gist)
            continue
        if not cpython:
            pass
        elif py.ok and not ep.ok:
            add("error-vs-ok", f"value {py.value_repr}", ep.error_text.replace("\n", " "), gist=ep.gist)
        elif not py.ok and ep.ok:
            add("ok-vs-error", f"{py.errors[0]}: {py.error_text}", f"value {ep.value_repr}", gist=py.errors[0])
        elif py.ok:
            if ep.value_repr != py.value_repr or type(ep.value) is not type(py.value):
                add("value", py.value_repr, ep.value_repr)
            if ep.stdout != py.stdout:
                add("stdout", repr(py.stdout), repr(ep.stdout))
            if ep.fns != py.fns:
                add("calls", str(dict(py.fns)), str(dict(ep.fns)), gist=_call_gist(py.fns, ep.fns))
        elif not excluded("errors-keep-independent-work"):
            if (py.errors[:1], py.stdout, py.fns) != (ep.errors[:1], ep.stdout, ep.fns):
                add("error-strict", f"{py.errors[0]} {py.stdout!r} {dict(py.fns)}",
                    f"{ep.errors} {ep.stdout!r} {dict(ep.fns)}")
        else:                                   # both failed: exclusion errors-keep-independent-work
            if not _error_matches(py.errors[0], ep.errors):
                add("error-type", f"{py.errors[0]}: {py.error_text}", ep.error_text.replace("\n", " "),
                    gist=f"{py.errors[0]} -> {ep.gist}")
            if not ep.stdout.startswith(py.stdout):
                add("stdout", repr(py.stdout), repr(ep.stdout))
            if not _sub_multiset(py.fns, ep.fns):
                add("calls", str(dict(py.fns)), str(dict(ep.fns)), gist=_call_gist(py.fns, ep.fns, extra=False))
        if first is None:
            first, first_name = ep, name
            continue
        # confluence across strategies (value, output, failure, the multiset of dispatched requests)
        if (ep.ok, ep.value_repr, sorted(set(ep.errors))) != (first.ok, first.value_repr, sorted(set(first.errors))):
            add("strategy-result", f"{first_name}: {first.value_repr or sorted(set(first.errors))}",
                ep.value_repr or str(sorted(set(ep.errors))))
        elif ep.stdout != first.stdout:
            add("strategy-stdout", f"{first_name}: {first.stdout!r}", repr(ep.stdout))
        if ep.calls != first.calls:
            add("strategy-calls", f"{first_name}: {dict(first.calls)}", str(dict(ep.calls)),
                gist=_call_gist(first.fns, ep.fns))
    return findings


def sampled_variant(src: str) -> str:
    """`src` with every `llm()` call sampled (temperature=1.0): compared across strategies only,
    which is what checks that the k-th sample is a function of the program, not of the schedule."""
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "llm":
            node.keywords.append(ast.keyword("temperature", ast.Constant(1.0)))
    return ast.unparse(tree) + "\n"


# ---------------------------------------------------------------------------------- shrinking
def _candidates(tree: ast.Module) -> Iterator[ast.Module]:
    """Smaller variants of `tree`: a statement removed, a compound statement replaced by its body,
    an expression replaced by one of its sub-expressions or a constant."""
    import copy
    bodies: list[tuple[Any, str]] = []
    for node in ast.walk(tree):
        for attr in ("body", "orelse"):
            b = getattr(node, attr, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                bodies.append((node, attr))
    for idx_b in range(len(bodies)):
        node, attr = bodies[idx_b]
        stmts = getattr(node, attr)
        for i in range(len(stmts)):
            if node is tree and i == len(stmts) - 1:
                continue                      # the final expression gives the value
            t2 = copy.deepcopy(tree)
            n2, a2 = _same(t2, tree, node), attr
            s2 = getattr(n2, a2)
            old = s2[i]
            del s2[i]
            if not s2 and a2 == "body":
                s2.append(ast.Pass())
            yield t2
            if isinstance(old, ast.If | ast.For | ast.While) and old.body:
                t3 = copy.deepcopy(tree)
                s3 = getattr(_same(t3, tree, node), attr)
                inner = s3[i].body
                s3[i:i + 1] = inner
                yield t3
    exprs = [n for n in ast.walk(tree) if isinstance(n, ast.expr)
             and not isinstance(n, ast.Name | ast.Constant | ast.FormattedValue | ast.JoinedStr)
             and not isinstance(getattr(n, "ctx", None), ast.Store)]
    for e in exprs:
        subs = [c for c in ast.iter_child_nodes(e) if isinstance(c, ast.expr)
                and not (isinstance(e, ast.Call) and c is e.func) and not isinstance(c, ast.Name)
                and not _lazy(c)        # exclusion lazy-map-filter: never unwrap list(map(...))
                and not isinstance(c, ast.Lambda)]   # nor turn a consumed lambda into a stored one
        for repl in [*subs, ast.Constant(1), ast.Constant("a"), ast.List([], ast.Load())]:
            t2 = copy.deepcopy(tree)
            target = _same(t2, tree, e)
            if _replace(t2, target, copy.deepcopy(repl)):
                yield t2


def _lazy(node: ast.AST) -> bool:
    if not excluded("lazy-map-filter"):
        return False
    return isinstance(node, ast.GeneratorExp) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("map", "filter", "zip", "enumerate", "reversed"))


def _same(new_tree: ast.AST, old_tree: ast.AST, old_node: ast.AST) -> Any:
    """The node of a deep copy at the position `old_node` has in the original (walk order is stable)."""
    for a, b in zip(ast.walk(old_tree), ast.walk(new_tree), strict=True):
        if a is old_node:
            return b
    raise LookupError


def _replace(tree: ast.AST, target: ast.AST, repl: ast.AST) -> bool:
    for parent in ast.walk(tree):
        for fname, val in ast.iter_fields(parent):
            if val is target:
                setattr(parent, fname, repl)
                return True
            if isinstance(val, list):
                for i, item in enumerate(val):
                    if item is target:
                        val[i] = repl
                        return True
    return False


def shrink(src: str, finding: Finding, budget: int = 400,
           keep: Callable[[str], bool] | None = None) -> str:
    """Greedy one-at-a-time reduction: accept any smaller program that still shows a finding with
    the same key; stop at a fixpoint or after `budget` tries."""
    strategies = tuple(s for s in STRATEGIES if (f"{s[0]}/{s[1]}" if s[0] == "random" else s[0]) == finding.strategy)
    strategies = strategies or STRATEGIES
    cpython = not finding.kind.startswith("sampled-")
    if not cpython:                           # found on `sampled_variant(src)`: strategies only
        finding = Finding(finding.kind.removeprefix("sampled-"), finding.strategy, finding.expected,
                          finding.got, finding.gist)

    orig_ok = run_cpython(src, timeout=2).ok

    def still(cand: str) -> bool:
        try:
            tree = ast.parse(cand)
        except SyntaxError:
            return False
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            return False
        if keep is not None:
            return keep(cand)
        py = run_cpython(cand, timeout=2)
        if orig_ok and not py.ok and finding.kind not in ("ok-vs-error", "error-type"):
            return False
        if py.ok and " at 0x" in py.value_repr:      # a function as the value: not a program we generate
            return False
        if cpython and finding.kind in ("ok-vs-error", "error-type") and py.ok:
            return False
        strat = strategies if not finding.kind.startswith("strategy") else (STRATEGIES[0], *strategies)
        return any(f.key == finding.key for f in compare(cand, strat, py, cpython=cpython))

    tries = 0
    best = src
    progress = True
    resume = 0
    while progress and tries < budget:
        progress = False
        for i, cand_tree in enumerate(_candidates(ast.parse(best))):
            if i < resume:
                continue
            tries += 1
            if tries > budget:
                break
            try:
                cand = ast.unparse(cand_tree) + "\n"
            except Exception:          # a replacement the unparser cannot write (inside an f-string)
                continue
            if len(cand) < len(best) and still(cand):
                best, resume = cand, max(0, i - 1)
                progress = True
                break
        else:
            if resume:                       # one full pass from the start before giving up
                resume, progress = 0, True
    return best
