"""What the epic subset of Python leaves out, and what to do instead.

Every construct outside the subset raises `EpicSyntaxError` naming it, with its line, column and a hint.
New Python syntax is rejected by default (the translator's `match` ends in an error), never silently
miscompiled.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .translate import Translator

__all__ = ["UNSUPPORTED", "check_supported", "walk_local"]

# node type -> (construct name, hint)
UNSUPPORTED: dict[type, tuple[str, str]] = {
    ast.ClassDef: ("class", "define classes in a Python cell; epic code can create and use their instances"),
    ast.Try: ("try", "let the run report failures (EpicError lists every failed call), or catch in Python"),
    getattr(ast, "TryStar", ast.Try): ("try", "let the run report failures, or catch in Python"),
    ast.With: ("with", "open resources in Python and pass the values in"),
    ast.AsyncWith: ("async with", "open resources in Python and pass the values in"),
    ast.Global: ("global", "pass values in as arguments and return results"),
    ast.Nonlocal: ("nonlocal", "pass values in as arguments and return results"),
    ast.Yield: ("yield", "return a list instead; epic runs the elements in parallel anyway"),
    ast.YieldFrom: ("yield from", "return a list instead"),
    ast.AsyncFunctionDef: ("async def", "define async functions in Python; epic dispatches them by itself"),
    ast.Await: ("await", "call the async function directly: epic awaits every call implicitly"),
    ast.AsyncFor: ("async for", "use a plain for loop: streams are lists in epic"),
    ast.Import: ("import", "import in a Python cell; epic code sees the notebook's names"),
    ast.ImportFrom: ("import", "import in a Python cell; epic code sees the notebook's names"),
    ast.Delete: ("del", "values are immutable: simply stop using the name"),
    ast.Raise: ("raise", "use `assert`, or call a Python function that raises"),
    ast.Match: ("match", "use if/elif"),
    ast.NamedExpr: ("walrus (:=)", "assign on a line of its own"),
}


def check_supported(tr: Translator, node: ast.AST) -> None:
    info = UNSUPPORTED.get(type(node))
    if info is not None:
        construct, hint = info
        raise tr.error(node, f"'{construct}' is not supported in epic code", hint, construct=construct)
    if isinstance(node, ast.Call):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise tr.error(node, "*args / **kwargs in calls are not supported",
                           "pass the list or dict itself, or name the arguments", construct="star arguments")
    if isinstance(node, ast.Starred) and not isinstance(getattr(node, "ctx", None), ast.Store):
        raise tr.error(node, "starred expressions are not supported", "concatenate lists with +",
                       construct="starred expression")
    if isinstance(node, ast.Lambda):
        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise tr.error(node, "*args/**kwargs in lambda are not supported", "use plain parameters",
                           construct="parameters")


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def walk_local(stmts: list[ast.stmt], into_loops: bool = True) -> Iterator[ast.AST]:
    """Walk a block's nodes without entering nested scopes (function bodies, lambdas, comprehensions):
    the nodes that decide which names a block assigns and whether it returns."""
    stack: list[ast.AST] = list(reversed(stmts))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                stack.extend(reversed(node.decorator_list + node.args.defaults))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
