"""The program generator's vocabulary: the value types, the `Scope` of what code may read and write,
and `GenBase`, the seeded helpers every construct's generator uses (literals, pending values,
lambdas, calls of the program's own functions).

Why a chain of classes (`GenBase` <- `ScalarGen` <- `ContainerGen` <- `ProgramGen`): each construct's
generator is a method a reader can find by name, and the only call that goes up the chain is
`expr(t, ...)`, declared here. The order of the `random` draws is the program: a seed writes the
same program whatever the layout of this code, so a finding's seed stays reproducible.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BOOL", "DICT", "INT", "LINT", "LSTR", "STR", "TYPES", "WORDS", "GenBase", "Scope"]

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


class GenBase(ABC):
    """Writes one program from a seeded `random.Random`. `size` scales statement counts and depth."""

    def __init__(self, seed: int, size: int = 3):
        self.r = random.Random(seed)
        self.size = size
        self.n = 0
        self.frozen: set[str] = set()          # exclusion late-binding: names a def/stored lambda read
        self.captures: list[set[str]] = []     # names read while writing each enclosing def

    @abstractmethod

    def expr(self, t: str, sc: Scope, d: int) -> str:
        """An expression of type `t` at depth budget `d` (containers.py)."""

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

    def set_display(self) -> str:
        """A set display of int constants, as written where it is iterated: CPython folds it into a
        frozenset constant whose order can differ from a set built at run time (`{5, -3}`)."""
        r = self.r
        return "{" + ", ".join(str(r.randint(-6, 12)) for _ in range(r.randint(1, 4))) + "}"

    def cond(self, t: str, sc: Scope, d: int) -> str:
        return f"({self.expr(t, sc, d)} if {self.expr(BOOL, sc, d)} else {self.expr(t, sc, d)})"
