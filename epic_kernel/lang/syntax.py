"""What the epic subset of Python leaves out, and what to do instead.

Every construct outside the subset raises `EpicSyntaxError` naming it, with its line, column and a hint.
New Python syntax is rejected by default (the translator's `match` ends in an error), never silently
miscompiled.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .translator import Translator

__all__ = ["MUTATING_METHODS", "REBINDING_METHODS", "UNSUPPORTED", "check_program", "check_supported", "control_error",
           "misplaced_control", "mutation_error", "walk_local"]

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


# In-place mutations epic cannot keep: values are immutable and statements do not order effects, so the
# change would be lost (or, on a host object, race with later reads). A purely syntactic check: such a
# method called as a statement, or (those that also return something) as the whole value of an
# assignment. Method name -> (the immutable alternative for a receiver `{x}`, a note).
MUTATING_METHODS: dict[str, tuple[str, str]] = {
    "sort": ("{x} = sorted({x}{kw})", ""),
    "reverse": ("{x} = {x}[::-1]", ""),
    "pop": ("v = {x}[-1]; {x} = {x}[:-1]", "a dict: `v = {x}[k]; {x} = {{kk: vv for kk, vv in {x}.items() if kk != k}}`"),
    "insert": ("{x} = {x}[:i] + [v] + {x}[i:]", ""),
    "remove": ("i = {x}.index(v); {x} = {x}[:i] + {x}[i + 1:]", ""),
    "clear": ("{x} = []", "`{{}}` for a dict, `set()` for a set"),
    "update": ("{x} = {{**{x}, **other}}", "a set: `{x} = {x} | other`"),
    "add": ("{x} = {x} | {{v}}", ""),
    "discard": ("{x} = {x} - {{v}}", ""),
    "setdefault": ("{x} = {{k: default, **{x}}}; v = {x}[k]", ""),
    "popitem": ("k, v = list({x}.items())[-1]; {x} = dict(list({x}.items())[:-1])", ""),
    "append": ("{x} = {x} + [v]", ""),
    "extend": ("{x} = {x} + ys", ""),
}
_VALUE_MUTATORS = {"pop", "popitem", "setdefault"}      # also rejected as `v = xs.pop()`
# list methods that, written as a statement on a plain name, are rebindings, not mutations: `xs.append(v)`
# means `xs = xs + [v]` (scope.rebinding); method -> the intrinsic that builds the new list
REBINDING_METHODS = {"append": "append", "extend": "extend"}


def mutation_error(tr: Translator, node: ast.AST) -> Exception | None:
    """The error for an in-place mutation written as a statement (`xs.sort()`, `d.update(e)`,
    `m[0].append(5)`) or as an assignment's value (`v = xs.pop()`); None for anything else."""
    call: ast.expr | None
    methods: Collection[str]
    if isinstance(node, ast.Expr):
        call, methods = node.value, MUTATING_METHODS
    elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        call, methods = node.value, _VALUE_MUTATORS
    else:
        return None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in methods):
        return None
    method, recv = call.func.attr, call.func.value
    if method in REBINDING_METHODS and isinstance(recv, ast.Name):
        return None                                      # a rebinding (scope.rebinding)
    text = ast.unparse(recv)
    code, note = MUTATING_METHODS[method]
    if isinstance(recv, ast.Name):
        kw = "".join(", " + ast.unparse(k) for k in call.keywords) if method == "sort" else ""
        hint = f"rebind the name to a new value: `{code.format(x=text, kw=kw)}`"
        if note:
            hint += f" ({note.format(x=text)})"
    else:
        hint = (f"the change would not reach `{text}`: build the new value under a name (`ys = {text}`, then "
                f"`{code.format(x='ys', kw='')}`), or mutate it in a Python function")
    dots = "..." if call.args or call.keywords else ""
    message = (f"`{text}.{method}({dots})` changes {text} in place; epic values are immutable and statements do "
               "not order effects, so the change would be lost")
    return tr.error(call, message, hint, construct="mutation")


def check_supported(tr: Translator, node: ast.AST) -> None:
    info = UNSUPPORTED.get(type(node))
    if info is not None:
        construct, hint = info
        raise tr.error(node, f"'{construct}' is not supported in epic code", hint, construct=construct)
    err = mutation_error(tr, node)
    if err is not None:
        raise err
    if isinstance(node, ast.Call):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise tr.error(node, "*args / **kwargs in calls are not supported",
                           "pass the list or dict itself, or name the arguments", construct="star arguments")
    if isinstance(node, ast.Starred) and not isinstance(getattr(node, "ctx", None), ast.Store):
        raise tr.error(node, "starred expressions are not supported", "concatenate lists with +",
                       construct="starred expression")
    if isinstance(node, _COMPREHENSIONS) and any(g.is_async for g in node.generators):
        raise tr.error(node, "async comprehensions are not supported",
                       "use a plain comprehension: streams are lists in epic", construct="async comprehension")
    if isinstance(node, ast.Lambda):
        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise tr.error(node, "*args/**kwargs in lambda are not supported", "use plain parameters",
                           construct="parameters")


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

_RETURN_HINT = ("a cell's value is its last expression: write the value on a line of its own "
                "(or put the code in a `def` and call it)")
_LOOP_HINT = "`break` and `continue` only work inside a `for` or `while` loop (not in a `def` nested in one)"


def misplaced_control(stmts: list[ast.stmt], in_function: bool, in_loop: bool = False) -> list[ast.stmt]:
    """The `return`s outside any function and the `break`/`continue`s outside any loop of their own
    function, in `stmts` and the statements nested in them (expressions hold no statements)."""
    out: list[ast.stmt] = []
    for s in stmts:
        if isinstance(s, ast.Return) and not in_function:
            out.append(s)
        elif isinstance(s, ast.Break | ast.Continue) and not in_loop:
            out.append(s)
        elif isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef):
            out += misplaced_control(s.body, True, False)
        elif isinstance(s, ast.ClassDef):
            out += misplaced_control(s.body, False, False)
        elif isinstance(s, ast.For | ast.AsyncFor | ast.While):
            out += misplaced_control(s.body, in_function, True)
            out += misplaced_control(s.orelse, in_function, in_loop)   # a loop's else belongs outside it
        else:
            for child in ast.iter_child_nodes(s):
                if isinstance(child, ast.stmt):
                    out += misplaced_control([child], in_function, in_loop)
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    out += misplaced_control(child.body, in_function, in_loop)
    return out


def check_program(tr: Translator, root: ast.AST, stmts: list[ast.stmt], in_function: bool) -> None:
    """Reject everything outside the subset under `root` (whose statements are `stmts`), reporting the
    first offending node in source order."""
    misplaced = set(misplaced_control(stmts, in_function))
    nodes = sorted(ast.walk(root), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
    for node in nodes:
        if node in misplaced:
            raise control_error(tr, node)
        check_supported(tr, node)


def control_error(tr: Translator, node: ast.stmt) -> Exception:
    if isinstance(node, ast.Return):
        return tr.error(node, "'return' outside function", _RETURN_HINT, construct="return")
    kw = "break" if isinstance(node, ast.Break) else "continue"
    return tr.error(node, f"'{kw}' outside loop", _LOOP_HINT, construct=kw)


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
