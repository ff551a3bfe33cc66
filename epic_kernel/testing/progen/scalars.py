"""Generators of scalar expressions: ints, strings, bools (`ScalarGen`). Each `e_<type>` draws one
construct of that type; operands come from `expr`, so they nest and may be pending."""

from __future__ import annotations

from .base import BOOL, DICT, INT, LINT, LSTR, STR, GenBase, Scope

__all__ = ["ScalarGen"]


class ScalarGen(GenBase):
    """`e_int`, `e_str`, `e_bool`: one construct of the type per call, chosen by a `randrange`."""

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
        return self._e_int_more(c, sc, d)

    def _e_int_more(self, c: int, sc: Scope, d: int) -> str:
        """The rest of `e_int`'s constructs (drawn there as `c`): builtins over lists, host callbacks."""
        r = self.r
        e = self.expr
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

