"""Statements -> IR: `Builder`, the complete builder (expressions, control flow, and the statements
themselves: assignment, the list-rebinding methods, assert, def).

Why statements are the last layer: a statement may hold any expression and any compound statement,
so this class sees every handler through its bases (`ControlFlowBuilder` <- `ExpressionBuilder` <-
`BuilderCore`), and control flow reaches statements through the one abstract method `stmt`.
"""

from __future__ import annotations

import ast

from .control import ControlFlowBuilder
from .expressions import BINOPS
from .ir import Var
from .scope import REBINDING_METHODS, letrec_name, rebinding
from .syntax import check_supported, control_error

__all__ = ["Builder"]


class Builder(ControlFlowBuilder):
    """Emits the body of one IR Function (a Python function, a branch thunk or a loop step)."""

    def stmt(self, s: ast.stmt) -> None:
        check_supported(self.tr, s)
        if not self._assignment(s):
            self._other_stmt(s)
        name = letrec_name(s)
        if name is not None and name in self.scope.letrec:
            self.tr.reached.add((id(self.scope), name))     # from here on the function may be called

    def _assignment(self, s: ast.stmt) -> bool:
        """Expression statements and every kind of assignment; False for any other statement."""
        line = self.tr.line(s)
        match s:
            case ast.Expr(value=value):
                rebound = rebinding(value)
                if rebound is not None:
                    target, method, arg = rebound
                    xs = self.lookup(target.id, target)
                    item = self.expr(arg)
                    self.env[target.id] = self.intrinsic(REBINDING_METHODS[method], [xs, item], line)
                else:
                    self.expr(value)
            case ast.Assign(targets=[ast.Name(id=name)], value=ast.Lambda() as value) if name in self.scope.letrec:
                self.env[name] = self.lambda_expr(value, out=self.env[name])      # letrec: already declared
            case ast.Assign(targets=targets, value=value):
                v = self.expr(value)
                for t in targets:
                    self.bind(t, v)
            case ast.AnnAssign(target=target, value=value):
                if value is not None:
                    self.bind(target, self.expr(value))
            case ast.AugAssign(target=ast.Name(id=name) as target, op=op, value=value):
                cur = self.lookup(name, target)
                self.env[name] = self.intrinsic(BINOPS[type(op)], [cur, self.expr(value)], line)
            case ast.AugAssign():
                raise self.tr.error(s, "augmented assignment to an attribute or subscript is not supported",
                                    "build a new value instead: `xs = xs[:i] + [v] + xs[i+1:]`",
                                    construct="augmented assignment")
            case _:
                return False
        return True

    def _other_stmt(self, s: ast.stmt) -> None:
        match s:
            case ast.Pass():
                pass
            case ast.Assert():
                self.assert_stmt(s)
            case ast.FunctionDef():
                self.funcdef(s)
            case ast.If():
                self.if_stmt(s)
            case ast.For():
                self.for_stmt(s)
            case ast.While():
                self.while_stmt(s)
            case ast.Return() | ast.Break() | ast.Continue():   # only reached outside functions/loops
                raise control_error(self.tr, s)      # (`check_program` rejects these before translation)
            case _:
                raise self.tr.error(s, f"{type(s).__name__} is not supported in epic code")

    def assert_stmt(self, s: ast.Assert) -> None:
        """The message is evaluated (and its calls made) only when the test fails, as in Python."""
        line = self.tr.line(s)
        msg = s.msg

        def failed(c: Builder) -> Var:
            m = c.expr(msg) if msg is not None else c.prim(None)
            return c.intrinsic("assert_", [c.prim(False), m, c.prim(line)], line)

        self.branch(self.expr(s.test), self.thunk(self.child(), "assert_ok", line, lambda c: c.prim(None)),
                    self.thunk(self.child(), "assert_failed", line, failed), line)

    def funcdef(self, s: ast.FunctionDef) -> None:
        if s.decorator_list:
            raise self.tr.error(s.decorator_list[0], "decorators are not supported on functions inside epic code",
                                "decorate a Python function instead, or call the decorator explicitly",
                                construct="decorator")
        # a letrec def's variable is already bound; any other def's is made here, before its body is
        # compiled, so the body can call the function itself (recursion), as in Python
        out = self.env[s.name] if s.name in self.scope.letrec else self.tr.var(s.name)
        fn, defaults = self.tr.function(s.name, s.args, s.body, s, self, itself=out)
        self.env[s.name] = self.define(fn, defaults, out=out)
