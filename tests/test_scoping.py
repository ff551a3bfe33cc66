"""Scoping: closures capture values at definition, late binding is rejected, and host-namespace lookups
are hard (a name the program reads) or soft (a name the translator carries out of a branch or loop).

See the module docstring of `epic_kernel.lang.translate`.
"""

from __future__ import annotations

import ast
import re
import textwrap

import pytest

from epic_kernel import EpicError, run
from epic_kernel.errors import EpicSyntaxError
from epic_kernel.lang import compile_function, compile_program, pretty
from epic_kernel.lang.ir import Global, Var
from epic_kernel.lang.scope import PyScope
from epic_kernel.lang.statements import Builder
from epic_kernel.lang.translator import Translator


def _src(s: str) -> str:
    return textwrap.dedent(s).strip("\n") + "\n"


def python_value(source: str, namespace: dict | None = None):
    """CPython's value of the last expression statement, like a notebook cell."""
    tree = ast.parse(source)
    last = tree.body.pop()
    assert isinstance(last, ast.Expr)
    g = dict(namespace or {})
    exec(compile(tree, "<python>", "exec"), g)
    return eval(compile(ast.Expression(last.value), "<python>", "eval"), g)


# ============================================================================== late binding: rejected
# id -> (source, line, col (0-based) of the Name read inside the function, expected message)
LATE: dict[str, tuple[str, int, int, str]] = {
    "top-level-assigned-after-def": (
        """
        def g(x):
            return x + K
        K = 5
        g(1)
        """, 2, 15, "`g` reads `K`, which the program assigns after `g` is defined"),
    "top-level-reassigned-after-def": (
        """
        K = 1
        def g(x):
            return x + K
        K = 5
        g(1)
        """, 3, 15, "`g` reads `K`, which the program reassigns after `g` is defined"),
    "top-level-augmented-after-def": (
        """
        K = 1
        def g():
            return K
        K += 1
        g()
        """, 3, 11, "`g` reads `K`, which the program reassigns after `g` is defined"),
    "top-level-for-target-after-def": (
        """
        def g():
            return i
        for i in range(3):
            pass
        g()
        """, 2, 11, "`g` reads `i`, which the program assigns after `g` is defined"),
    "top-level-append-after-def": (
        """
        xs = []
        def size():
            return len(xs)
        xs.append(1)
        size()
        """, 3, 15, "`size` reads `xs`, which the program reassigns after `size` is defined"),
    "top-level-reassigned-in-branch-after-def": (
        """
        K = 1
        def g():
            return K
        if g() > 0:
            K = 2
        K
        """, 3, 11, "`g` reads `K`, which the program reassigns after `g` is defined"),
    "top-level-lambda": (
        """
        K = 1
        f = lambda: K
        K = 2
        f()
        """, 2, 12, "the lambda reads `K`, which the program reassigns after the lambda is defined"),
    "top-level-second-def-of-called-function": (
        """
        def f():
            return g()
        def g():
            return 1
        def g():
            return 2
        f()
        """, 2, 11, "`f` reads `g`, which the program assigns after `f` is defined"),
    "nested-def-reads-top-level": (
        """
        K = 1
        def g():
            def h():
                return K
            return h()
        K = 5
        g()
        """, 4, 15, "`h` reads `K`, which the program reassigns after `g` is defined"),
    "in-function-assigned-after": (
        """
        def f():
            g = lambda: x
            x = 2
            return g()
        f()
        """, 2, 16, "the lambda reads `x`, which `f` assigns after the lambda is defined"),
    "in-function-reassigned-after": (
        """
        def f():
            x = 1
            g = lambda: x
            x = 2
            return g()
        f()
        """, 3, 16, "the lambda reads `x`, which `f` reassigns after the lambda is defined"),
    "in-function-def-reassigned-after": (
        """
        def f(n):
            def g():
                return n * 2
            n = n + 1
            return g()
        f(1)
        """, 3, 15, "`g` reads `n`, which `f` reassigns after `g` is defined"),
    "in-function-loop-state-assigned-later-in-body": (
        """
        def f():
            acc = 0
            fs = []
            for i in range(3):
                fs.append(lambda: acc)
                acc = acc + i
            return [g() for g in fs]
        f()
        """, 5, 26, "the lambda reads `acc`, which `f` reassigns after the lambda is defined"),
}


@pytest.mark.parametrize("case", LATE.values(), ids=list(LATE))
def test_late_binding_is_rejected(case):
    source, line, col, message = case
    source = _src(source)
    with pytest.raises(EpicSyntaxError) as info:
        compile_program(source)
    err = info.value
    assert err.construct == "late binding"
    assert (err.line, err.col) == (line, col)
    assert err.msg.splitlines()[0] == message
    name = re.search(r"reads `(\w+)`", message).group(1)
    assert err.hint == (f"assign {name} before the {'lambda' if message.startswith('the lambda') else 'def'} "
                        "(epic functions capture values when they are defined), or pass it as an argument")
    # the Name the user wrote is where the error points
    src_line = source.splitlines()[line - 1]
    assert src_line[col:col + len(name)] == name


def test_late_binding_through_run_and_first_line():
    src = _src("""
        def g(x):
            return x + K
        K = 5
        g(1)
        """)
    with pytest.raises(EpicSyntaxError) as info:
        run(src)
    assert info.value.line == 2
    with pytest.raises(EpicSyntaxError) as info:
        compile_program(src, first_line=10)
    assert (info.value.line, info.value.col) == (11, 15)


def test_late_binding_in_epic_decorated_function():
    src = _src("""
        def f(n):
            g = lambda: n
            n = 2
            return g()
        """)
    with pytest.raises(EpicSyntaxError) as info:
        compile_function(src)
    assert info.value.construct == "late binding"
    assert (info.value.line, info.value.col) == (2, 16)


# ============================================================================= accepted: Python's value
ACCEPTED: dict[str, tuple[str, dict | None]] = {
    "letrec-mutual-recursion-top-level": ("""
        def even(n):
            return True if n == 0 else odd(n - 1)
        def odd(n):
            return False if n == 0 else even(n - 1)
        even(10)
        """, None),
    "letrec-call-def-defined-later": ("""
        def f(x):
            return g(x) + 1
        def g(x):
            return x * 2
        f(3)
        """, None),
    "letrec-in-function": ("""
        def outer(n):
            def f(x):
                return g(x) + 1
            def g(x):
                return x * 10
            return f(n)
        outer(4)
        """, None),
    "assigned-before-def-never-reassigned": ("""
        K = 3
        def g(x):
            return x + K
        g(1)
        """, None),
    "assigned-before-def-in-function": ("""
        def f(n):
            m = n * 2
            g = lambda x: x + m
            return g(1)
        f(5)
        """, None),
    "host-global-never-assigned": ("""
        def g(x):
            return x + len(HOST)
        g(1)
        """, {"HOST": [1, 2, 3]}),
    "loop-variable-read-by-lambda-in-loop-body": ("""
        out = []
        for i in range(3):
            f = lambda x: x + i
            out.append(f(10))
        out
        """, None),
    "loop-variable-read-by-def-in-loop-body": ("""
        out = []
        for i in range(3):
            def f(x):
                return x * i
            out.append(f(2))
        out
        """, None),
    "loop-variable-in-function": ("""
        def f(xs):
            out = []
            for x in xs:
                g = lambda: x + 1
                out.append(g())
            return out
        f([1, 2, 3])
        """, None),
    "comprehension-variable": ("""
        [f(1) for f in [lambda y, x=x: x + y for x in range(3)]]
        """, None),
    "comprehension-variable-shadows-later-assignment": ("""
        fs = [(lambda k: k * 2)(i) for i in range(3)]
        i = 10
        fs
        """, None),
    "assigned-later-only-in-a-different-function": ("""
        def a():
            K = 1
            return K
        def g():
            return K
        [a(), g()]
        """, {"K": 7}),
    "parameter-shadows-name-assigned-later": ("""
        def f(K):
            return K + 1
        K = 5
        f(1)
        """, None),
    "local-shadows-name-assigned-later": ("""
        def f():
            K = 2
            return K
        K = 5
        f() + K
        """, None),
    "recursive-def-inside-branch": ("""
        if True:
            def fact(n):
                return 1 if n < 2 else n * fact(n - 1)
        fact(5)
        """, None),
    "recursive-def-inside-loop": ("""
        out = []
        for i in range(4):
            def fact(n):
                return 1 if n < 2 else n * fact(n - 1)
            out.append(fact(i + 1))
        out
        """, None),
    "def-uses-name-then-program-reads-it": ("""
        K = 2
        def g(x):
            return x * K
        total = 0
        for v in [1, 2, 3]:
            total += g(v)
        total
        """, None),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=list(ACCEPTED))
def test_accepted_programs_match_python(case):
    source, namespace = case
    source = _src(source)
    want = python_value(source, namespace)
    got = run(source, namespace=dict(namespace or {})).value
    assert got == want and type(got) is type(want)


def test_closures_capture_values_per_iteration():
    """Deliberately not Python's late binding (translate.py's docstring): each iteration's `i`."""
    src = "[f(0) for f in [lambda x: x + i for i in range(3)]]\n"
    assert run(src).value == [0, 1, 2]
    assert python_value(src) == [2, 2, 2]


def test_translate_docstring_documents_capture_at_definition():
    from epic_kernel.lang import translate

    doc = translate.__doc__
    assert "[f(0) for f in [lambda x: x + i for i in range(3)]]" in doc
    assert "[0, 1, 2]" in doc and "[2, 2, 2]" in doc


# ============================================================================ soft and hard lookups
def _globals(src: str) -> list[Global]:
    out: list[Global] = []

    def walk(fn):
        from epic_kernel.lang.ir import Def

        for s in fn.body:
            if isinstance(s, Global):
                out.append(s)
            elif isinstance(s, Def):
                walk(s.fn)

    walk(compile_program(src))
    return out


def test_global_fields():
    v = Var(1, "y")
    g = Global(v, "y", 3)
    assert (g.out, g.name, g.line, g.soft) == (v, "y", 3, False)
    assert Global(v, "y", None, True).soft
    with pytest.raises(AttributeError):
        g.soft = True  # frozen


def test_carried_loop_variable_is_soft():
    text = pretty(compile_program("total = 0\nfor x in [1, 2]:\n    total += x\ntotal"))
    assert re.search(r"x\d+ := global\? x$", text, re.M), text
    assert not re.search(r":= global x$", text, re.M), text


def test_name_the_user_reads_is_hard():
    text = pretty(compile_program("y = undefined_name\n"))
    assert re.search(r"undefined_name\d+ := global undefined_name$", text, re.M), text
    assert "global?" not in text


def test_unassigned_user_name_is_a_name_error_even_if_unused():
    with pytest.raises(EpicError) as info:
        run("y = undefined_name\n1\n")
    assert "undefined_name" in str(info.value)


def test_branch_join_and_records_are_soft():
    # `y` carried out of an if, a while's state, and an early-exit loop's completion record
    progs = [
        "if k:\n    y = 1\n",
        "c = k\nwhile c:\n    y = 1\n    c = False\n",
        "for i in k:\n    if i:\n        y = 2\n        break\n",
    ]
    for src in progs:
        gs = [g for g in _globals(src) if g.name == "y"]
        assert gs and all(g.soft for g in gs), (src, gs)
        assert all(g.soft for g in _globals(src) if g.name == "i"), src
        # `k` is read by the user (and carried nowhere): hard
        ks = [g for g in _globals(src) if g.name == "k"]
        assert ks and not any(g.soft for g in ks), src


def test_untaken_branch_name_is_not_an_error_unless_used():
    src = "if False:\n    y = 1\nz = 2\nz\n"
    assert run(src).value == 2
    with pytest.raises(EpicError):
        run("if False:\n    y = 1\ny\n")


def test_loop_over_empty_list_keeps_unassigned_target_soft():
    assert run("total = 0\nfor x in []:\n    total += x\ntotal\n").value == 0


def test_hard_lookup_does_not_reuse_a_soft_one():
    tr = Translator("")
    b = Builder(tr, PyScope(set(), None, None, top=True), {})
    soft = b.lookup("q", ast.Name(id="q", lineno=1), soft=True)
    hard = b.lookup("q", ast.Name(id="q", lineno=1))
    assert soft is not hard
    assert [(s.name, s.soft) for s in b.body] == [("q", True), ("q", False)]
    # after that, both kinds reuse the hard one
    assert b.lookup("q", ast.Name(id="q", lineno=2)) is hard
    assert b.lookup("q", ast.Name(id="q", lineno=2), soft=True) is hard
    assert len(b.body) == 2


def test_pretty_shows_soft_globals():
    text = pretty(compile_program("if c:\n    y = 1\n"))
    assert "global? y" in text and "global c" in text


def test_soft_lookup_lines_are_offset_once():
    src = "z = k\nfor i in [1]:\n    if i:\n        y = 2\n        break\n"
    from epic_kernel.lang.ir import Def

    def walk(fn, out):
        for s in fn.body:
            if isinstance(s, Global):
                out.append(s)
            elif isinstance(s, Def):
                walk(s.fn, out)
        return out

    gs = walk(compile_program(src, first_line=10), [])
    assert {g.name for g in gs} == {"k", "i", "y"}
    assert all(10 <= g.line <= 14 for g in gs), [(g.name, g.line) for g in gs]


# ------------------------------------------------------------------------------------------ mutation
@pytest.mark.parametrize("src, hint", [
    ("xs = [3, 1, 2]\nxs.sort()\nxs", "sorted(xs)"),
    ("xs = [3, 1, 2]\nxs.reverse()\nxs", "xs[::-1]"),
    ("d = {}\nd.update({1: 2})\nd", "{**d"),
    ("s = set()\ns.add(1)\ns", "s | {"),
    ("xs = [1]\nv = xs.pop()\nv", ""),
    ("m = [[1]]\nm[0].append(5)\nm", ""),
])
def test_in_place_mutation_is_rejected_with_the_immutable_alternative(src: str, hint: str) -> None:
    with pytest.raises(EpicSyntaxError) as e:
        compile_program(src)
    assert e.value.construct == "mutation" and e.value.line == 2
    assert hint in e.value.hint


def test_self_recursive_lambda_is_letrec() -> None:
    assert run("fact = lambda n: 1 if n <= 1 else n * fact(n - 1)\nfact(5)").value == 120


def test_builder_methods_are_declared_in_its_classes():
    """The translator is plain classes (builder -> expressions -> control -> statements): every method
    of the Builder is defined in the body of one of its classes, none attached afterwards, so a type
    checker and go-to-definition can follow each call."""
    own = {cls.__name__ for cls in Builder.__mro__}
    methods = {name: f for name, f in vars(Builder).items() if callable(f)}
    for cls in Builder.__mro__[1:]:
        methods.update({n: f for n, f in vars(cls).items() if callable(f) and n not in methods})
    handlers = {n: f for n, f in methods.items() if not n.startswith("__") and hasattr(f, "__qualname__")}
    assert {"expr", "stmt", "block_x", "loop_x", "lookup", "thunk"} <= set(handlers)
    for name, f in handlers.items():
        assert f.__qualname__.split(".")[0] in own, name
