"""The evaluator's built-in operations (`%add`, `%fold`, `%getitem`, ...), which the translator names.

Two kinds:
- *strict* intrinsics are delta rules: they wait until every argument is a value, then compute a
  host value (`%add`, `%format`, `%dict`, ...);
- *structural* intrinsics work on partial data and return IR: `%fold`/`%map` instantiate one call
  per element at once, whether or not the elements are known yet (so every iteration's independent
  calls dispatch together); `%getitem` on a pack projects one component without waiting for the
  others; `%append` builds a new pack around a pending element. These are what make a plain `for`
  loop over LLM calls run in parallel.

The structural ones live in structural.py and loops.py, their building blocks in stepkit.py, and the
Python builtins that understand partial data in partial_builtins.py; this module is the table the
translator's names resolve in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ..lang.ir import Function
from .context import register_builtin
from .graph import Cell, Closure, template_of
from .lazy import MATERIALIZE_WITH, genexp
from .loops import LOOP_INTRINSICS
from .partial_builtins import IO_AWARE, STRUCTURAL
from .stepkit import CONTINUE, FALSE, NORMAL, RETURN, TRUE, Intrinsic, church, guarded
from .structural import STRUCTURAL_INTRINSICS

__all__ = ["FALSE", "INTRINSICS", "IO_AWARE", "STRUCTURAL", "TRUE", "Intrinsic", "church", "guarded", "make_closure"]


# ------------------------------------------------------------------------------------ strict ones
def _contains(a: Any, b: Any) -> bool:
    return a in b


def _not_contains(a: Any, b: Any) -> bool:
    return a not in b


def _assert(test: Any, msg: Any, line: int | None) -> None:
    """Python's AssertionError: the message if one is given, else none (the failure record has the line)."""
    if not test:
        raise AssertionError(msg) if msg is not None else AssertionError()


def _format(v: Any, conv: str | None, spec: str) -> str:
    if conv == "r":
        v = repr(v)
    elif conv == "s":
        v = str(v)
    elif conv == "a":
        v = ascii(v)
    return format(v, spec)


def _dict(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _is_normal(kind: int) -> Closure:
    return church(kind == NORMAL)


def _loop_again(kind: int) -> Closure:
    return church(kind == NORMAL or kind == CONTINUE)


def _loop_exit(kind: int) -> int:
    return RETURN if kind == RETURN else NORMAL


_STRICT: dict[str, Callable] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow, "matmul": operator.matmul,
    "and_": operator.and_, "or_": operator.or_, "xor": operator.xor, "lshift": operator.lshift,
    "rshift": operator.rshift,
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge, "contains": _contains, "not_contains": _not_contains, "is_": operator.is_,
    "is_not": operator.is_not,
    "neg": operator.neg, "pos": operator.pos, "invert": operator.invert, "not_": operator.not_,
    "getattr": getattr, "getitem": operator.getitem, "slice": slice, "set": set,
    "dict": _dict, "dict_from_pairs": dict, "dict_merge": lambda a, b: {**a, **b},
    "format": _format, "str_": str, "concat": "".join, "assert_": _assert,
    "is_normal": _is_normal, "loop_again": _loop_again, "loop_exit": _loop_exit, "bool": church,
}
INTRINSICS: dict[str, Intrinsic] = {name: Intrinsic(name, fn) for name, fn in _STRICT.items()}
INTRINSICS.update(STRUCTURAL_INTRINSICS)
INTRINSICS.update(LOOP_INTRINSICS)
INTRINSICS["genexp"] = Intrinsic("genexp", genexp, structural=True)

register_builtin("lines", INTRINSICS["lines"])


def make_closure(fn: Function, globals: dict | None, defaults: tuple = ()) -> Closure:
    """A top-level closure for `fn` (a program or an `@epic` function), with host default values;
    the intrinsics its body names are resolved once, into its template."""
    return Closure(template_of(fn, INTRINSICS), (), tuple(Cell(d) for d in defaults), globals)


MATERIALIZE_WITH.update({op: INTRINSICS[op] for op in ("map", "filter", "mapfilter", "flatmap")})
