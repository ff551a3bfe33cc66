"""Generators of statements, loops, defs and whole programs (`ProgramGen`), and `generate(seed)`.

Why the care with names: the exclusions (exclusions.py) are kept out here, as the code is written:
a name a def or a kept lambda read is never rebound (late-binding), accumulators are only appended
to (append-rebinds), and functions made in a loop body never outlive their iteration.
"""

from __future__ import annotations

from .base import BOOL, DICT, INT, LINT, LSTR, STR, TYPES, Scope
from .containers import ContainerGen
from .exclusions import excluded

__all__ = ["ProgramGen", "generate"]


class ProgramGen(ContainerGen):

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
        """One statement (a few lines for a compound one), its kind drawn first."""
        r = self.r
        d = 3 if sc.depth < 2 else 2
        deep = sc.depth < self.size
        c = r.randrange(22)
        if c >= 20:
            return self._curried(sc, d)
        if c <= 4:
            return self._assign(sc, d)
        if c == 5:
            return self._augassign(sc, d)
        if c == 6:
            return self._unpack(sc, d)
        if c == 7 and deep:
            return self._if(sc, d)
        if c == 8 and deep:
            return self.for_loop(sc, d)
        if c == 9 and deep:
            return self._while(sc, d)
        if c == 10 and deep:
            return self.define(sc)
        if c == 11:
            return self._print(sc, d)
        if c == 12:
            return self._assert(sc, d)
        if c == 13 and excluded("append-rebinds"):
            return self._append(sc, d)
        if c == 14 and sc.loop:
            return [f"if {self.expr(BOOL, sc, d)}:", f"    {r.choice(['break', 'continue'])}"]
        if c == 15 and sc.func is not None and self.p(0.5):     # early return
            return [f"if {self.expr(BOOL, sc, d)}:", f"    return {self.expr(sc.ret, sc, d)}"]
        if c == 16 and sc.depth == 0 and self.p(0.3):          # recursion
            return self._recursion(sc)
        if c == 17:
            return self._stored_lambda(sc)
        return self._pending_assign(sc, d)

    def _assign(self, sc: Scope, d: int) -> list[str]:
        """name = value: a new name, or (sometimes) one this function already owns."""
        r = self.r
        t = r.choice(TYPES)
        old = self.assignable(sc, t)
        name = r.choice(old) if old and self.p(0.4) else self.fresh(t[0] + "v")
        rhs = self.expr(t, sc, d)
        if self.late(name):                  # the right side handed a host a lambda reading it
            name = self.fresh(t[0] + "v")
        sc.vars[name] = t
        sc.own.add(name)
        return [f"{name} = {rhs}"]

    def _augassign(self, sc: Scope, d: int) -> list[str]:
        """name op= value (a list is `xs = xs + ys`: exclusion append-rebinds)."""
        r = self.r
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

    def _unpack(self, sc: Scope, d: int) -> list[str]:
        """a, b = x, y (or divmod)."""
        r = self.r
        t1, t2 = r.choice(TYPES[:3]), r.choice(TYPES[:3])
        a, b = self.fresh("u"), self.fresh("u")
        rhs = f"{self.expr(t1, sc, d)}, {self.expr(t2, sc, d)}"
        if t1 == t2 == INT and self.p(0.3):
            rhs = f"divmod({self.expr(INT, sc, d)}, {r.choice([3, 4, -5])})"
        sc.vars[a], sc.vars[b] = t1, t2
        sc.own |= {a, b}
        return [f"{a}, {b} = {rhs}"]

    def _if(self, sc: Scope, d: int) -> list[str]:
        """if / elif / else."""
        r = self.r
        out = [f"if {self.expr(BOOL, sc, d)}:"] + _indent(self.block(sc.child(), r.randint(1, 2)))
        if self.p(0.3):
            out += [f"elif {self.expr(BOOL, sc, d)}:"] + _indent(self.block(sc.child(), 1))
        if self.p(0.5):
            out += ["else:"] + _indent(self.block(sc.child(), r.randint(1, 2)))
        return out

    def _while(self, sc: Scope, d: int) -> list[str]:
        """A counter loop whose counter the body only reads, sometimes with a break."""
        r = self.r
        w = self.fresh("w")
        sc.vars[w] = INT                                     # readable, never assigned by the body
        inner = sc.child(loop=True)
        body = [f"{w} += 1"] + self.block(inner, r.randint(1, 2))
        if self.p(0.4):
            body += [f"if {self.expr(BOOL, inner, d)}:", "    break"]
        return [f"{w} = 0", f"while {w} < {r.randint(0, 4)}:"] + _indent(body)

    def _print(self, sc: Scope, d: int) -> list[str]:
        """print(...) with sep=/end= sometimes."""
        r = self.r
        args = [self.expr(r.choice(TYPES), sc, d) for _ in range(r.randint(0, 3))]
        kw = ""
        if self.p(0.2):
            kw = f", sep={r.choice(['-', '', ', '])!r}"
        if self.p(0.2):
            kw += f", end={r.choice(['!', '', chr(10)])!r}"
        if not args:
            kw = kw[2:]
        return [f"print({', '.join(args)}{kw})"]

    def _assert(self, sc: Scope, d: int) -> list[str]:
        """assert, mostly true: a failed assert ends the program."""
        r = self.r
        msg = f", {self.expr(STR, sc, d)}" if self.p(0.3) else ""
        if self.p(0.6):                                      # mostly true: a failed assert ends the program
            return [f"assert len(repr({self.expr(r.choice(TYPES), sc, d)})) > 0{msg}"]
        return [f"assert {self.expr(BOOL, sc, d)}{msg}"]

    def _append(self, sc: Scope, d: int) -> list[str]:
        """An append-only accumulator: made, or appended to (exclusion append-rebinds)."""
        r = self.r
        accs = sorted(a for a in sc.accs if a in sc.own)      # not set order: a seed is one program
        if not accs or self.p(0.3):
            a = self.fresh("acc")
            sc.vars[a] = LINT
            sc.own.add(a)
            sc.accs.add(a)
            return [f"{a} = []"]
        return [f"{r.choice(accs)}.append({self.expr(INT, sc, d)})"]

    def _recursion(self, sc: Scope) -> list[str]:
        """A recursive def of two ints, bounded."""
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

    def _stored_lambda(self, sc: Scope) -> list[str]:
        """name = lambda a0: ..., never in a loop (exclusion late-binding)."""
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

    def _curried(self, sc: Scope, d: int) -> list[str]:
        """`mk(x)(g(y))`: a callee that is itself a call, both printing, so the order Python
        evaluates them in (the callee's call first, then the argument) shows in the output."""
        mk, g, v = self.fresh("mk"), self.fresh("g"), self.fresh("cv")
        inner = "print('in', a1) or a1 + a0" if self.p(0.3) else "a1 * 2 + a0"
        lines = [f"def {mk}(a0):", "    print('mk', a0)", f"    return lambda a1: {inner}",
                 f"def {g}(a0):", "    print('arg', a0)", "    return a0 - 1"]
        call = f"{mk}({self.expr(INT, sc, d)})({g}({self.expr(INT, sc, d)}))"
        sc.vars[v] = INT
        sc.own.add(v)
        if self.p(0.3):
            return lines + [f"print({call})", f"{v} = 0"]
        return lines + [f"{v} = {call}"]

    def _pending_assign(self, sc: Scope, d: int) -> list[str]:
        """A name bound to a value still in flight (or any expression)."""
        r = self.r
        a = self.fresh("xv")
        t = r.choice(TYPES)
        rhs = self.pending(t, sc, d) or self.expr(t, sc, d)
        sc.vars[a] = t
        sc.own.add(a)
        return [f"{a} = {rhs}"]

    def for_loop(self, sc: Scope, d: int) -> list[str]:
        r = self.r
        inner = sc.child(loop=True)
        c = r.randrange(8)
        if c == 7:                                # a set display: a frozenset constant in CPython
            x = self.fresh("x")
            head = f"for {x} in {self.set_display()}:"
            inner.vars[x] = INT
        elif c == 6:                              # a lazy map/filter walked by the loop itself
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
