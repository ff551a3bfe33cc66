"""Control flow -> IR: `if`, `for`, `while`, and the early-exit encodings (break, continue, return
inside branches and loops). See translate.py's docstring for the encodings' why.

Two shapes. A block no statement of which can leave early compiles straight through: `if` is a
Church-encoded branch whose thunks return the names they assign (an SSA join), a `for` with no exit is
a pure `%fold` (every iteration instantiated at once). A block that can leave early returns a
*completion record* `(kind, value, *carried)` (kinds in ir.py): after a statement that may exit, the
rest of the block becomes a continuation thunk chosen by `%is_normal(kind)`, and a loop that may exit
is a recursive closure whose next iteration starts only once the exit test is known.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod

from .expressions import ExpressionBuilder
from .ir import BREAK, CONTINUE, NORMAL, RETURN, Var
from .scope import assigned, rebinding_call, target_names
from .syntax import walk_local

__all__ = ["ControlFlowBuilder", "exits"]


class ControlFlowBuilder(ExpressionBuilder, ABC):
    """Blocks, branches and loops, with and without early exits. Statements themselves are compiled by
    the subclass (`statements.Builder.stmt`), which in turn hands compound statements back here."""

    @abstractmethod
    def stmt(self, s: ast.stmt) -> None:
        """Compile one statement into this body (statements.py)."""

    # -- blocks --------------------------------------------------------------------------------------
    def function_body(self, body: list[ast.stmt], top: bool = False) -> Var:
        """Compile a function body; returns the variable holding the return value. Only a body with a
        `return` nested in a branch or loop pays for completion records."""
        if not _exits_nested_return(body):
            for i, s in enumerate(body):
                if isinstance(s, ast.Return):
                    return self.expr(s.value) if s.value else self.prim(None)
                if top and i == len(body) - 1 and isinstance(s, ast.Expr) and not rebinding_call(s.value):
                    return self.expr(s.value)          # a program's value is its last expression, like a cell
                self.stmt(s)
            return self.prim(None)
        rec = self.block_x(body, [])
        _, value = self.unpack(rec, ["kind", "ret"])
        return value

    def block(self, stmts: list[ast.stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def block_x(self, stmts: list[ast.stmt], carried: list[str]) -> Var:
        """Compile a block that may exit; returns its completion record (kind, value, *carried)."""
        for i, s in enumerate(stmts):
            line = self.tr.line(s)
            if isinstance(s, ast.Return):
                v = self.expr(s.value) if s.value else self.prim(None)
                return self.record(RETURN, v, carried, line)
            if isinstance(s, ast.Break | ast.Continue):
                return self.record(BREAK if isinstance(s, ast.Break) else CONTINUE, self.prim(None), carried, line)
            if isinstance(s, ast.If | ast.For | ast.While) and exits([s]):
                return self._exit_then_rest(s, stmts[i + 1:], carried, line)
            self.stmt(s)
        return self.record(NORMAL, self.prim(None), carried, self.tr.line(stmts[-1]) if stmts else None)

    def _exit_then_rest(self, s: ast.If | ast.For | ast.While, rest: list[ast.stmt], carried: list[str],
                        line: int | None) -> Var:
        """A compound statement that may exit, followed by `rest`: the rest runs (as a continuation
        thunk) only if the statement completed normally; otherwise its record is passed on."""
        kind, value, rec, names = self.compound_x(s, carried)
        if not rest:
            if names == carried:
                return rec
            return self.pack([kind, value, *[self.lookup(n, s, soft=True) for n in carried]], line=line)
        normal = self.intrinsic("is_normal", [kind], line)
        cont_fn = self.thunk(self.child(), "rest", line, lambda c: c.block_x(rest, carried))
        exit_fn = self.thunk(self.child(), "exit", line,
                             lambda c: c.pack([kind, value, *[c.lookup(n, s, soft=True) for n in carried]],
                                              line=line))
        return self.select(normal, cont_fn, exit_fn, line)

    def record(self, kind: int, value: Var, carried: list[str], line: int | None) -> Var:
        """A completion record: `(kind, value, *carried)`, the carried names as they stand here."""
        node = ast.Name(id="?", lineno=line - self.tr.line_offset) if line else ast.Name(id="?")
        return self.pack([self.prim(kind), value, *[self.lookup(n, node, soft=True) for n in carried]], line=line)

    # -- if ------------------------------------------------------------------------------------------
    def if_stmt(self, s: ast.If) -> None:
        """An `if` no branch of which exits: thunks return the names they assign, joined by unpack."""
        line = self.tr.line(s)
        names = sorted(n for n in assigned(s.body) | assigned(s.orelse))
        test = self.expr(s.test)

        def arm(stmts: list[ast.stmt]) -> Var:
            def fill(c: ControlFlowBuilder) -> Var:
                c.block(stmts)
                return c.pack([c.lookup(n, s, soft=True) for n in names], line=line)
            return self.thunk(self.child(), "then" if stmts is s.body else "else", line, fill)

        r = self.branch(test, arm(s.body), arm(s.orelse), line)
        if names:
            for n, v in zip(names, self.unpack(r, names, line), strict=True):
                self.env[n] = v

    def compound_x(self, s: ast.stmt, carried: list[str]) -> tuple[Var, Var, Var, list[str]]:
        """An if/for/while that may exit. Returns (kind, value, record, record names); updates env."""
        line = self.tr.line(s)
        names = sorted(assigned([s]) | set(carried))
        if isinstance(s, ast.If):
            test = self.expr(s.test)
            body, orelse = s.body, s.orelse
            then_fn = self.thunk(self.child(), "then", line, lambda c: c.block_x(body, names))
            else_fn = self.thunk(self.child(), "else", line, lambda c: c.block_x(orelse, names))
            rec = self.branch(test, then_fn, else_fn, line)
        else:
            assert isinstance(s, ast.For | ast.While)
            rec = self.loop_x(s, names)
        kind, value, *vals = self.unpack(rec, ["kind", "value", *names], line)
        for n, v in zip(names, vals, strict=True):
            self.env[n] = v
        return kind, value, rec, names

    # -- loops ---------------------------------------------------------------------------------------
    def for_stmt(self, s: ast.For) -> None:
        """A `for`: a pure `%fold` over a packed state of the names it assigns, or, if its body can
        break/continue/return, the early-exit encoding (`loop_x`)."""
        if s.orelse:
            raise self.tr.error(s, "`else` on a loop is not supported", "use a flag variable", construct="loop else")
        line = self.tr.line(s)
        names = sorted(assigned(s.body) | target_names(s.target))
        if exits(s.body):
            # break/continue (or return) of this loop: the early-exit encoding, one iteration at a time
            self._carry_out(self.loop_x(s, names), names, line)
            return
        xs = self.iterable(s.iter)
        state0 = self.pack([self.lookup(n, s, soft=True) for n in names], line=line)

        def step(c: ControlFlowBuilder, pvars: list[Var]) -> Var:
            st, x = pvars
            for n, v in zip(names, c.unpack(st, names, line), strict=True):
                c.env[n] = v
            c.bind(s.target, x)
            c.block(s.body)
            return c.pack([c.lookup(n, s, soft=True) for n in names], line=line)

        step_fn = self.define(self.lambda_fn("step", ["%state", "%x"], line, step))
        final = self.call(self.op("fold"), [xs, state0, step_fn], line=line, name="for")
        for n, v in zip(names, self.unpack(final, names, line), strict=True):
            self.env[n] = v

    def while_stmt(self, s: ast.While) -> None:
        names = sorted(assigned(s.body))
        self._carry_out(self.loop_x(s, names), names, self.tr.line(s))

    def _carry_out(self, rec: Var, names: list[str], line: int | None) -> None:
        """After a loop: its record's carried values become the names' current variables."""
        _, _, *vals = self.unpack(rec, ["kind", "value", *names], line)
        for n, v in zip(names, vals, strict=True):
            self.env[n] = v

    def loop_x(self, s: ast.For | ast.While, names: list[str]) -> Var:
        """A loop with break/continue/return: a recursive closure, one iteration at a time. Returns the
        record of the whole loop."""
        line = self.tr.line(s)
        if s.orelse:
            raise self.tr.error(s, "`else` on a loop is not supported", "use a flag variable", construct="loop else")
        loop_var = self.tr.var("loop")
        is_for = isinstance(s, ast.For)
        params = (["%cur"] if is_for else []) + names

        def iteration(c: ControlFlowBuilder, pvars: list[Var]) -> Var:
            c.env["%loop"] = loop_var

            def done(cd: ControlFlowBuilder) -> Var:
                return cd.pack([cd.prim(NORMAL), cd.prim(None), *[cd.lookup(n, s, soft=True) for n in names]],
                               line=line)

            if isinstance(s, ast.For):
                # with the print token: a lazy iterable's element (its callback) prints between iterations
                has, x, nxt = c.unpack(c.intrinsic("next", [pvars[0]], line, io=True), ["has", "x", "next"], line)
                c.env["%x"], c.env["%next"] = x, nxt
                test = has
            else:
                test = c.expr(s.test)
            body = c.thunk(c.child(), "body", line, lambda cb: cb._iteration_body(s, names, loop_var, line))
            return c.branch(test, body, c.thunk(c.child(), "done", line, done), line)

        fn = self.lambda_fn("loop", params, line, iteration)
        self.define(fn, out=loop_var)
        start = [self.intrinsic("iter", [self.iterable(s.iter)], line)] if isinstance(s, ast.For) else []
        return self.call(loop_var, start + [self.lookup(n, s, soft=True) for n in names], line=line, name="loop")

    def _iteration_body(self, s: ast.For | ast.While, names: list[str], loop_var: Var, line: int | None) -> Var:
        """One iteration of `loop_x`'s loop, once its test said "go": run the body, then either call
        the loop closure again (`%loop_again(kind)`: normal or continue) or stop with a record."""
        is_for = isinstance(s, ast.For)
        if isinstance(s, ast.For):
            self.bind(s.target, self.env["%x"])
        rec = self.block_x(s.body, names)
        kind, value, *vals = self.unpack(rec, ["kind", "value", *names], line)
        again = self.intrinsic("loop_again", [kind], line)

        def go_on(cc: ControlFlowBuilder) -> Var:
            args = ([cc.env["%next"]] if is_for else []) + vals
            return cc.call(loop_var, args, line=line, name="loop")

        def stop(cc: ControlFlowBuilder) -> Var:
            return cc.pack([cc.intrinsic("loop_exit", [kind], line), value, *vals], line=line)

        return self.select(again, self.thunk(self.child(), "next", line, go_on),
                           self.thunk(self.child(), "stop", line, stop), line)


def exits(stmts: list[ast.stmt], loop_level: bool = True) -> bool:
    """Can control leave this block other than by falling off its end? (return, or break/continue of
    the enclosing loop when `loop_level`)."""
    for s in stmts:
        for node in walk_local([s], into_loops=True):
            if isinstance(node, ast.Return):
                return True
        if loop_level and _has_loop_exit(s):
            return True
    return False


def _has_loop_exit(s: ast.stmt) -> bool:
    if isinstance(s, ast.Break | ast.Continue):
        return True
    if isinstance(s, ast.For | ast.While):
        return False                      # break/continue inside belong to the inner loop
    if isinstance(s, ast.If):
        return any(_has_loop_exit(x) for x in s.body + s.orelse)
    return False


def _exits_nested_return(body: list[ast.stmt]) -> bool:
    for s in body:
        if isinstance(s, ast.Return):
            continue
        if any(isinstance(n, ast.Return) for n in walk_local([s], into_loops=True)):
            return True
    return False
