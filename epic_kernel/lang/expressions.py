"""Expressions -> IR: `ExpressionBuilder`, the handlers of every expression node kind, listed together.

Operators and attribute access become intrinsic calls (`%add`, `%getattr`); `and`/`or`, conditional
expressions and chained comparisons short-circuit through the same Church-encoded branch as `if`;
comprehensions become `%map`/`%mapfilter`/`%flatmap` over a closure, so every element's calls are
dispatched at once.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Self, cast

from .builder import BuilderCore
from .ir import Prim, Var

__all__ = ["BINOPS", "CMPOPS", "CONVERSIONS", "UNARY", "ExpressionBuilder"]

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
          ast.Mod: "mod", ast.Pow: "pow", ast.MatMult: "matmul", ast.BitAnd: "and_", ast.BitOr: "or_",
          ast.BitXor: "xor", ast.LShift: "lshift", ast.RShift: "rshift"}
CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge",
          ast.In: "contains", ast.NotIn: "not_contains", ast.Is: "is_", ast.IsNot: "is_not"}
UNARY = {ast.USub: "neg", ast.UAdd: "pos", ast.Invert: "invert", ast.Not: "not_"}
CONVERSIONS = {-1: None, 115: "s", 114: "r", 97: "a"}


class ExpressionBuilder(BuilderCore):
    """One handler per expression node kind; each returns the variable holding the value."""

    def expr(self, e: ast.expr) -> Var:
        line = self.tr.line(e)
        match e:
            case ast.Constant(value=v):
                return self.prim(v, line)
            case ast.Name(id=name):
                return self.lookup(name, e)
            case ast.BinOp(left=left, op=op, right=right):
                return self.intrinsic(BINOPS[type(op)], [self.expr(left), self.expr(right)], line)
            case ast.UnaryOp(op=op, operand=operand):
                return self.intrinsic(UNARY[type(op)], [self.expr(operand)], line)
            case ast.BoolOp(op=op, values=values):
                return self.boolop(isinstance(op, ast.And), values, line)
            case ast.Compare(left=left, ops=ops, comparators=comps):
                return self.compare(self.expr(left), ops, comps, line)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                t = self.expr(test)
                return self.branch(t, self.thunk(self.child(), "then", line, lambda c: c.expr(body)),
                                   self.thunk(self.child(), "else", line, lambda c: c.expr(orelse)), line)
            case ast.Call():
                return self.call_expr(e, line)
            case ast.Attribute(value=value, attr=attr):
                return self.intrinsic("getattr", [self.expr(value), self.prim(attr)], line)
            case ast.Subscript(value=value, slice=sl):
                return self.intrinsic("getitem", [self.expr(value), self.index(sl)], line)
            case ast.List(elts=elts):
                return self.pack([self.expr(x) for x in elts], "list", line)
            case ast.Tuple(elts=elts):
                return self.pack([self.expr(x) for x in elts], "tuple", line)
            case ast.Dict(keys=keys, values=values):
                return self.dict_expr(keys, values, line)
            case ast.Set(elts=elts):
                folded = _constant_set(e)
                if folded is not None:                     # CPython folds it into a frozenset: its order
                    return self.intrinsic("set", [self.prim(folded)], line)
                return self.intrinsic("set", [self.pack([self.expr(x) for x in elts], "list", line)], line)
            case ast.ListComp(elt=elt, generators=gens):
                return self.comprehension(gens, lambda c: c.expr(elt), line)
            case ast.GeneratorExp(elt=elt, generators=gens):
                return self.comprehension(gens, lambda c: c.expr(elt), line, lazy=True)
            case ast.SetComp(elt=elt, generators=gens):
                return self.intrinsic("set", [self.comprehension(gens, lambda c: c.expr(elt), line)], line)
            case ast.DictComp(key=key, value=value, generators=gens):
                pairs = self.comprehension(gens, lambda c: c.pack([c.expr(key), c.expr(value)]), line)
                return self.intrinsic("dict_from_pairs", [pairs], line)
            case ast.JoinedStr(values=parts):
                return self.fstring(parts, line)
            case ast.Lambda():
                return self.lambda_expr(e)
            case _:
                raise self.tr.error(e, f"{type(e).__name__} expressions are not supported in epic code")


    def call_expr(self, e: ast.Call, line: int | None) -> Var:
        """The callee first, then the arguments left to right: Python's order, which is the order
        calls and prints take (`mk(1)(g(2))` calls `mk(1)` before it evaluates `g(2)`)."""
        func = e.func
        kwnames = cast(tuple[str, ...], tuple(k.arg for k in e.keywords))    # `**kw` is rejected by syntax.py
        if isinstance(func, ast.Name) and func.id == "print" and "print" not in self.env:
            args = [self.expr(a) for a in e.args] + [self.expr(k.value) for k in e.keywords]
            return self.call(self.op("print"), args, kwnames, io=True, line=line, name="print")
        f = self.expr(func)
        args = [self.expr(a) for a in e.args] + [self.expr(k.value) for k in e.keywords]
        name = ast.unparse(func)
        return self.call(f, args, kwnames, io=True, line=line, name=name if len(name) <= 40 else name[:39] + "…")


    def index(self, sl: ast.expr) -> Var:
        if isinstance(sl, ast.Slice):
            parts = [self.expr(p) if p is not None else self.prim(None) for p in (sl.lower, sl.upper, sl.step)]
            return self.intrinsic("slice", parts, self.tr.line(sl))
        if isinstance(sl, ast.Tuple) and any(isinstance(x, ast.Slice) for x in sl.elts):
            return self.pack([self.index(x) for x in sl.elts], "tuple")
        return self.expr(sl)


    def boolop(self, is_and: bool, values: list[ast.expr], line: int | None) -> Var:
        """`a and b`: b is evaluated (its calls dispatched) only if a is truthy; the value is a or b."""
        first = self.expr(values[0])
        if len(values) == 1:
            return first
        rest = self.thunk(self.child(), "rhs", line, lambda c: c.boolop(is_and, values[1:], line))
        keep = self.thunk(self.child(), "lhs", line, lambda c: first)
        return self.branch(first, rest, keep, line) if is_and else self.branch(first, keep, rest, line)


    def compare(self, left: Var, ops: list[ast.cmpop], comps: list[ast.expr], line: int | None) -> Var:
        right = self.expr(comps[0])
        result = self.intrinsic(CMPOPS[type(ops[0])], [left, right], line)
        if len(ops) == 1:
            return result
        more = self.thunk(self.child(), "cmp", line, lambda c: c.compare(right, ops[1:], comps[1:], line))
        keep = self.thunk(self.child(), "cmp", line, lambda c: result)
        return self.branch(result, more, keep, line)


    def dict_expr(self, keys: list[ast.expr | None], values: list[ast.expr], line: int | None) -> Var:
        out = None
        items: list[Var] = []

        def flush(cur: Var | None) -> Var:
            d = self.intrinsic("dict", [self.pack(items, "list", line)], line)
            return d if cur is None else self.intrinsic("dict_merge", [cur, d], line)

        for k, v in zip(keys, values, strict=True):
            if k is None:                                   # {**other, ...}
                if items:
                    out = flush(out)
                    items = []
                spread = self.expr(v)
                out = spread if out is None else self.intrinsic("dict_merge", [out, spread], line)
                if len(keys) == 1:
                    out = self.intrinsic("dict_merge", [self.intrinsic("dict", [self.pack([], "list")], line), out],
                                         line)
            else:
                items += [self.expr(k), self.expr(v)]
        if items or out is None:
            out = flush(out)
        return out


    def comprehension(self, gens: list[ast.comprehension], elt: Callable[[Self], Var], line: int | None,
                      lazy: bool = False) -> Var:
        """`%map`/`%mapfilter`/`%flatmap` of a closure over the first iterable; `lazy` (a generator
        expression): a `%genexp` value that consumers evaluate whole or element by element."""
        g = gens[0]
        if g.is_async:
            raise self.tr.error(g.iter, "async comprehensions are not supported", "use a plain comprehension",
                                construct="async comprehension")
        xs = self.iterable(g.iter)
        rest = gens[1:]

        def body(c: Self, pvars: list[Var]) -> Var:
            c.bind(g.target, pvars[0])
            # the comprehension's own variables: a lambda in it reads these, whatever the enclosing scope
            # assigns to the same names later
            c.tr.comp_vars.update(c.env[n.id] for n in ast.walk(g.target) if isinstance(n, ast.Name))
            if rest:
                inner = c.thunk(c.child(), "inner", line, lambda cc: cc.comprehension(rest, elt, line))
                if not g.ifs:
                    return c.call(inner, [], line=line, name="comprehension")
                empty = c.thunk(c.child(), "skip", line, lambda cc: cc.pack([], "list"))
                return c.branch(c.conjunction(g.ifs, line), inner, empty, line)
            if not g.ifs:
                return elt(c)
            keep = c.thunk(c.child(), "keep", line, lambda cc: cc.pack([cc.prim(True), elt(cc)]))
            drop = c.thunk(c.child(), "drop", line, lambda cc: cc.pack([cc.prim(False), cc.prim(None)]))
            return c.branch(c.conjunction(g.ifs, line), keep, drop, line)

        fn = self.define(self.lambda_fn("comp", ["%x"], line, body))
        op = "flatmap" if rest else ("mapfilter" if g.ifs else "map")
        if lazy:
            return self.call(self.op("genexp"), [xs, fn, self.prim(op)], io=False, line=line, name="generator")
        return self.call(self.op(op), [xs, fn], io=True, line=line, name="comprehension")


    def iterable(self, e: ast.expr) -> Var:
        """An expression iterated by a `for` or a comprehension. A set display of constants there
        is what CPython's compiler makes of it: a frozenset constant, whose iteration order can
        differ from the same display built at run time (`[c for c in {5, -3}]` is `[5, -3]`,
        `list({5, -3})` is `[-3, 5]`)."""
        if isinstance(e, ast.Set):
            folded = _folded_iterable(e)
            if folded is not None:                 # not shared through `prim`'s cache: equal
                v = self.tr.var("c")               # frozensets may iterate in different orders
                self.emit(Prim(v, folded, self.tr.line(e)))
                return v
        return self.expr(e)

    def conjunction(self, conds: list[ast.expr], line: int | None) -> Var:
        return self.boolop(True, conds, line)


    def lambda_expr(self, e: ast.Lambda, out: Var | None = None) -> Var:
        """A lambda: a closure over the enclosing scope's current names. `out`: its letrec variable."""
        fn, defaults = self.tr.function("<lambda>", e.args, [ast.Expr(e.body, lineno=e.lineno)], e, self,
                                        is_lambda=True)
        return self.define(fn, defaults, out=out)

    def fstring(self, parts: list[ast.expr], line: int | None) -> Var:
        pieces: list[Var] = []
        for p in parts:
            if isinstance(p, ast.Constant):
                pieces.append(self.prim(p.value))
            elif isinstance(p, ast.FormattedValue):
                spec = (self.fstring(p.format_spec.values, line) if isinstance(p.format_spec, ast.JoinedStr)
                        else self.prim(""))
                conv = self.prim(CONVERSIONS.get(p.conversion))
                pieces.append(self.intrinsic("format", [self.expr(p.value), conv, spec], line))
            else:
                raise self.tr.error(p, "unsupported f-string part")
        if len(pieces) == 1:
            return self.intrinsic("str_", [pieces[0]], line)
        return self.intrinsic("concat", [self.pack(pieces, "list", line)], line)


def _folded_iterable(e: ast.Set) -> frozenset | None:
    """The frozenset constant CPython's compiler folds a set display into where it is iterated
    (`for x in {...}`, every `for` clause of a comprehension): taken from the code CPython compiles
    for `for _ in <display>: pass`, so its iteration order is CPython's own."""
    if _constant_set(e) is None:
        return None
    loop = ast.For(target=ast.Name("_", ast.Store()), iter=e, body=[ast.Pass()], orelse=[])
    module = ast.fix_missing_locations(ast.Module([loop], type_ignores=[]))
    try:
        code = compile(module, "<set display>", "exec")
    except (ValueError, TypeError, SyntaxError):
        return None
    return next((c for c in code.co_consts if isinstance(c, frozenset)), None)


def _constant_set(e: ast.Set) -> frozenset | None:
    """A set display of constants as CPython builds it. CPython's compiler folds such a display into a
    frozenset constant, whose iteration order can differ from adding the elements one by one
    (`list({-4, 12, -3})` is `[12, -4, -3]`, `list(set([-4, 12, -3]))` is `[-3, -4, 12]`): ask CPython."""
    try:
        for x in e.elts:
            ast.literal_eval(x)
        value = eval(compile(ast.Expression(e), "<set display>", "eval"), {"__builtins__": {}})
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return frozenset(value)
