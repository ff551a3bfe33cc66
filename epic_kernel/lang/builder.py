"""The emitting core of the translator: one `BuilderCore` per IR function body being written.

Why a base class: expressions (`expressions.py`), control flow (`control.py`) and statements
(`statements.py`) each add their handlers as a subclass of the one before, so every method a handler
calls is defined in its own class or a base a reader (or a type checker) can follow. This core holds
what all of them need: emitting bindings, the Church-encoded branch, closures over the current block,
and name resolution (SSA variables, letrec, the enclosing scopes, the host namespace).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from .ir import Call, Def, Function, Global, Op, Pack, Prim, Stmt, Unbound, Unpack, Var, finalize
from .scope import PyScope, late_binding_error

if TYPE_CHECKING:
    from .translator import Translator

__all__ = ["IO", "BuilderCore"]

IO = "%io"          # the env key of the current print token (ir.py: calls that may print thread it)

# the translator's own bookkeeping operations, which never fail: they need not order prints
CANNOT_FAIL = frozenset({"is_normal", "loop_again", "loop_exit", "slice"})


@dataclass
class BuilderCore:
    """Emits the body of one IR Function (a Python function, a branch thunk or a loop step)."""

    tr: Translator
    scope: PyScope
    env: dict[str, Var]
    body: list[Stmt] = field(default_factory=list)
    consts: dict[Any, Var] = field(default_factory=dict)

    # -- emitting ------------------------------------------------------------------------------------
    def emit(self, s: Stmt) -> None:
        self.body.append(s)

    def prim(self, value: Any, line: int | None = None) -> Var:
        """A constant, bound once per body (a repeated `0` or `%add` reuses its variable)."""
        key = (type(value), value) if _hashable(value) else None
        if key is not None and key in self.consts:
            return self.consts[key]
        v = self.tr.var("c")
        self.emit(Prim(v, value, line))
        if key is not None:
            self.consts[key] = v
        return v

    def op(self, name: str) -> Var:
        return self.prim(Op(name))

    def call(self, fn: Var, args: list[Var], kwnames: tuple[str, ...] = (), *, io: bool = True,
             line: int | None = None, name: str = "", out_name: str = "") -> Var:
        """A call; with `io` (and a program that prints) it threads the print token, so output keeps
        program order while nothing else is ordered."""
        out = self.tr.var(out_name)
        io_in: Var | None
        io_out: Var | None
        if io and self.tr.uses_io:
            io_in = self.env[IO]
            io_out = self.tr.var(IO)
            self.env[IO] = io_out
        else:
            io_in = io_out = None
        self.emit(Call(out, fn, tuple(args), kwnames, io_in, io_out, line, name))
        return out

    def intrinsic(self, name: str, args: list[Var], line: int | None = None, io: bool | None = None) -> Var:
        """An operation (`%add`, `%getitem`, ...). Anything that can fail threads the print token (when
        the program prints): a print waits until every operation before it has finished without
        failing, so a failing program prints exactly what Python prints before its error."""
        if io is None:
            io = name not in CANNOT_FAIL
        return self.call(self.op(name), args, io=io, line=line, name=name)

    def pack(self, items: list[Var], kind: str = "tuple", line: int | None = None) -> Var:
        out = self.tr.var("p")
        self.emit(Pack(out, tuple(items), kind, line))
        return out

    def unpack(self, src: Var, names: list[str], line: int | None = None) -> list[Var]:
        outs = [self.tr.var(n) for n in names]
        self.emit(Unpack(tuple(outs), src, line))
        return outs

    def define(self, fn: Function, defaults: Sequence[Var] = (), out: Var | None = None) -> Var:
        out = out or self.tr.var(fn.name)
        self.emit(Def(out, fn, tuple(defaults), fn.line))
        return out

    # -- closures and branches -----------------------------------------------------------------------
    def branch(self, test: Var, then_fn: Var, else_fn: Var, line: int | None) -> Var:
        """bool(test)(then, else)(): the Church encoding of a conditional."""
        cb = self.intrinsic("bool", [test], line)
        return self.select(cb, then_fn, else_fn, line)

    def select(self, church: Var, then_fn: Var, else_fn: Var, line: int | None) -> Var:
        """church(then, else)(): `church` is already a Church boolean (`%is_normal`, `%loop_again`)."""
        sel = self.call(church, [then_fn, else_fn], io=False, line=line, name="if")
        return self.call(sel, [], line=line, name="branch")

    def thunk(self, child: Self, name: str, line: int | None, fill: Callable[[Self], Var]) -> Var:
        """A zero-argument closure whose body `fill(child)` compiles; returns the closure variable."""
        io_in = self.tr.var(IO)
        child.env[IO] = io_in
        ret = fill(child)
        fn = Function(name, (), child.body, ret, io_in, child.env[IO], 0, line)
        finalize(fn)
        return self.define(fn)

    def lambda_fn(self, name: str, params: list[str], line: int | None,
                  fill: Callable[[Self, list[Var]], Var]) -> Function:
        """A closure over the *current block's* names (a loop step or comprehension body), not a new
        Python scope: it reads enclosing names directly."""
        child = self.child()
        pvars = [self.tr.var(p) for p in params]
        child.env.update(zip(params, pvars, strict=True))
        io_in = self.tr.var(IO)
        child.env[IO] = io_in
        ret = fill(child, pvars)
        fn = Function(name, tuple(pvars), child.body, ret, io_in, child.env[IO], 0, line, param_names=tuple(params))
        finalize(fn)
        return fn

    def child(self, scope: PyScope | None = None, env: dict[str, Var] | None = None) -> Self:
        """A builder for a nested body (a thunk, a step), starting from this block's names."""
        return type(self)(self.tr, scope or self.scope, dict(self.env) if env is None else env)

    # -- names ---------------------------------------------------------------------------------------
    def bind(self, target: ast.expr, v: Var) -> None:
        """Assign `v` to an assignment target (a name, or a tuple/list of targets: unpacking)."""
        match target:
            case ast.Name(id=name):
                self.env[name] = v
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                if any(isinstance(e, ast.Starred) for e in elts):
                    raise self.tr.error(target, "starred assignment is not supported",
                                        "index or slice the list instead", construct="starred assignment")
                line = self.tr.line(target)
                if self.tr.uses_io:               # a bad unpack fails in the print token's order
                    self.intrinsic("unpackable", [v, self.prim(len(elts))], line)
                outs = self.unpack(v, [e.id if isinstance(e, ast.Name) else "t" for e in elts], line)
                for e, o in zip(elts, outs, strict=True):
                    self.bind(e, o)
            case ast.Subscript() | ast.Attribute():
                kind = "subscript" if isinstance(target, ast.Subscript) else "attribute"
                raise self.tr.error(target, f"{kind} assignment is not supported: epic values are immutable",
                                    "build a new list/dict (`d = {**d, k: v}`, `xs = xs + [v]`) or do it in a "
                                    "Python cell", construct=f"{kind} assignment")
            case _:
                raise self.tr.error(target, f"cannot assign to {type(target).__name__}")

    def lookup(self, name: str, node: ast.AST, soft: bool = False) -> Var:
        """The variable for `name` here. `soft`: the translator's own read of a name it carries out of
        a branch or loop (not one the user wrote), which may never have been assigned."""
        if name in self.env:
            if name in self.scope.letrec and (id(self.scope), name) not in self.tr.reached:
                # a def (or `f = lambda`) used, in its own scope, before its statement ran: Python has
                # no value for it yet (letrec makes it visible only to functions called later); at the
                # top level the name is still the namespace's (a notebook's earlier definition)
                return self._global(name, node) if self.scope.top else self.prim(Unbound(name))
            return self.env[name]
        if name in self.scope.locals and not self.scope.top:
            return self.prim(Unbound(name))
        scope = self.scope
        while scope.outer_env is not None:
            owner = scope.outer
            assert owner is not None                     # a scope with an enclosing env has an enclosing scope
            found = scope.outer_env.get(name)
            if not soft:
                err = late_binding_error(self.tr, self.scope, name, node, scope, owner, found)
                if err is not None:
                    raise err
            if found is not None:
                return found
            scope = owner
        return self._global(name, node, soft)

    def _global(self, name: str, node: ast.AST, soft: bool = False) -> Var:
        """A host-namespace lookup, once per builder: a soft one reuses a hard one, never the reverse
        (a hard lookup must report a missing name even where a soft one already looked it up)."""
        hard_key, soft_key = ("global", name), ("global?", name)
        for key in ((hard_key, soft_key) if soft else (hard_key,)):
            if key in self.consts:
                return self.consts[key]
        v = self.tr.var(name)
        self.emit(Global(v, name, self.tr.line(node), soft))
        self.consts[soft_key if soft else hard_key] = v
        return v


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True
