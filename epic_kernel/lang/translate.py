"""Python subset -> IR (see `ir.py`).

Names become SSA variables. Control flow is Church-encoded so that one set of reduction rules covers
it: `if` is `bool(test)(then_thunk, else_thunk)()`, so an untaken branch is never entered and its
calls never dispatched; names assigned in a branch leave it in a pack (an SSA join).

Loops: a loop with no `break`/`continue`/`return` is a pure fold (`%fold(xs, state, step)`): every
iteration is instantiated at once and only the parts that read the loop-carried state wait. A loop
that can exit early is a recursive closure whose body returns a *completion record*
`(kind, value, *carried)`, kind in {NORMAL, RETURN, BREAK, CONTINUE}; the next iteration starts only
once the exit test is known (no speculative calls). The same records carry an early `return` out of
nested branches: after a statement that may exit, the rest of the block becomes a continuation thunk
chosen by `%is_normal(kind)`.

Scoping: closures capture *values* when they are defined. There is no mutable global store: a
function's free names are the enclosing scope's SSA variables as they stand at its `def`/`lambda`
(names nobody in the program assigns are looked up in the host namespace). Where that would differ
from Python's late binding, because the enclosing scope (re)assigns a name the function reads after
the definition (by source order: assignment, augmented assignment, a `for` target, `xs.append(...)`),
the translator raises EpicSyntaxError ("late binding") at the read instead of computing another
value. `def`s, and plain `name = lambda ...` statements, that bind a name (not a parameter's) once
at the top level of a function body or the program are letrec (visible before their statement, so
recursion and mutual recursion work: `fact = lambda n: 1 if n <= 1 else n * fact(n - 1)`), and any
`def` can call itself.

One difference is deliberate and not an error: each loop iteration and each comprehension element
binds its own value (values are immutable), so

    [f(0) for f in [lambda x: x + i for i in range(3)]]

is [0, 1, 2] in epic but [2, 2, 2] in Python (whose lambdas all see the last `i`); likewise a
`def`/`lambda` made in a loop body sees that iteration's loop variable (and the names assigned
before it in that iteration), not the values of the last iteration.

Mutation: values are immutable and statements do not order effects. `xs.append(v)` and
`xs.extend(ys)` written as statements on a plain name are rebindings, `xs = xs + [v]`: append rebinds
the name, so aliases (`ys = xs` before it) and callers (a parameter appended to in a def) keep the old
list. Every other in-place mutation is an EpicSyntaxError ("mutation", with the immutable alternative
as the hint) where it can be seen syntactically (`syntax.MUTATING_METHODS`): a well-known mutating
method (`sort`, `reverse`, `pop`, `insert`, `remove`, `clear`, `update`, `add`, `discard`,
`setdefault`, `popitem`) called as a statement, `append`/`extend` as a statement on anything but a
plain name (`m[0].append(5)`, `self.xs.append(v)`), and `v = xs.pop()` (pop/popitem/setdefault as an
assignment's whole value). A mutation hidden in an expression or inside a host function is not caught.

Name lookups in the host namespace (`Global`) are *hard* for a name the user's code reads (missing,
it is a NameError at once, as in Python) and *soft* for the translator's own reads of names it
carries out of branches and loops (SSA joins, loop state, completion records): such a name may never
have been assigned, and is an error only where it is used.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from ..errors import EpicSyntaxError
from .expressions import BINOPS
from .ir import Call, Def, Function, Global, Op, Pack, Prim, Stmt, Unbound, Unpack, Var
from .syntax import check_program, check_supported, control_error, walk_local

__all__ = ["NORMAL", "RETURN", "BREAK", "CONTINUE", "compile_program", "compile_function"]

NORMAL, RETURN, BREAK, CONTINUE = 0, 1, 2, 3
IO = "%io"

# list methods written as statements are rebindings: `xs.append(v)` means `xs = xs + [v]`
REBINDING_METHODS = {"append": "append", "extend": "extend"}


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


@dataclass
class Builder:
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
        out = self.tr.var(out_name)
        if io and self.tr.uses_io:
            io_in = self.env[IO]
            io_out = self.tr.var(IO)
            self.env[IO] = io_out
        else:
            io_in = io_out = None
        self.emit(Call(out, fn, tuple(args), kwnames, io_in, io_out, line, name))
        return out

    def intrinsic(self, name: str, args: list[Var], line: int | None = None, io: bool = False) -> Var:
        return self.call(self.op(name), args, io=io, line=line, name=name)

    def pack(self, items: list[Var], kind: str = "tuple", line: int | None = None) -> Var:
        out = self.tr.var("p")
        self.emit(Pack(out, tuple(items), kind, line))
        return out

    def unpack(self, src: Var, names: list[str], line: int | None = None) -> list[Var]:
        outs = [self.tr.var(n) for n in names]
        self.emit(Unpack(tuple(outs), src, line))
        return outs

    def define(self, fn: Function, defaults: list[Var] = (), out: Var | None = None) -> Var:
        out = out or self.tr.var(fn.name)
        self.emit(Def(out, fn, tuple(defaults), fn.line))
        return out

    def branch(self, test: Var, then_fn: Var, else_fn: Var, line: int | None) -> Var:
        """bool(test)(then, else)(): the Church encoding of a conditional."""
        cb = self.intrinsic("bool", [test], line)
        sel = self.call(cb, [then_fn, else_fn], io=False, line=line, name="if")
        return self.call(sel, [], line=line, name="branch")

    # -- names ---------------------------------------------------------------------------------------
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
            found = scope.outer_env.get(name)
            if not soft:
                self._check_late(name, node, scope, owner, found)
            if found is not None:
                return found
            scope = owner
        return self._global(name, node, soft)

    def _check_late(self, name: str, node: ast.AST, scope: PyScope, owner: PyScope, found: Var | None) -> None:
        """A function (`self.scope`, inside `scope`, a function defined in `owner`) reads `name`: reject
        it if `owner` (re)assigns `name` after that definition. Epic functions capture values when they
        are defined; Python would read the name when the function runs (late binding)."""
        if found is not None and found in self.tr.comp_vars:
            return                         # a comprehension's own variable shadows the owner's name
        if name in owner.letrec:
            return                         # a def/lambda bound once, visible before its statement (letrec)
        at = _pos(scope.node)
        late = (at is not None and any(p > at for p in owner.binding_points().get(name, ()))
                and not _consumed_at_once(owner.body, scope.node))
        if not late and (found is not None or owner.top or name not in owner.locals):
            return
        reader = self.scope.who()
        definer = scope.who()
        whose = "the program" if owner.top else owner.who()
        if late:
            verb = "reassigns" if found is not None else "assigns"
            message = f"{reader} reads `{name}`, which {whose} {verb} after {definer} is defined"
        else:
            message = f"{reader} reads `{name}`, a local of {whose} that has no value when {definer} is defined"
        where = "the lambda" if isinstance(scope.node, ast.Lambda) else "the def"
        raise self.tr.error(node, message,
                            f"assign {name} before {where} (epic functions capture values when they are "
                            f"defined), or pass it as an argument", construct="late binding")

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

    def child(self, scope: PyScope | None = None, env: dict[str, Var] | None = None) -> Builder:
        return Builder(self.tr, scope or self.scope, dict(self.env) if env is None else env)


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


class Translator:
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
                 outer: Builder | None, *, is_lambda: bool = False, top: bool = False,
                 itself: Var | None = None) -> tuple[Function, list[Var]]:
        """Compile a Python function (or the program itself when `top`). Returns it and its default vars.
        `itself`: the variable the `def` binds, visible to the body (so the function can call itself)."""
        params = _param_names(self, args, node) if args else []
        local_names = set(params) | _assigned(body)
        outer_env = None
        if outer is not None:
            outer_env = outer.env if itself is None else {**outer.env, name: itself}
        scope = PyScope(local_names, outer_env, outer.scope if outer else None, top, name=name, node=node,
                        body=body)
        io_in = self.var(IO)
        pvars = [self.var(p) for p in params]
        env = dict(zip(params, pvars, strict=True))
        env[IO] = io_in
        b = Builder(self, scope, env)
        defaults = [outer.expr(d) for d in args.defaults] if args and outer else []
        self._declare_defs(b, body)
        if is_lambda:
            ret = b.expr(body[0].value)
        else:
            ret = b.function_body(body, top=top)
        exports: list[str] = []
        if top:
            # the program returns (value, *exports): each name it binds at top level, as bound at its end
            exports = _top_names(body)
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
            for n in _assigned([s]):
                counts[n] = counts.get(n, 0) + 1
        for s in body:
            name = _letrec_name(s)
            if name and name not in b.env and counts.get(name) == 1 and not _assigned_nested(body, name, s):
                b.env[name] = self.var(name)
                b.scope.letrec.add(name)


def _letrec_name(s: ast.stmt) -> str | None:
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


def _param_names(tr: Translator, args: ast.arguments, node: ast.AST) -> list[str]:
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise tr.error(node, "*args, **kwargs, keyword-only and positional-only parameters are not supported",
                       "use plain positional parameters with defaults", construct="parameters")
    return [a.arg for a in args.args]


def _assigned(stmts: list[ast.stmt]) -> set[str]:
    """Names a block assigns (Python's local-variable rule), not looking inside nested functions."""
    out: set[str] = set()
    for node in walk_local(stmts):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            out.add(node.name)
        elif isinstance(node, ast.Expr) and _rebinding_call(node.value):
            out.add(node.value.func.value.id)
    return out


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
                add(t, _pos(t))
            case ast.FunctionDef(name=name):
                out.setdefault(name, []).append(_pos(node))
            case ast.Expr(value=value) if _rebinding_call(value):
                out.setdefault(value.func.value.id, []).append(end)
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


def _assigned_nested(body: list[ast.stmt], name: str, binder: ast.stmt) -> bool:
    """True if a statement of `body` other than `binder` (its letrec `def` or `name = lambda`) assigns
    `name` (so it is not a simple letrec binding)."""
    for s in body:
        if s is binder or isinstance(s, ast.FunctionDef):
            continue
        if name in _assigned([s]):
            return True
    return False


def _rebinding_call(e: ast.expr) -> bool:
    return (isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr in REBINDING_METHODS
            and isinstance(e.func.value, ast.Name) and len(e.args) == 1 and not e.keywords)


def _exits(stmts: list[ast.stmt], loop_level: bool = True) -> bool:
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


def finalize(fn: Function) -> None:
    """Compute the variables a function captures: used but not bound inside it."""
    defined: set[Var] = set(fn.params) | {fn.io_in}
    used: list[Var] = []
    for s in fn.body:
        match s:
            case Prim(out) | Global(out):
                defined.add(out)
            case Pack(out, items):
                defined.add(out)
                used.extend(items)
            case Unpack(outs, src):
                defined.update(outs)
                used.append(src)
            case Call(out, f, args, _, io_in, io_out):
                defined.add(out)
                if io_out is not None:
                    defined.add(io_out)
                used.append(f)
                used.extend(args)
                if io_in is not None:
                    used.append(io_in)
            case Def(out, inner, defaults):
                defined.add(out)
                used.extend(inner.free)
                used.extend(defaults)
    used.extend([fn.ret, fn.io_out])
    seen: dict[Var, None] = {}
    for v in used:
        if v not in defined:
            seen.setdefault(v)
    fn.free = tuple(seen)


# ============================================================================== statements & blocks
def _function_body(self: Builder, body: list[ast.stmt], top: bool = False) -> Var:
    """Compile a function body; returns the variable holding the return value."""
    if not _exits_nested_return(body):
        for i, s in enumerate(body):
            if isinstance(s, ast.Return):
                return self.expr(s.value) if s.value else self.prim(None)
            if top and i == len(body) - 1 and isinstance(s, ast.Expr) and not _rebinding_call(s.value):
                return self.expr(s.value)          # a program's value is its last expression, like a cell
            self.stmt(s)
        return self.prim(None)
    rec = self.block_x(body, [])
    _, value = self.unpack(rec, ["kind", "ret"])
    return value


def _exits_nested_return(body: list[ast.stmt]) -> bool:
    for s in body:
        if isinstance(s, ast.Return):
            continue
        if any(isinstance(n, ast.Return) for n in walk_local([s], into_loops=True)):
            return True
    return False


def _block(self: Builder, stmts: list[ast.stmt]) -> None:
    for s in stmts:
        self.stmt(s)


def _block_x(self: Builder, stmts: list[ast.stmt], carried: list[str]) -> Var:
    """Compile a block that may exit; returns its completion record (kind, value, *carried)."""
    for i, s in enumerate(stmts):
        line = self.tr.line(s)
        if isinstance(s, ast.Return):
            v = self.expr(s.value) if s.value else self.prim(None)
            return self.record(RETURN, v, carried, line)
        if isinstance(s, ast.Break | ast.Continue):
            return self.record(BREAK if isinstance(s, ast.Break) else CONTINUE, self.prim(None), carried, line)
        if isinstance(s, ast.If | ast.For | ast.While) and _exits([s]):
            kind, value, rec, names = self.compound_x(s, carried)
            rest = stmts[i + 1:]
            if not rest:
                if names == carried:
                    return rec
                return self.pack([kind, value, *[self.lookup(n, s, soft=True) for n in carried]], line=line)
            normal = self.intrinsic("is_normal", [kind], line)
            # the fill callbacks run inside thunk() before this iteration returns: late binding is safe
            cont_fn = self.thunk(self.child(), "rest", line, lambda c: c.block_x(rest, carried))  # noqa: B023
            exit_fn = self.thunk(self.child(), "exit", line,
                                 lambda c: c.pack([kind, value, *[c.lookup(n, s, soft=True) for n in carried]],  # noqa: B023
                                                  line=line))  # noqa: B023
            return self.select(normal, cont_fn, exit_fn, line)
        self.stmt(s)
    return self.record(NORMAL, self.prim(None), carried, self.tr.line(stmts[-1]) if stmts else None)


def _select_call(self: Builder, church: Var, then_fn: Var, else_fn: Var, line: int | None) -> Var:
    sel = self.call(church, [then_fn, else_fn], io=False, line=line, name="if")
    return self.call(sel, [], line=line, name="branch")


def _record(self: Builder, kind: int, value: Var, carried: list[str], line: int | None) -> Var:
    node = ast.Name(id="?", lineno=line - self.tr.line_offset if line else None)
    return self.pack([self.prim(kind), value, *[self.lookup(n, node, soft=True) for n in carried]], line=line)


def _thunk(self: Builder, child: Builder, name: str, line: int | None, fill) -> Var:
    """A zero-argument closure whose body `fill(child)` compiles; returns the closure variable."""
    io_in = self.tr.var(IO)
    child.env[IO] = io_in
    ret = fill(child)
    fn = Function(name, (), child.body, ret, io_in, child.env[IO], 0, line)
    finalize(fn)
    return self.define(fn)


def _lambda_fn(self: Builder, name: str, params: list[str], line: int | None, fill) -> Var:
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


# ----------------------------------------------------------------------------------- simple stmts
def _stmt(self: Builder, s: ast.stmt) -> None:
    check_supported(self.tr, s)
    _simple_stmt(self, s)
    name = _letrec_name(s)
    if name is not None and name in self.scope.letrec:
        self.tr.reached.add((id(self.scope), name))     # from here on the function may be called


def _simple_stmt(self: Builder, s: ast.stmt) -> None:
    line = self.tr.line(s)
    match s:
        case ast.Expr(value=value):
            if _rebinding_call(value):
                name = value.func.value.id
                xs = self.lookup(name, value.func.value)
                item = self.expr(value.args[0])
                self.env[name] = self.intrinsic(REBINDING_METHODS[value.func.attr], [xs, item], line)
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
        case ast.Pass():
            pass
        case ast.Assert(test=test, msg=msg):
            # the message is evaluated (and its calls made) only when the test fails, as in Python
            def failed(c: Builder) -> Var:
                m = c.expr(msg) if msg is not None else c.prim(None)
                return c.intrinsic("assert_", [c.prim(False), m, c.prim(line)], line)

            self.branch(self.expr(test), self.thunk(self.child(), "assert_ok", line, lambda c: c.prim(None)),
                        self.thunk(self.child(), "assert_failed", line, failed), line)
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


def _bind(self: Builder, target: ast.expr, v: Var) -> None:
    match target:
        case ast.Name(id=name):
            self.env[name] = v
        case ast.Tuple(elts=elts) | ast.List(elts=elts):
            if any(isinstance(e, ast.Starred) for e in elts):
                raise self.tr.error(target, "starred assignment is not supported",
                                    "index or slice the list instead", construct="starred assignment")
            outs = self.unpack(v, [e.id if isinstance(e, ast.Name) else "t" for e in elts], self.tr.line(target))
            for e, o in zip(elts, outs, strict=True):
                self.bind(e, o)
        case ast.Subscript() | ast.Attribute():
            kind = "subscript" if isinstance(target, ast.Subscript) else "attribute"
            raise self.tr.error(target, f"{kind} assignment is not supported: epic values are immutable",
                                "build a new list/dict (`d = {**d, k: v}`, `xs = xs + [v]`) or do it in a Python cell",
                                construct=f"{kind} assignment")
        case _:
            raise self.tr.error(target, f"cannot assign to {type(target).__name__}")


def _funcdef(self: Builder, s: ast.FunctionDef) -> None:
    if s.decorator_list:
        raise self.tr.error(s.decorator_list[0], "decorators are not supported on functions inside epic code",
                            "decorate a Python function instead, or call the decorator explicitly",
                            construct="decorator")
    # a letrec def's variable is already bound; any other def's is made here, before its body is
    # compiled, so the body can call the function itself (recursion), as in Python
    out = self.env[s.name] if s.name in self.scope.letrec else self.tr.var(s.name)
    fn, defaults = self.tr.function(s.name, s.args, s.body, s, self, itself=out)
    self.env[s.name] = self.define(fn, defaults, out=out)


def _lambda_expr(self: Builder, e: ast.Lambda, out: Var | None = None) -> Var:
    """A lambda: a closure over the enclosing scope's current names. `out`: its letrec variable."""
    fn, defaults = self.tr.function("<lambda>", e.args, [ast.Expr(e.body, lineno=e.lineno)], e, self,
                                    is_lambda=True)
    return self.define(fn, defaults, out=out)


# ------------------------------------------------------------------------------------ compound
def _if_stmt(self: Builder, s: ast.If) -> None:
    """An `if` no branch of which exits: thunks return the names they assign, joined by unpack."""
    line = self.tr.line(s)
    names = sorted(n for n in _assigned(s.body) | _assigned(s.orelse))
    test = self.expr(s.test)

    def arm(stmts):
        def fill(c: Builder) -> Var:
            c.block(stmts)
            return c.pack([c.lookup(n, s, soft=True) for n in names], line=line)
        return self.thunk(self.child(), "then" if stmts is s.body else "else", line, fill)

    r = self.branch(test, arm(s.body), arm(s.orelse), line)
    if names:
        for n, v in zip(names, self.unpack(r, names, line), strict=True):
            self.env[n] = v


def _compound_x(self: Builder, s: ast.stmt, carried: list[str]) -> tuple[Var, Var, Var, list[str]]:
    """An if/for/while that may exit. Returns (kind, value, record, record names); updates env."""
    line = self.tr.line(s)
    names = sorted(_assigned([s]) | set(carried))
    if isinstance(s, ast.If):
        test = self.expr(s.test)
        arms = [self.thunk(self.child(), nm, line, lambda c, st=st: c.block_x(st, names))
                for nm, st in (("then", s.body), ("else", s.orelse))]
        rec = self.branch(test, arms[0], arms[1], line)
    else:
        rec = self.loop_x(s, names)
    kind, value, *vals = self.unpack(rec, ["kind", "value", *names], line)
    for n, v in zip(names, vals, strict=True):
        self.env[n] = v
    return kind, value, rec, names


def _loop_x(self: Builder, s: ast.For | ast.While, names: list[str]) -> Var:
    """A loop with break/continue/return: a recursive closure, one iteration at a time."""
    line = self.tr.line(s)
    if s.orelse:
        raise self.tr.error(s, "`else` on a loop is not supported", "use a flag variable", construct="loop else")
    loop_var = self.tr.var("loop")
    is_for = isinstance(s, ast.For)
    params = (["%cur"] if is_for else []) + names

    def iteration(c: Builder, pvars: list[Var]) -> Var:
        c.env["%loop"] = loop_var

        def body(cb: Builder) -> Var:
            if is_for:
                cb.bind(s.target, cb.env["%x"])
            rec = cb.block_x(s.body, names)
            kind, value, *vals = cb.unpack(rec, ["kind", "value", *names], line)
            again = cb.intrinsic("loop_again", [kind], line)

            def go_on(cc: Builder) -> Var:
                args = ([cc.env["%next"]] if is_for else []) + vals
                return cc.call(loop_var, args, line=line, name="loop")

            def stop(cc: Builder) -> Var:
                return cc.pack([cc.intrinsic("loop_exit", [kind], line), value, *vals], line=line)

            return cb.select(again, cb.thunk(cb.child(), "next", line, go_on),
                             cb.thunk(cb.child(), "stop", line, stop), line)

        def done(cd: Builder) -> Var:
            return cd.pack([cd.prim(NORMAL), cd.prim(None), *[cd.lookup(n, s, soft=True) for n in names]],
                           line=line)

        if is_for:
            # with the print token: a lazy iterable's element (its callback) prints between iterations
            has, x, nxt = c.unpack(c.intrinsic("next", [pvars[0]], line, io=True), ["has", "x", "next"], line)
            c.env["%x"], c.env["%next"] = x, nxt
            test = has
        else:
            test = c.expr(s.test)
        return c.branch(test, c.thunk(c.child(), "body", line, body), c.thunk(c.child(), "done", line, done),
                        line)

    fn = self.lambda_fn("loop", params, line, iteration)
    self.define(fn, out=loop_var)
    start = ([self.intrinsic("iter", [self.expr(s.iter)], line)] if is_for else [])
    return self.call(loop_var, start + [self.lookup(n, s, soft=True) for n in names], line=line, name="loop")


def _for_stmt(self: Builder, s: ast.For) -> None:
    if s.orelse:
        raise self.tr.error(s, "`else` on a loop is not supported", "use a flag variable", construct="loop else")
    line = self.tr.line(s)
    names = sorted(_assigned(s.body) | _target_names(s.target))
    if _exits(s.body):
        # break/continue (or return) of this loop: the early-exit encoding, one iteration at a time
        rec = self.loop_x(s, names)
        _, _, *vals = self.unpack(rec, ["kind", "value", *names], line)
        for n, v in zip(names, vals, strict=True):
            self.env[n] = v
        return
    xs = self.expr(s.iter)
    state0 = self.pack([self.lookup(n, s, soft=True) for n in names], line=line)

    def step(c: Builder, pvars: list[Var]) -> Var:
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


def _while_stmt(self: Builder, s: ast.While) -> None:
    names = sorted(_assigned(s.body))
    rec = self.loop_x(s, names)
    _, _, *vals = self.unpack(rec, ["kind", "value", *names], self.tr.line(s))
    for n, v in zip(names, vals, strict=True):
        self.env[n] = v


def _target_names(t: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}


Builder.function_body = _function_body
Builder.block = _block
Builder.block_x = _block_x
Builder.record = _record
Builder.thunk = _thunk
Builder.lambda_fn = _lambda_fn
Builder.stmt = _stmt
Builder.bind = _bind
Builder.funcdef = _funcdef
Builder.lambda_expr = _lambda_expr
Builder.if_stmt = _if_stmt
Builder.compound_x = _compound_x
Builder.loop_x = _loop_x
Builder.for_stmt = _for_stmt
Builder.while_stmt = _while_stmt
Builder.select = _select_call

from .expressions import install as _install_expressions  # noqa: E402

_install_expressions(Builder)


# ==================================================================================== entry points
def compile_program(source: str, filename: str = "<epic>", first_line: int = 1) -> Function:
    """Compile a whole program (a cell). Its value is the last expression statement's."""
    tree = _parse(source, filename, first_line)
    tr = Translator(source, filename, first_line)
    tr.uses_io = _uses_print(tree)
    check_program(tr, tree, tree.body, in_function=False)
    fn, _ = tr.function("<program>", None, tree.body, tree, None, top=True)
    return fn


def compile_function(source: str, filename: str = "<epic>", first_line: int = 1) -> Function:
    """Compile a single `def` (the `@epic` decorator path): returns that function."""
    tree = _parse(source, filename, first_line)
    defs = [s for s in tree.body if isinstance(s, ast.FunctionDef)]
    if len(defs) != 1:
        raise EpicSyntaxError("@epic expects the source of exactly one function", line=first_line,
                              filename=filename)
    d = defs[0]
    d.decorator_list = []
    tr = Translator(source, filename, first_line)
    tr.uses_io = _uses_print(tree)
    check_program(tr, d, [d], in_function=False)
    fn, _ = tr.function(d.name, d.args, d.body, d, None)
    return fn


def _parse(source: str, filename: str, first_line: int) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise EpicSyntaxError(e.msg if e.msg.startswith("invalid syntax") else f"invalid syntax: {e.msg}", construct="syntax",
                              line=(e.lineno or 1) + first_line - 1, col=(e.offset or 1) - 1, filename=filename,
                              source_line=e.text) from None


def _uses_print(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "print" for n in ast.walk(tree))


def _top_names(body: list[ast.stmt]) -> list[str]:
    names: dict[str, None] = {}
    for n in sorted(_assigned(body)):
        names[n] = None
    return list(names)
