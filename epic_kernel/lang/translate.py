"""Python subset -> IR (see `ir.py`): the entry points, and what the translation means.

The translator is split by job: `scope.py` (which names a function binds, letrec, late binding),
`builder.py` (emitting one body; name lookup), `expressions.py`, `control.py` (if/for/while and the
early-exit encodings), `statements.py` (the complete `Builder`), `translator.py` (one translation's
state; compiling a function). This module holds the entry points and the semantics they implement:

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

from ..errors import EpicSyntaxError
from .builder import BuilderCore
from .ir import BREAK, CONTINUE, NORMAL, RETURN, Function, finalize
from .scope import PyScope
from .statements import Builder
from .syntax import check_program
from .translator import Translator

__all__ = ["BREAK", "CONTINUE", "NORMAL", "RETURN", "Builder", "BuilderCore", "PyScope", "Translator",
           "compile_function", "compile_program", "finalize"]


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
