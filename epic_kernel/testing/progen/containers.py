"""Generators of container expressions: lists of ints and strings, dicts (`ContainerGen`), and the
one dispatch `expr` that every generator calls for an operand of a given type."""

from __future__ import annotations

from .base import BOOL, DICT, INT, LINT, LSTR, STR, Scope
from .scalars import ScalarGen

__all__ = ["ContainerGen"]


class ContainerGen(ScalarGen):
    """`e_lint`, `e_lstr`, `e_dict`, and `expr`: a name, a literal, a pending value or a construct."""

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
        return _BY_TYPE[t](self, sc, d)

    def e_lint(self, sc: Scope, d: int) -> str:
        r = self.r
        e = self.expr
        c = r.randrange(21)
        if c in (19, 20):                    # a comprehension over a set display (a folded constant)
            x = self.fresh("c")
            inner = sc.child(vars={**sc.vars, x: INT})
            flt = f" if {e(BOOL, inner, d)}" if self.p(0.3) else ""
            return f"[{e(INT, inner, d) if self.p(0.5) else x} for {x} in {self.set_display()}{flt}]"
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


_BY_TYPE = {INT: ScalarGen.e_int, STR: ScalarGen.e_str, BOOL: ScalarGen.e_bool, LINT: ContainerGen.e_lint,
            LSTR: ContainerGen.e_lstr, DICT: ContainerGen.e_dict}
