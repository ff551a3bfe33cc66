"""Running a program in CPython and in epic (under every strategy) and comparing the two: the
differential test's oracle.

Why strategies too: opportunistic evaluation must be confluent, so besides agreeing with CPython the
strategies must agree with each other on the value, the output, the failures and the multiset of
calls dispatched.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import EpicError, EpicInternalError, EpicSyntaxError
from ...llm.sim import SimBackend
from ...runtime.api import run
from .host import cpython_namespace, epic_namespace

__all__ = ["STRATEGIES", "Finding", "Outcome", "Timeout", "compare", "run_cpython", "run_epic", "sampled_variant"]

STRATEGIES: tuple[tuple[str, int], ...] = (
    ("opportunistic", 0), ("opportunistic-dfs", 0), ("random", 1), ("random", 2), ("random", 3), ("sequential", 0))


class Timeout(Exception):
    """A run took longer than the tester allows (a hang is a finding, not a stuck fuzz run)."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:

    def fire(signum: int, frame: Any) -> None:
        raise Timeout(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """What one run produced, in a form both sides share."""

    ok: bool
    value: Any = None
    value_repr: str = ""
    stdout: str = ""
    errors: list[str] = field(default_factory=list)   # exception type names (epic: every failure, the
    #                                                   one the run stopped at, Python's, first)
    error_text: str = ""
    error: str = ""         # the error raised, "Type: message" (epic: its first failure in program order)
    kind: str = "ok"        # ok | error | syntax | internal | crash | timeout
    gist: str = ""          # the first error as "Type: message", without the program's own names
    calls: Counter = field(default_factory=Counter)   # (fn, args) multiset of the calls started
    fns: Counter = field(default_factory=Counter)     # fn-name multiset of the calls started
    done: Counter = field(default_factory=Counter)    # (fn, args) multiset of the calls that finished


def _safe_repr(v: Any) -> str:
    try:
        return repr(v)
    except Exception as e:             # pragma: no cover - a value whose repr fails
        return f"<repr failed: {type(e).__name__}>"


def run_cpython(src: str, timeout: float = 10.0) -> Outcome:
    """Run the program as plain Python with the synchronous twins; value of the last expression."""
    tree = ast.parse(src)
    *stmts, last = tree.body
    log: list = []
    ns = cpython_namespace(log)
    out = io.StringIO()
    try:
        with _deadline(timeout), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            exec(compile(ast.Module(stmts, type_ignores=[]), "<cpython>", "exec"), ns)
            value = eval(compile(ast.Expression(last.value), "<cpython>", "eval"), ns)
    except Timeout as e:
        return Outcome(False, stdout=out.getvalue(), kind="timeout", error_text=str(e))
    except Exception as e:
        return Outcome(False, stdout=out.getvalue(), errors=[type(e).__name__], error_text=str(e),
                       kind="error", fns=Counter(f for f, _ in log), error=_told(e))
    return Outcome(True, value, _safe_repr(value), out.getvalue(), fns=Counter(f for f, _ in log))


def run_epic(src: str, strategy: str, seed: int = 0, timeout: float = 30.0) -> Outcome:
    """Run the program in epic on the zero-latency sim with the async host functions. A run that
    takes `timeout` seconds (generated programs take milliseconds) is a "timeout" finding; the
    deadline fires in the main thread, possibly inside a host call, hence the check of failures."""
    log: list = []
    out = io.StringIO()
    try:
        with _deadline(timeout), contextlib.redirect_stdout(out):
            res = run(src, strategy=strategy, seed=seed, backend=SimBackend(latency=0),
                      namespace=epic_namespace(log), trace=False)
    except Timeout as e:
        return Outcome(False, stdout=out.getvalue(), kind="timeout", error_text=str(e))
    except EpicSyntaxError as e:
        return Outcome(False, stdout=out.getvalue(), errors=["EpicSyntaxError"], error_text=str(e), kind="syntax",
                       gist=_gist(e.msg.split("\n")[0]))
    except EpicInternalError as e:
        return Outcome(False, stdout=out.getvalue(), errors=["EpicInternalError"],
                       error_text=f"{e}", kind="internal", gist=_gist(f"EpicInternalError: {e}"))
    except EpicError as e:
        errs = [type(f.error).__name__ for f in e.failures]
        calls = Counter((c.fn, c.args_preview) for c in e.result.calls) if e.result is not None else Counter()
        done = Counter((c.fn, c.args_preview) for c in e.result.calls if c.state == "done") \
            if e.result is not None else Counter()
        internal = [f for f in e.failures if isinstance(f.error, EpicInternalError)]
        worst = internal[0] if internal else (e.failures[0] if e.failures else None)
        gist = _gist(f"{type(worst.error).__name__}: {worst.error}") if worst is not None else _gist(str(e))
        kind = "internal" if internal else "timeout" if "Timeout" in errs else "error"
        return Outcome(False, stdout=out.getvalue(), errors=errs, error_text=str(e), kind=kind, calls=calls,
                       fns=Counter(fn for (fn, _), k in calls.items() for _ in range(k)), gist=gist, done=done,
                       error=_told(e.failures[0].error) if e.failures else "")
    except Exception as e:
        return Outcome(False, stdout=out.getvalue(), errors=[type(e).__name__], error_text=f"{type(e).__name__}: {e}",
                       kind="crash", gist=_gist(f"{type(e).__name__}: {e}"))
    calls = Counter((c.fn, c.args_preview) for c in res.calls)
    return Outcome(True, res.value, _safe_repr(res.value), out.getvalue(), calls=calls,
                   fns=Counter(c.fn for c in res.calls), done=calls)


def _told(e: BaseException) -> str:
    """An error as the comparison reads it: its type and message."""
    return f"{type(e).__name__}: {e}"


def _gist(text: str) -> str:
    """An error message with the program's generated names, numbers and long quotes blanked, so
    one mechanism gives one gist."""
    text = text.split("\n")[0][:120]
    text = re.sub(r"`[^`]*`", "`_`", text)
    text = re.sub(r"\b[a-z]+\d+\b", "_", text)
    text = re.sub(r"'[^']{12,}'", "'_'", text)
    return re.sub(r"-?\b\d+\b", "N", text)


@dataclass
class Finding:
    """One disagreement. `key` groups findings of one mechanism (what the shrinker keeps)."""

    kind: str
    strategy: str
    expected: str
    got: str
    gist: str = ""

    @property

    def key(self) -> tuple[str, str]:
        """(kind, gist): what groups findings of one mechanism."""
        return (self.kind, self.gist)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.strategy}: expected {self.expected} | got {self.got}"


def _error_matches(py: str, epic: list[str]) -> bool:
    """Sensible error-type equality: the same name, or a Python subclass relation (UnboundLocalError
    is a NameError; epic reports the exception Python would have raised)."""
    import builtins
    pt = getattr(builtins, py, None)
    for name in epic:
        if name == py:
            return True
        et = getattr(builtins, name, None)
        if isinstance(pt, type) and isinstance(et, type) and (issubclass(et, pt) or issubclass(pt, et)):
            return True
    return False


def _call_gist(want: Counter, got: Counter, extra: bool = True) -> str:
    """Which functions were called too few (-) or too many (+) times: missing calls and speculative
    ones are different mechanisms."""
    parts = [f"{fn}-" for fn in sorted(want) if got[fn] < want[fn]]
    if extra:
        parts += [f"{fn}+" for fn in sorted(got) if got[fn] > want[fn]]
    return " ".join(parts) or "same functions, other arguments"


def _sub_multiset(small: Counter, big: Counter) -> bool:
    return all(big[k] >= v for k, v in small.items())


def compare(src: str, strategies: tuple[tuple[str, int], ...] = STRATEGIES,
            expected: Outcome | None = None, cpython: bool = True) -> list[Finding]:
    """Every disagreement of `src` between CPython and epic, and between epic's strategies.
    `cpython=False` compares the strategies only (programs whose answers CPython cannot know:
    sampled calls, whose k-th sample is named by its place in epic's program)."""
    py = expected if expected is not None else run_cpython(src)
    findings: list[Finding] = []
    if py.kind == "timeout":
        return findings                      # the generator wrote a slow program: nothing to compare
    first: Outcome | None = None
    first_name = ""
    for strategy, seed in strategies:
        name = f"{strategy}/{seed}" if strategy == "random" else strategy
        ep = run_epic(src, strategy, seed)

        def add(kind: str, exp: str, got: str, name: str = name, gist: str = "") -> None:
            findings.append(Finding(kind, name, exp[:300], got[:300], gist))

        if ep.kind in ("internal", "crash", "timeout", "syntax"):
            add(ep.kind, "ok" if py.ok else f"{py.errors}", ep.error_text.replace("\n", " "), gist=ep.gist)
            continue
        if cpython:
            _against_cpython(py, ep, add, sequential=strategy == "sequential")
        if first is None:
            first, first_name = ep, name
            continue
        _against_first(first, first_name, ep, add)
    return findings


def _against_cpython(py: Outcome, ep: Outcome, add: Callable[..., None], sequential: bool = False) -> None:
    """One strategy's run against CPython's: the same value, output and calls when CPython succeeds.
    When it fails, epic stops where Python stops: the same error (type and message), exactly the
    same output, and every call CPython made among the calls epic started (a concurrent strategy may
    have started calls after the failure point before it knew of it, and cancelled them); under
    `sequential` exactly CPython's calls."""
    if py.ok and not ep.ok:
        add("error-vs-ok", f"value {py.value_repr}", ep.error_text.replace("\n", " "), gist=ep.gist)
    elif not py.ok and ep.ok:
        add("ok-vs-error", f"{py.errors[0]}: {py.error_text}", f"value {ep.value_repr}", gist=py.errors[0])
    elif py.ok:
        if ep.value_repr != py.value_repr or type(ep.value) is not type(py.value):
            add("value", py.value_repr, ep.value_repr)
        if ep.stdout != py.stdout:
            add("stdout", repr(py.stdout), repr(ep.stdout))
        if ep.fns != py.fns:
            add("calls", str(dict(py.fns)), str(dict(ep.fns)), gist=_call_gist(py.fns, ep.fns))
    else:                                   # both failed
        if not _error_matches(py.errors[0], ep.errors[:1]):
            add("error-type", py.error, ep.error_text.replace("\n", " "), gist=f"{py.errors[0]} -> {ep.gist}")
        elif ep.error != py.error:
            add("error-message", py.error, ep.error, gist=f"{py.errors[0]}: {_gist(ep.error)}")
        if ep.stdout != py.stdout:
            add("stdout", repr(py.stdout), repr(ep.stdout), gist="failing program")
        if sequential and ep.fns != py.fns:
            add("calls", str(dict(py.fns)), str(dict(ep.fns)), gist="sequential " + _call_gist(py.fns, ep.fns))
        elif not _sub_multiset(py.fns, ep.fns):
            add("calls", str(dict(py.fns)), str(dict(ep.fns)), gist=_call_gist(py.fns, ep.fns, extra=False))


def _against_first(first: Outcome, first_name: str, ep: Outcome, add: Callable[..., None]) -> None:
    """Confluence across strategies: value, output, the error a failing run raises (its first failure
    in program order), the multiset of dispatched requests (of a failing run: of finished calls, as
    calls after the failure point may have started, and been cancelled, under one strategy only)."""
    if (ep.ok, ep.value_repr, ep.error) != (first.ok, first.value_repr, first.error):
        add("strategy-result", f"{first_name}: {first.value_repr or first.error}", ep.value_repr or ep.error)
    elif ep.stdout != first.stdout:
        add("strategy-stdout", f"{first_name}: {first.stdout!r}", repr(ep.stdout))
    if ep.ok and ep.calls != first.calls:
        add("strategy-calls", f"{first_name}: {dict(first.calls)}", str(dict(ep.calls)),
            gist=_call_gist(first.fns, ep.fns))
    elif not ep.ok and ep.done != first.done:
        add("strategy-calls", f"{first_name}: finished {dict(first.done)}", f"finished {dict(ep.done)}",
            gist="failing program: " + _call_gist(Counter(f for f, _ in first.done.elements()),
                                                  Counter(f for f, _ in ep.done.elements())))


def sampled_variant(src: str) -> str:
    """`src` with every `llm()` call sampled (temperature=1.0): compared across strategies only,
    which is what checks that the k-th sample is a function of the program, not of the schedule."""
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "llm":
            node.keywords.append(ast.keyword("temperature", ast.Constant(1.0)))
    return ast.unparse(tree) + "\n"

