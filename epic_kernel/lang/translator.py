"""`Translator`: the state of one translation (fresh variables, source positions, errors) and the
compilation of a Python function (or the whole program) into one IR `Function`.

Why apart from the builders: a builder writes one body; the translator outlives them all. It numbers
variables (unique across the program, so nested closures can capture by variable), maps AST positions
to the user's lines and builds errors that point at them, and records what the scope analysis learns
while bodies are written (comprehension variables, letrec statements reached).
"""

from __future__ import annotations

import ast

from ..errors import EpicSyntaxError
from .builder import IO
from .expressions import ExpressionBuilder
from .ir import Function, Unbound, Var, finalize
from .scope import PyScope, assigned, assigned_nested, letrec_name, param_names
from .statements import Builder

__all__ = ["Translator"]


class Translator:
    """One translation (a cell or an `@epic` function): numbers variables, maps nodes to the user's
    lines, builds errors, and compiles each Python function it meets into an IR `Function`."""

    def __init__(self, source: str, filename: str = "<epic>", first_line: int = 1):
        self.source = source
        self.lines = source.splitlines()
        self.filename = filename
        self.line_offset = first_line - 1
        self._next = 0
        self.uses_io = False
        self.comp_vars: set[Var] = set()     # variables bound by comprehension targets (their own scope)
        self.reached: set[tuple[int, str]] = set()   # (scope, letrec name) whose statement has been translated

    def var(self, name: str = "") -> Var:
        self._next += 1
        return Var(self._next, name)

    def error(self, node: ast.AST, message: str, hint: str = "", construct: str = "") -> EpicSyntaxError:
        line = getattr(node, "lineno", None)
        text = self.lines[line - 1] if line and line <= len(self.lines) else None
        return EpicSyntaxError(message, construct=construct or type(node).__name__,
                               line=(line + self.line_offset) if line else None,
                               col=getattr(node, "col_offset", None), hint=hint, filename=self.filename,
                               source_line=text)

    def line(self, node: ast.AST) -> int | None:
        ln = getattr(node, "lineno", None)
        return ln + self.line_offset if ln else None

    # ======================================================================================= functions
    def function(self, name: str, args: ast.arguments | None, body: list[ast.stmt], node: ast.AST,
                 outer: ExpressionBuilder | None, *, is_lambda: bool = False, top: bool = False,
                 itself: Var | None = None) -> tuple[Function, list[Var]]:
        """Compile a Python function (or the program itself when `top`). Returns it and its default vars.
        `itself`: the variable the `def` binds, visible to the body (so the function can call itself)."""
        params = param_names(self, args, node) if args else []
        outer_env = None
        if outer is not None:
            outer_env = outer.env if itself is None else {**outer.env, name: itself}
        scope = PyScope(set(params) | assigned(body), outer_env, outer.scope if outer else None, top, name=name,
                        node=node, body=body)
        io_in = self.var(IO)
        pvars = [self.var(p) for p in params]
        env = dict(zip(params, pvars, strict=True))
        env[IO] = io_in
        b = Builder(self, scope, env)
        defaults = [outer.expr(d) for d in args.defaults] if args and outer else []
        self._declare_defs(b, body)
        if is_lambda:
            lam = body[0]
            assert isinstance(lam, ast.Expr)          # lambda_expr passes the lambda's body as one Expr
            ret = b.expr(lam.value)
        else:
            ret = b.function_body(body, top=top)
        exports: list[str] = []
        if top:
            # the program returns (value, *exports): each name it binds at top level, as bound at its end
            exports = sorted(assigned(body))
            finals = [b.env.get(n) or b.prim(Unbound(n)) for n in exports]
            ret = b.pack([ret, *finals], line=self.line(body[-1]) if body else None)
        fn = Function(name, tuple(pvars), b.body, ret, io_in, b.env[IO], len(defaults), self.line(node),
                      param_names=tuple(params), exports=tuple(exports))
        finalize(fn)
        return fn, defaults

    def _declare_defs(self, b: Builder, body: list[ast.stmt]) -> None:
        """`def`s and plain `name = lambda ...` statements that bind their name once at the top of a body
        are letrec: visible before their statement, so recursion and mutual recursion work as in Python.
        Not a parameter's name (the parameter holds its value until the statement)."""
        counts: dict[str, int] = {}
        for s in body:
            for n in assigned([s]):
                counts[n] = counts.get(n, 0) + 1
        for s in body:
            name = letrec_name(s)
            if name and name not in b.env and counts.get(name) == 1 and not assigned_nested(body, name, s):
                b.env[name] = self.var(name)
                b.scope.letrec.add(name)
