"""The epic subset of Python: what the translator rejects, where it says the problem is, and what it accepts.

Every construct outside the subset (DESIGN section 3, `epic_kernel.lang.syntax.UNSUPPORTED` and the checks in
`translate.py`) must raise `EpicSyntaxError` naming the construct, at the offending node's line and column,
with a hint, and must also be a Python `SyntaxError` (so IPython and tracebacks render it).  Unless noted,
each rejected program puts the construct on line 3, after two ordinary lines.

Known translator bugs are marked `xfail(strict=True)` with the reason; they flip to failures once fixed, so
the mark must be removed then.
"""

from __future__ import annotations

import ast

import pytest

from epic_kernel.errors import EpicException, EpicSyntaxError
from epic_kernel.lang import Function, compile_function, compile_program, pretty
from epic_kernel.lang.ir import Def, Op, Pack, Prim
from epic_kernel.lang.syntax import UNSUPPORTED

P = "a = 1\nb = [1, 2]\n"      # two ordinary lines before the construct


# id -> (source, words any of which the lower-cased `.construct` must contain, line, col (0-based))
REJECTED: dict[str, tuple[str, tuple[str, ...], int, int]] = {
    # -- statements from the UNSUPPORTED table
    "class": (P + "class C:\n    pass\n", ("class",), 3, 0),
    "class-inside-def": ("def f():\n    x = 1\n    class C:\n        pass\n", ("class",), 3, 4),
    "try-except": (P + "try:\n    x = 1\nexcept ValueError:\n    x = 2\n", ("try",), 3, 0),
    "try-finally-inside-def": ("def f():\n    x = 1\n    try:\n        pass\n    finally:\n        pass\n",
                               ("try",), 3, 4),
    "try-except-star": (P + "try:\n    x = 1\nexcept* ValueError:\n    pass\n", ("try",), 3, 0),
    "with": (P + "with open(a) as fh:\n    x = 1\n", ("with",), 3, 0),
    "with-inside-def": ("def f():\n    x = 1\n    with g():\n        pass\n", ("with",), 3, 4),
    "async-with": (P + "async with g() as h:\n    pass\n", ("async with",), 3, 0),
    "async-with-inside-async-def": (P + "async def f():\n    async with g():\n        pass\n", ("async",), 3, 0),
    "global": ("def f():\n    x = 1\n    global a\n", ("global",), 3, 4),
    "global-top-level": (P + "global a\n", ("global",), 3, 0),
    "nonlocal": ("def f(a):\n    def g():\n        nonlocal a\n        a = 2\n", ("nonlocal",), 3, 8),
    "yield": ("def f():\n    x = 1\n    yield x\n", ("yield",), 3, 4),
    "yield-as-value": ("def f():\n    x = 1\n    y = yield x\n", ("yield",), 3, 8),
    "yield-in-lambda": (P + "f = lambda: (yield)\n", ("yield",), 3, 13),
    "yield-from": ("def f():\n    x = 1\n    yield from a\n", ("yield from",), 3, 4),
    "async-def": (P + "async def f():\n    pass\n", ("async def",), 3, 0),
    "async-def-nested": ("def f():\n    x = 1\n    async def g():\n        pass\n", ("async def",), 3, 4),
    "await-top-level": (P + "x = await g()\n", ("await",), 3, 4),
    "await-inside-def": ("def f():\n    x = 1\n    return await g(x)\n", ("await",), 3, 11),
    "async-for": (P + "async for x in g():\n    pass\n", ("async for",), 3, 0),
    "import": (P + "import os\n", ("import",), 3, 0),
    "import-inside-def": ("def f():\n    x = 1\n    import os\n", ("import",), 3, 4),
    "import-in-untaken-branch": ("if False:\n    x = 1\n    import os\n", ("import",), 3, 4),
    "from-import": (P + "from os import path\n", ("import",), 3, 0),
    "del": (P + "del a\n", ("del",), 3, 0),
    "del-subscript": (P + "del b[0]\n", ("del",), 3, 0),
    "raise": (P + "raise ValueError(a)\n", ("raise",), 3, 0),
    "raise-inside-def": ("def f(x):\n    y = x\n    raise ValueError(y)\n", ("raise",), 3, 4),
    "match": (P + "match a:\n    case 1:\n        pass\n", ("match",), 3, 0),
    "walrus": (P + "if (n := len(b)) > 1:\n    pass\n", ("walrus", ":="), 3, 4),
    "walrus-in-comprehension": (P + "x = [y for z in b if (y := z)]\n", ("walrus", ":="), 3, 22),
    # -- star arguments and starred expressions
    "star-args-in-call": (P + "x = f(*b)\n", ("star", "*"), 3, 4),
    "star-star-kwargs-in-call": (P + "x = f(**a)\n", ("star", "*"), 3, 4),
    "star-args-after-keywords": (P + "x = f(a, *b, c=1)\n", ("star", "*"), 3, 4),
    "star-args-in-print": (P + "print(*b)\n", ("star", "*"), 3, 0),
    "starred-in-list": (P + "x = [*b, 1]\n", ("starred",), 3, 5),
    "starred-in-tuple": (P + "x = (*b, 1)\n", ("starred",), 3, 5),
    "starred-in-set": (P + "x = {*b}\n", ("starred",), 3, 5),
    "starred-in-subscript": (P + "x = a[*b]\n", ("starred",), 3, 6),
    # -- parameters
    "def-star-args": (P + "def f(*args):\n    pass\n", ("param",), 3, 0),
    "def-star-star-kwargs": (P + "def f(**kwargs):\n    pass\n", ("param",), 3, 0),
    "def-keyword-only": (P + "def f(x, *, y=1):\n    pass\n", ("param",), 3, 0),
    "def-positional-only": (P + "def f(x, /):\n    pass\n", ("param",), 3, 0),
    "inner-def-star-args": ("def f():\n    x = 1\n    def g(*xs):\n        pass\n", ("param",), 3, 4),
    "lambda-star-args": (P + "f = lambda *xs: xs\n", ("param",), 3, 4),
    "lambda-star-star-kwargs": (P + "f = lambda **kw: kw\n", ("param",), 3, 4),
    "lambda-keyword-only": (P + "f = lambda *, k: k\n", ("param",), 3, 4),
    "lambda-positional-only": (P + "f = lambda k, /: k\n", ("param",), 3, 4),
    # -- assignments epic cannot express (values are immutable)
    "attribute-assignment": (P + "a.x = 1\n", ("attribute",), 3, 0),
    "attribute-assignment-inside-def": ("def f(o):\n    x = 1\n    o.name = x\n", ("attribute",), 3, 4),
    "attribute-assignment-chained-target": (P + "c = a.x = 1\n", ("attribute",), 3, 4),
    "annotated-attribute-assignment": (P + "a.x: int = 1\n", ("attribute",), 3, 0),
    "attribute-as-for-target": (P + "for a.x in b:\n    pass\n", ("attribute",), 3, 4),
    "subscript-assignment": (P + "b[0] = 5\n", ("subscript",), 3, 0),
    "subscript-assignment-inside-def": ("def f(xs):\n    x = 1\n    xs[0] = x\n", ("subscript",), 3, 4),
    "subscript-in-tuple-target": (P + "x, b[0] = 1, 2\n", ("subscript",), 3, 3),
    "subscript-as-comprehension-target": (P + "x = [1 for b[0] in a]\n", ("subscript",), 3, 11),
    "augmented-assignment-to-attribute": (P + "a.x += 1\n", ("augmented",), 3, 0),
    "augmented-assignment-to-subscript": ("def f(xs):\n    y = 1\n    xs[0] += y\n", ("augmented",), 3, 4),
    "starred-assignment": (P + "x, *rest = b\n", ("starred",), 3, 0),
    "starred-assignment-list-target": ("def f():\n    x = 1\n    [y, *z] = b\n", ("starred",), 3, 4),
    "starred-for-target": (P + "for x, *ys in b:\n    pass\n", ("starred",), 3, 4),
    # -- decorators: the position of the decorator expression itself (after the `@`)
    "decorator-on-inner-def": ("def f():\n    x = 1\n    @d\n    def g():\n        pass\n", ("decorator",), 3, 5),
    "decorator-on-top-level-def": (P + "@d\ndef g():\n    pass\n", ("decorator",), 3, 1),
    # -- loop else
    "for-else": (P + "for x in b:\n    pass\nelse:\n    pass\n", ("else",), 3, 0),
    "while-else": (P + "while a:\n    a = 0\nelse:\n    pass\n", ("else",), 3, 0),
    "for-else-with-break": ("def f():\n    x = 1\n    for y in b:\n        break\n    else:\n        pass\n",
                            ("else",), 3, 4),
    "while-else-with-break": (P + "while a:\n    break\nelse:\n    pass\n", ("else",), 3, 0),
    # -- control flow in the wrong place
    "return-outside-function": (P + "return a\n", ("return",), 3, 0),
    "bare-return-outside-function": (P + "return\n", ("return",), 3, 0),
    "return-outside-function-in-if": ("a = 1\nif a:\n    return 1\n", ("return",), 3, 4),
    "break-outside-loop": (P + "break\n", ("break",), 3, 0),
    "continue-outside-loop": (P + "continue\n", ("continue",), 3, 0),
    "break-in-if-outside-loop": ("a = 1\nif a:\n    break\n", ("break",), 3, 4),
    "break-in-def-outside-loop": ("def f():\n    x = 1\n    break\n", ("break",), 3, 4),
    "continue-in-def-inside-loop": ("for x in b:\n    def g():\n        continue\n", ("continue",), 3, 8),
    "break-in-def-inside-while": ("while a:\n    def g():\n        break\n", ("break",), 3, 8),
    "return-in-top-level-for": ("for x in b:\n    y = x\n    return y\n", ("return",), 3, 4),
    "return-in-top-level-while": ("while a:\n    a = 0\n    return\n", ("return",), 3, 4),
    "return-in-top-level-for-in-if": ("if a:\n    for x in b:\n        return x\n", ("return",), 3, 8),
    # -- async comprehensions: the position of the comprehension expression
    "async-list-comprehension": (P + "x = [y async for y in g()]\n", ("async",), 3, 4),
    "async-dict-comprehension": (P + "x = {k: v async for k, v in g()}\n", ("async",), 3, 4),
    "async-inner-generator": (P + "x = [y for z in b async for y in z]\n", ("async",), 3, 4),
    "async-comprehension-in-async-def": (P + "async def f():\n    return [y async for y in g()]\n",
                                         ("async",), 3, 0),
}

# Translator bugs found while writing these tests: id -> {aspect: reason}; aspect "all" covers every test.
# (Each entry becomes a strict xfail; all the bugs found so far are fixed.)
KNOWN_BUGS: dict[str, dict[str, str]] = {}


def _rejected(aspect: str) -> list:
    params = []
    for case_id, case in REJECTED.items():
        bugs = KNOWN_BUGS.get(case_id, {})
        reason = bugs.get(aspect) or bugs.get("all")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(*case, id=case_id, marks=marks))
    return params


def _reject(source: str, **kw) -> EpicSyntaxError:
    with pytest.raises(EpicSyntaxError) as info:
        compile_program(source, **kw)
    return info.value


def _source_is_python(source: str) -> None:
    """Guard against typos in the test table: every program must at least parse as Python."""
    ast.parse(source)


@pytest.mark.parametrize(("source", "words", "line", "col"), _rejected("raises"))
def test_rejected_raises_epic_syntax_error(source, words, line, col):
    _source_is_python(source)
    err = _reject(source)
    assert isinstance(err, SyntaxError)
    assert isinstance(err, EpicException)


@pytest.mark.parametrize(("source", "words", "line", "col"), _rejected("construct"))
def test_rejected_names_the_construct(source, words, line, col):
    err = _reject(source)
    assert any(w in err.construct.lower() for w in words), (err.construct, words)


@pytest.mark.parametrize(("source", "words", "line", "col"), _rejected("location"))
def test_rejected_points_at_the_node(source, words, line, col):
    err = _reject(source, filename="cell.py")
    assert (err.line, err.col) == (line, col)
    # the SyntaxError view agrees (1-based offset), so tracebacks and IPython show the same place
    assert (err.lineno, err.offset) == (line, col + 1)
    assert err.filename == "cell.py"
    assert err.text is not None and err.text.strip() == source.splitlines()[line - 1].strip()
    assert f"line {line}" in str(err)


@pytest.mark.parametrize(("source", "words", "line", "col"), _rejected("location"))
def test_rejected_line_is_offset_by_first_line(source, words, line, col):
    err = _reject(source, first_line=10)
    assert (err.line, err.col) == (line + 9, col)
    assert err.text is not None and err.text.strip() == source.splitlines()[line - 1].strip()
    assert f"line {line + 9}" in str(err)


@pytest.mark.parametrize(("source", "words", "line", "col"), _rejected("hint"))
def test_rejected_has_a_hint(source, words, line, col):
    err = _reject(source)
    assert err.hint.strip()
    assert err.hint in str(err)


def test_every_unsupported_node_type_is_exercised():
    """Each entry of syntax.UNSUPPORTED appears in at least one rejected program above."""
    seen = {type(n) for src, *_ in REJECTED.values() for n in ast.walk(ast.parse(src))}
    missing = [t.__name__ for t in UNSUPPORTED if t not in seen]
    assert not missing


def test_unsupported_table_entries_have_name_and_hint():
    for node_type, (construct, hint) in UNSUPPORTED.items():
        assert construct.strip(), node_type
        assert hint.strip(), node_type


def test_first_of_two_top_level_unsupported_statements_is_reported():
    err = _reject("x = 1\nimport os\nclass C:\n    pass\n")
    assert (err.construct, err.line) == ("import", 2)


# ==================================================================================== Python syntax errors
@pytest.mark.parametrize(("source", "line", "col"), [
    pytest.param(P + "x = (1,\n", 3, 4, id="unclosed-paren"),
    pytest.param(P + "x = = 3\nc = 4\n", 3, 4, id="double-equals"),
    pytest.param(P + "x = 1 +\n", 3, 7, id="dangling-operator"),
    pytest.param("if a:\nprint(1)\nb = 2\n", 2, 0, id="missing-indent"),
])
def test_python_syntax_error(source, line, col):
    with pytest.raises(SyntaxError):                     # what plain Python says, for comparison
        ast.parse(source)
    err = _reject(source, filename="cell.py")
    assert isinstance(err, SyntaxError)
    assert (err.line, err.col) == (line, col)
    assert (err.lineno, err.offset) == (line, col + 1)
    assert err.filename == "cell.py"
    assert err.text is not None and err.text.strip() == source.splitlines()[line - 1].strip()
    assert f"line {line}" in str(err)


@pytest.mark.parametrize("first_line", [1, 10, 123])
def test_python_syntax_error_offset_by_first_line(first_line):
    err = _reject(P + "x = (1,\n", first_line=first_line)
    assert err.line == 3 + first_line - 1
    assert err.lineno == err.line
    assert f"line {err.line}" in str(err)
    assert "x = (1," in str(err)


def test_unsupported_construct_in_nested_def_offset_by_first_line():
    src = "def outer(x):\n    def inner(y):\n        if y:\n            import os\n        return y\n    return inner(x)\n"
    err = _reject(src, first_line=10)
    assert (err.construct, err.line, err.col) == ("import", 13, 12)
    assert "import os" in str(err)


# ==================================================================================== the supported subset
SUPPORTED: dict[str, str] = {
    "def-with-defaults": "def f(a, b=2, c='x'):\n    return a + b\n\nf(1)\nf(1, c='y')\n",
    "nested-defs": "def outer(x):\n    def inner(y):\n        return x + y\n    return inner(1)\n\nouter(2)\n",
    "recursion": "def fact(n):\n    if n <= 1:\n        return 1\n    return n * fact(n - 1)\n\nfact(5)\n",
    "mutual-recursion": ("def even(n):\n    return True if n == 0 else odd(n - 1)\n\n"
                         "def odd(n):\n    return False if n == 0 else even(n - 1)\n\neven(4)\n"),
    "function-as-value": "def twice(f, x):\n    return f(f(x))\n\ntwice(lambda v: v + 1, 0)\n",
    "docstring-and-bare-return": "def f():\n    \"\"\"Docs.\"\"\"\n    return\n\nf()\n",
    "lambda": "f = lambda x, y=1: x * y\ng = lambda: 3\nf(2) + g()\n",
    "lambda-default-captures-loop-var": "fs = [lambda y, x=x: x + y for x in range(3)]\n[f(1) for f in fs]\n",
    "early-return-in-branches": ("def sign(x):\n    if x > 0:\n        return 1\n    elif x < 0:\n        return -1\n"
                                 "    y = 0\n    return y\n\nsign(-3)\n"),
    "early-return-in-nested-if": ("def f(a, b):\n    if a:\n        if b:\n            return 1\n        x = 2\n"
                                  "    else:\n        x = 3\n    return x\n\nf(1, 0)\n"),
    "bare-return-in-branch": "def f(x):\n    if x:\n        return\n    print(x)\n\nf(0)\n",
    "return-inside-for": ("def first_even(xs):\n    for x in xs:\n        if x % 2 == 0:\n            return x\n"
                          "    return None\n\nfirst_even([1, 3, 4])\n"),
    "return-inside-while": ("def f(n):\n    while True:\n        n -= 1\n        if n < 0:\n            return n\n\n"
                            "f(3)\n"),
    "if-elif-else": ("x = 5\nif x > 10:\n    y = 'big'\nelif x > 3:\n    y = 'mid'\nelse:\n    y = 'small'\ny\n"),
    "if-without-else": "x = 1\nif x:\n    x = x + 1\nx\n",
    "conditional-expression": "x = 3\ny = 'odd' if x % 2 else 'even'\ny\n",
    "for-over-list": "total = 0\nfor x in [1, 2, 3]:\n    total = total + x\ntotal\n",
    "for-over-range": "total = 0\nfor i in range(10):\n    total += i\ntotal\n",
    "for-over-str": "out = []\nfor ch in 'abc':\n    out = out + [ch.upper()]\nout\n",
    "for-over-dict": ("d = {'a': 1, 'b': 2}\nkeys = []\nfor k in d:\n    keys = keys + [k]\n"
                      "for k, v in d.items():\n    keys = keys + [v]\nkeys\n"),
    "nested-for": "pairs = []\nfor i in range(3):\n    for j in range(i):\n        pairs.append((i, j))\npairs\n",
    "while": "n = 10\nsteps = 0\nwhile n > 1:\n    n = n // 2\n    steps += 1\nsteps\n",
    "while-break": "i = 0\nwhile True:\n    i += 1\n    if i > 5:\n        break\ni\n",
    "while-break-continue-in-def": ("def f():\n    out = []\n    i = 0\n    while i < 10:\n        i += 1\n"
                                    "        if i % 2:\n            continue\n        if i > 6:\n            break\n"
                                    "        out.append(i)\n    return out\n\nf()\n"),
    "while-inside-for": ("t = 0\nfor i in range(3):\n    j = i\n    while j > 0:\n        j -= 1\n        t += 1\nt\n"),
    "while-break-inside-if": ("x = 5\nif x:\n    while True:\n        x -= 1\n        if x < 2:\n            break\nx\n"),
    "for-break-continue": ("out = []\nfor i in range(10):\n    if i == 7:\n        break\n    if i % 2:\n"
                           "        continue\n    out.append(i)\nout\n"),
    "for-break-in-def": "def f(xs):\n    for x in xs:\n        if x:\n            break\n    return x\n\nf([0, 1])\n",
    "for-continue-inside-if": "t = 0\nif t == 0:\n    for i in range(3):\n        if i:\n            continue\n        t += 1\nt\n",
    "for-break-inside-while": "while True:\n    for i in range(3):\n        break\n    break\n",
    "for-break-and-return-in-def": ("def f(xs):\n    for x in xs:\n        if x > 5:\n            return x\n"
                                    "        if x < 0:\n            break\n    return None\n\nf([1, -1])\n"),
    "tuple-unpacking": "a, b = 1, 2\na, b = b, a\n(c, d), e = (3, 4), 5\n[f, g] = [6, 7]\na + b + c + d + e + f + g\n",
    "augmented-assignment": "x = 1\nx += 2\nx -= 1\nx *= 3\nx //= 2\nx %= 5\nx **= 2\ns = 'a'\ns += 'b'\nx\n",
    "annotated-assignment": "x: int = 3\nx\n",
    "assert": "x = 3\nassert x > 0\nassert x < 10, f'too big: {x}'\n",
    "pass": "def f():\n    pass\n\nif True:\n    pass\nf()\n",
    "literals": ("xs = [1, 2.5, 'three', None, True, ...]\nt = (1,)\nu = ()\nd = {'a': 1, 2: [3]}\ne = {}\n"
                 "s = {1, 2}\n[xs, t, u, d, e, s]\n"),
    "dict-spread": "d = {'a': 1}\ne = {**d, 'b': 2}\nf = {**d}\ng = {'z': 0, **d, **e}\ng\n",
    "list-comprehension": "[x * x for x in range(5)]\n",
    "list-comprehension-filters": "[x for x in range(20) if x % 2 if x % 3]\n",
    "nested-generators": "[(x, y) for x in range(3) if x for y in range(x) if y != 1]\n",
    "nested-comprehensions": "[[y for y in range(x)] for x in range(3)]\n",
    "dict-comprehension": "{k: v for k, v in [('a', 1), ('b', 2)] if v > 1}\n",
    "set-comprehension": "{x % 3 for x in range(10)}\n",
    "generator-expression-argument": "sum(x for x in range(4))\n",
    "comprehension-in-def": "def squares(n):\n    return [i * i for i in range(n) if i]\n\nsquares(4)\n",
    "conditional-in-comprehension": "['e' if x % 2 == 0 else 'o' for x in range(4)]\n",
    "fstrings": ("x = 3.14159\nname = 'pi'\nw = 8\n"
                 "f'{name!r}: {x:.2f} {x:>{w}.3f} {name!s:^10} {{literal}} {x!a} {x=}'\n"),
    "nested-fstring": "x = 1\nf\"{f'{x}'}\"\n",
    "slices": ("xs = list(range(10))\n"
               "[xs[1:3], xs[:2], xs[5:], xs[::2], xs[::-1], xs[-1], xs[1:8:3], 'hello'[1:-1]]\n"),
    "multi-dimensional-slice": "m = grid[1:2, ::3]\nm\n",
    "in-not-in": "xs = [1, 2]\n[1 in xs, 3 not in xs, 'a' in 'abc', not (2 in xs)]\n",
    "chained-comparisons": "x = 5\n[0 < x < 10, 1 <= x <= 5 < 6, x == 5 != 4, x is not None]\n",
    "and-or-not": "a = 0\nb = 'x'\n[a and b, a or b, not a, a or b and 'y', (a or 0) or None]\n",
    "arithmetic-and-unary": ("x = 7\n[x + 1, x - 1, x * 2, x / 2, x // 2, x % 3, x ** 2, -x, +x, ~x, x & 3, x | 8,"
                             " x ^ 1, x << 1, x >> 1]\n"),
    "method-calls": "s = '  Hello, World  '\nwords = s.strip().lower().split(', ')\n' '.join(words).replace('o', '0')\n",
    "attribute-access": "z = complex(1, 2)\nz.real + z.imag\n",
    "keyword-arguments": "sorted([3, 1, 2], key=lambda v: -v, reverse=True)\n",
    "host-call-with-keywords": "r = llm('hello', max_tokens=5)\nlen(r)\n",
    "print": "x = 1\nprint('x is', x)\nprint(x, end='', sep=', ')\nprint()\n",
    "print-inside-def": "def f(x):\n    print(x)\n    return x\n\nf(1)\n",
    "append-as-statement": "xs = []\nfor i in range(3):\n    xs.append(i)\nxs.extend([9])\nxs\n",
    "append-in-while-in-def": ("def collect(n):\n    out = []\n    i = 0\n    while i < n:\n        out.append(i)\n"
                               "        i += 1\n    return out\n\ncollect(3)\n"),
    "def-inside-loop": "fs = []\nfor i in range(3):\n    def g(y, i=i):\n        return y + i\n    fs.append(g)\nfs\n",
    "empty-program": "",
    "comment-only": "# nothing here\n",
    "for-break-top-level-no-if": "for i in range(3):\n    break\n",
    "for-continue-in-def-in-while": ("def f(n):\n    t = 0\n    while n:\n        n -= 1\n        for i in range(n):\n"
                                     "            if i % 2:\n                continue\n            t += i\n    return t\n\nf(4)\n"),
    "for-break-in-if-in-def-that-returns": ("def f(xs):\n    x = None\n    if xs:\n        for x in xs:\n"
                                            "            if x:\n                break\n    return x\n\nf([0, 2])\n"),
    "for-break-in-if-in-def-with-nested-return": ("def f(xs):\n    if xs:\n        for x in xs:\n            if x:\n"
                                                  "                break\n        return x\n    return None\n\nf([0, 2])\n"),
    "return-in-def-in-top-level-loop": "for i in range(2):\n    def g(i=i):\n        return i\ng()\n",
    "break-in-inner-and-outer-loop": "for i in b:\n    while a:\n        break\n    if i:\n        break\n",
}


# id -> reason: supported programs the translator currently rejects
SUPPORTED_BUGS: dict[str, str] = {}


def _supported() -> list:
    return [pytest.param(src, id=k, marks=[pytest.mark.xfail(strict=True, reason=SUPPORTED_BUGS[k])]
                         if k in SUPPORTED_BUGS else [])
            for k, src in SUPPORTED.items()]


@pytest.mark.parametrize("source", _supported())
def test_supported_program_compiles(source):
    compile(source, "<test>", "exec")                   # valid Python to begin with
    fn = compile_program(source)
    assert isinstance(fn, Function)
    text = pretty(fn)
    assert isinstance(text, str) and text.strip()


@pytest.mark.parametrize("first_line", [1, 10])
def test_supported_program_compiles_with_first_line(first_line):
    fn = compile_program(SUPPORTED["early-return-in-branches"], filename="cell.py", first_line=first_line)
    assert pretty(fn).strip()


# ==================================================================================== more checks
_EXITING_FOR = ["for-break-continue", "for-break-in-def", "for-continue-inside-if", "for-break-inside-while",
                "for-break-top-level-no-if", "for-continue-in-def-in-while", "for-break-in-if-in-def-that-returns",
                "for-break-in-if-in-def-with-nested-return"]


@pytest.mark.parametrize("case", _EXITING_FOR)
def test_for_with_break_or_continue_takes_the_early_exit_encoding(case):
    text = pretty(compile_program(SUPPORTED[case]))
    assert "%next" in text and "%loop_again" in text
    assert "%fold" not in text


def test_for_without_exits_is_a_fold():
    text = pretty(compile_program(SUPPORTED["for-over-range"]))
    assert "%fold" in text and "%loop_again" not in text


def test_compile_function_wraps_python_syntax_errors():
    with pytest.raises(EpicSyntaxError) as info:
        compile_function("def f(x):\n    return (x\n", filename="mod.py", first_line=20)
    err = info.value
    assert err.construct == "syntax" and err.filename == "mod.py"
    assert (err.line, err.col) == (21, 11)
    assert "return (x" in str(err)


def test_compile_function_rejects_break_outside_loop():
    with pytest.raises(EpicSyntaxError) as info:
        compile_function("def f(x):\n    if x:\n        break\n    return x\n", first_line=5)
    assert (info.value.construct, info.value.line, info.value.col) == ("break", 7, 8)
    assert info.value.hint


def test_first_unsupported_construct_in_source_order_not_tree_order():
    # ast.walk is breadth-first: it would see the top-level `class` before the nested `import`
    err = _reject("if a:\n    import os\nclass C:\n    pass\n")
    assert (err.construct, err.line) == ("import", 2)
    err = _reject("def f():\n    x = [y async for y in g()]\n    return x\nreturn 1\n")
    assert (err.construct, err.line, err.col) == ("async comprehension", 2, 8)


def test_outside_messages():
    assert "'return' outside function" in str(_reject("return 1\n"))
    for kw in ("break", "continue"):
        msg = str(_reject(f"{kw}\n"))
        assert f"'{kw}' outside loop" in msg and "function or loop" not in msg


def _defs(fn: Function) -> dict:
    return {s.out: s for s in fn.body if isinstance(s, Prim)}


def test_program_returns_value_and_exports():
    fn = compile_program("a = 1\nb = a + 1\na = 5\ndef f():\n    return a\nb\n")
    assert fn.exports == ("a", "b", "f")
    pack = next(s for s in fn.body if isinstance(s, Pack) and s.out is fn.ret)
    assert len(pack.items) == 1 + len(fn.exports)
    prims = _defs(fn)
    assert prims[pack.items[1]].value == 5                    # the final binding of `a`, not the first
    assert pack.items[0] is not pack.items[1]


def test_program_without_final_expression_returns_none_and_exports():
    fn = compile_program("x = 1\nfor i in range(3):\n    if i:\n        break\n    x += i\n")
    assert fn.exports == ("i", "x")
    pack = next(s for s in fn.body if isinstance(s, Pack) and s.out is fn.ret)
    assert _defs(fn)[pack.items[0]].value is None
    assert len(pack.items) == 3


def test_empty_program_exports_nothing():
    fn = compile_program("")
    assert fn.exports == ()
    pack = next(s for s in fn.body if isinstance(s, Pack) and s.out is fn.ret)
    assert len(pack.items) == 1


def test_function_fields_are_the_declared_contract():
    """The IR Function is the typed contract with the runtime: its fields are declared (ir.py), and
    nothing can be attached to it ad hoc."""
    fn = compile_program("def f(a, b=2):\n    return a + b\nf(1)\n")
    inner = next(s.fn for s in fn.body if isinstance(s, Def))
    assert inner.param_names == ("a", "b") and inner.ndefaults == 1 and inner.exports == ()
    assert fn.exports == ("f",) and fn.param_names == () and fn.filename is None
    with pytest.raises(AttributeError):
        fn.undeclared = 1


def _ops(fn: Function) -> set[str]:
    names = {s.value.name for s in fn.body if isinstance(s, Prim) and isinstance(s.value, Op)}
    for s in fn.body:
        if isinstance(s, Def):
            names |= _ops(s.fn)
    return names


def test_every_intrinsic_the_translator_names_is_bound_by_the_runtime():
    """The other half of the IR contract: `Op(name)` is only a name (lang never imports runtime), so
    every name the translator emits must be an intrinsic the runtime binds."""
    from epic_kernel.runtime.intrinsics import INTRINSICS
    from epic_kernel.testing.progen import generate

    programs = list(SUPPORTED.values()) + [generate(seed) for seed in range(200)]
    named = set().union(*(_ops(compile_program(src)) for src in programs))
    assert {"add", "getitem", "fold", "map", "bool", "is_normal", "loop_again", "genexp"} <= named
    assert named <= set(INTRINSICS), named - set(INTRINSICS)
