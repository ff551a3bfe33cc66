"""Scope analysis: which names a Python function binds, where, and when a closure's captured value
would differ from Python's late binding.

Why a module of its own: epic closures capture *values* when they are defined (translate.py's
docstring), so the translator must decide, from the source alone, which reads are letrec bindings,
which are the enclosing scope's current values, and which would read a value Python has not computed
yet (the "late binding" error). These are questions about the syntax tree, independent of how IR is
emitted; keeping them here lets `builder.py` ask them in one call each.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .ir import Var
from .syntax import REBINDING_METHODS, walk_local

if TYPE_CHECKING:
    from ..errors import EpicSyntaxError
    from .translator import Translator

__all__ = ["REBINDING_METHODS", "Pos", "PyScope", "assigned", "assigned_nested", "late_binding_error",
           "letrec_name", "param_names", "rebinding", "rebinding_call", "target_names"]

Pos = tuple[int, int]          # (line, col) in the parsed source: source order


@dataclass
class PyScope:
    """One Python function scope: which names are local (assigned anywhere in it) and the
    enclosing scope's bindings at the moment this function was defined."""

    locals: set[str]
    outer_env: dict[str, Var] | None
    outer: PyScope | None
    top: bool = False              # the program itself: an unassigned name is the notebook's global
    name: str = ""                 # the function's name ("<lambda>", "<program>")
    node: ast.AST | None = None    # its `def`/`lambda` (where it captures the enclosing scope's values)
    body: list[ast.stmt] = field(default_factory=list)
    letrec: set[str] = field(default_factory=set)      # defs/lambdas visible before their statement
    _points: dict[str, list[Pos]] | None = field(default=None, repr=False)

    def binding_points(self) -> dict[str, list[Pos]]:
        """name -> the source positions at which this scope (re)binds it."""
        if self._points is None:
            self._points = _binding_points(self.body)
        return self._points

    def who(self) -> str:
        return "the lambda" if self.name == "<lambda>" else f"`{self.name}`"


def late_binding_error(tr: Translator, reader: PyScope, name: str, node: ast.AST, scope: PyScope,
                       owner: PyScope, found: Var | None) -> EpicSyntaxError | None:
    """A function (`reader`, inside `scope`, a function defined in `owner`) reads `name`: the error if
    `owner` (re)assigns `name` after that definition, else None. Epic functions capture values when
    they are defined; Python would read the name when the function runs (late binding)."""
    if found is not None and found in tr.comp_vars:
        return None                        # a comprehension's own variable shadows the owner's name
    if name in owner.letrec:
        return None                        # a def/lambda bound once, visible before its statement (letrec)
    at = _pos(scope.node)
    late = (at is not None and any(p > at for p in owner.binding_points().get(name, ()))
            and not _consumed_at_once(owner.body, scope.node))
    if not late and (found is not None or owner.top or name not in owner.locals):
        return None
    definer = scope.who()
    whose = "the program" if owner.top else owner.who()
    if late:
        verb = "reassigns" if found is not None else "assigns"
        message = f"{reader.who()} reads `{name}`, which {whose} {verb} after {definer} is defined"
    else:
        message = f"{reader.who()} reads `{name}`, a local of {whose} that has no value when {definer} is defined"
    where = "the lambda" if isinstance(scope.node, ast.Lambda) else "the def"
    return tr.error(node, message, f"assign {name} before {where} (epic functions capture values when they are "
                    f"defined), or pass it as an argument", construct="late binding")


def letrec_name(s: ast.stmt) -> str | None:
    """The name a `def` or a plain `name = lambda ...` statement binds; None for any other statement (and
    for a lambda whose defaults read its own name: they are evaluated before the name is bound)."""
    if isinstance(s, ast.FunctionDef):
        return s.name
    match s:
        case ast.Assign(targets=[ast.Name(id=name)], value=ast.Lambda(args=args)):
            defaults = [n for d in args.defaults for n in ast.walk(d)]
            if not any(isinstance(n, ast.Name) and n.id == name for n in defaults):
                return name
    return None


def param_names(tr: Translator, args: ast.arguments, node: ast.AST) -> list[str]:
    """A def's or lambda's parameters: plain positional ones only (the runtime binds by position and
    keyword, nothing else)."""
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise tr.error(node, "*args, **kwargs, keyword-only and positional-only parameters are not supported",
                       "use plain positional parameters with defaults", construct="parameters")
    return [a.arg for a in args.args]


def assigned(stmts: list[ast.stmt]) -> set[str]:
    """Names a block assigns (Python's local-variable rule), not looking inside nested functions."""
    out: set[str] = set()
    for node in walk_local(stmts):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.Expr) and (rebound := rebinding(node.value)):
            out.add(rebound[0].id)
    return out


def assigned_nested(body: list[ast.stmt], name: str, binder: ast.stmt) -> bool:
    """True if a statement of `body` other than `binder` (its letrec `def` or `name = lambda`) assigns
    `name` (so it is not a simple letrec binding)."""
    for s in body:
        if s is binder or isinstance(s, ast.FunctionDef):
            continue
        if name in assigned([s]):
            return True
    return False


def rebinding_call(e: ast.expr) -> bool:
    """`xs.append(v)` / `xs.extend(ys)` on a plain name: a rebinding of `xs`, not a mutation."""
    return rebinding(e) is not None


def rebinding(e: ast.expr) -> tuple[ast.Name, str, ast.expr] | None:
    """(the name `xs`, the method, its argument) of a rebinding call `xs.append(v)`; else None."""
    if (isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in REBINDING_METHODS
            and isinstance(e.func.value, ast.Name) and len(e.args) == 1 and not e.keywords):
        return e.func.value, e.func.attr, e.args[0]
    return None


def target_names(t: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}


def _pos(node: ast.AST | None) -> Pos | None:
    line = getattr(node, "lineno", None)
    return None if line is None else (line, getattr(node, "col_offset", 0))


def _binding_points(stmts: list[ast.stmt]) -> dict[str, list[Pos]]:
    """Where a block (re)binds each name, in source positions, not looking inside nested functions or
    comprehensions. An assignment binds at the end of its statement (its value, which may hold a
    lambda, is evaluated first); a `for` target where it is written (before the body); a `def` its
    name where it starts (the body may call the function itself)."""
    out: dict[str, list[Pos]] = {}

    def add(target: ast.AST, at: Pos) -> None:
        for n in ast.walk(target):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.setdefault(n.id, []).append(at)

    for node in walk_local(stmts):
        end = (getattr(node, "end_lineno", None) or 0, getattr(node, "end_col_offset", None) or 0)
        match node:
            case ast.Assign(targets=targets):
                for t in targets:
                    add(t, end)
            case ast.AugAssign(target=t) | ast.AnnAssign(target=t):
                add(t, end)
            case ast.For(target=t):
                add(t, _pos(t) or end)                   # (a parsed node always has a position)
            case ast.FunctionDef(name=name):
                out.setdefault(name, []).append(_pos(node) or end)
            case ast.Expr(value=value) if (rebound := rebinding(value)):
                out.setdefault(rebound[0].id, []).append(end)
    return out


# builtins that call a `key=` function during the call, and that consume an iterator during the call
_CALLS_KEY = frozenset({"sorted", "min", "max"})
_CONSUMES = frozenset({"list", "tuple", "set", "frozenset", "dict", "sorted", "sum", "min", "max", "any", "all",
                       "next"})             # next(map(...)): the inline iterator is gone after the call
_PASSES_ON = frozenset({"map", "filter", "zip", "enumerate"})      # lazy iterators over their arguments


def _consumed_at_once(body: list[ast.stmt], fn: ast.AST | None) -> bool:
    """Is the lambda `fn` called only while the call it is passed to runs? (`sorted(xs, key=lambda
    ...)`, `list(map(lambda ..., xs))`.) Then no later rebinding can reach it: the value it captures
    is the one Python's lambda reads, and late binding need not be rejected."""
    if not isinstance(fn, ast.Lambda):
        return False
    parent: dict[ast.AST, ast.AST] = {}
    for stmt in body:                  # every node, comprehensions and nested bodies included: only
        for node in ast.walk(stmt):    # the lambda's own ancestors matter
            for child in ast.iter_child_nodes(node):
                parent[child] = node
    call = parent.get(fn)
    if isinstance(call, ast.keyword):
        call = parent.get(call)
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return False
    if call.func.id in _CALLS_KEY and any(k.arg == "key" and k.value is fn for k in call.keywords):
        return True
    if call.func.id not in ("map", "filter") or not call.args or call.args[0] is not fn:
        return False
    while True:                        # through iterators that are themselves consumed at once
        outer = parent.get(call)
        if not (isinstance(outer, ast.Call) and isinstance(outer.func, ast.Name)
                and any(a is call for a in outer.args)):
            return False
        if outer.func.id in _CONSUMES:
            return True
        if outer.func.id not in _PASSES_ON:
            return False
        call = outer
