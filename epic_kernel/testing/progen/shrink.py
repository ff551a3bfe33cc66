"""The shrinker: cuts a failing program down to a few lines while the same finding persists.

Why greedy and by AST: a generated program that shows a finding is tens of lines of nested code; the
one-at-a-time reduction (drop a statement, unwrap a compound statement, replace an expression by a
part of it or a constant) keeps only what the finding needs, and never produces a program the
generator could not have written (exclusion lazy-map-filter).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Any

from .exclusions import excluded
from .runner import STRATEGIES, Finding, compare, run_cpython

__all__ = ["shrink"]


def _candidates(tree: ast.Module) -> Iterator[ast.Module]:
    """Smaller variants of `tree`: a statement removed, a compound statement replaced by its body,
    an expression replaced by one of its sub-expressions or a constant."""
    import copy
    bodies: list[tuple[Any, str]] = []
    for node in ast.walk(tree):
        for attr in ("body", "orelse"):
            b = getattr(node, attr, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                bodies.append((node, attr))
    for idx_b in range(len(bodies)):
        node, attr = bodies[idx_b]
        stmts = getattr(node, attr)
        for i in range(len(stmts)):
            if node is tree and i == len(stmts) - 1:
                continue                      # the final expression gives the value
            t2 = copy.deepcopy(tree)
            n2, a2 = _same(t2, tree, node), attr
            s2 = getattr(n2, a2)
            old = s2[i]
            del s2[i]
            if not s2 and a2 == "body":
                s2.append(ast.Pass())
            yield t2
            if isinstance(old, ast.If | ast.For | ast.While) and old.body:
                t3 = copy.deepcopy(tree)
                s3 = getattr(_same(t3, tree, node), attr)
                inner = s3[i].body
                s3[i:i + 1] = inner
                yield t3
    exprs = [n for n in ast.walk(tree) if isinstance(n, ast.expr)
             and not isinstance(n, ast.Name | ast.Constant | ast.FormattedValue | ast.JoinedStr)
             and not isinstance(getattr(n, "ctx", None), ast.Store)]
    for e in exprs:
        subs = [c for c in ast.iter_child_nodes(e) if isinstance(c, ast.expr)
                and not (isinstance(e, ast.Call) and c is e.func) and not isinstance(c, ast.Name)
                and not _lazy(c)        # exclusion lazy-map-filter: never unwrap list(map(...))
                and not isinstance(c, ast.Lambda)]   # nor turn a consumed lambda into a stored one
        for repl in [*subs, ast.Constant(1), ast.Constant("a"), ast.List([], ast.Load())]:
            t2 = copy.deepcopy(tree)
            target = _same(t2, tree, e)
            if _replace(t2, target, copy.deepcopy(repl)):
                yield t2


def _lazy(node: ast.AST) -> bool:
    if not excluded("lazy-map-filter"):
        return False
    return isinstance(node, ast.GeneratorExp) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("map", "filter", "zip", "enumerate", "reversed"))


def _same(new_tree: ast.AST, old_tree: ast.AST, old_node: ast.AST) -> Any:
    """The node of a deep copy at the position `old_node` has in the original (walk order is stable)."""
    for a, b in zip(ast.walk(old_tree), ast.walk(new_tree), strict=True):
        if a is old_node:
            return b
    raise LookupError


def _replace(tree: ast.AST, target: ast.AST, repl: ast.AST) -> bool:
    for parent in ast.walk(tree):
        for fname, val in ast.iter_fields(parent):
            if val is target:
                setattr(parent, fname, repl)
                return True
            if isinstance(val, list):
                for i, item in enumerate(val):
                    if item is target:
                        val[i] = repl
                        return True
    return False


def shrink(src: str, finding: Finding, budget: int = 400,
           keep: Callable[[str], bool] | None = None) -> str:
    """Greedy one-at-a-time reduction: accept any smaller program that still shows a finding with
    the same key; stop at a fixpoint or after `budget` tries."""
    strategies = tuple(s for s in STRATEGIES if (f"{s[0]}/{s[1]}" if s[0] == "random" else s[0]) == finding.strategy)
    strategies = strategies or STRATEGIES
    cpython = not finding.kind.startswith("sampled-")
    if not cpython:                           # found on `sampled_variant(src)`: strategies only
        finding = Finding(finding.kind.removeprefix("sampled-"), finding.strategy, finding.expected,
                          finding.got, finding.gist)

    orig_ok = run_cpython(src, timeout=2).ok

    def still(cand: str) -> bool:
        try:
            tree = ast.parse(cand)
        except SyntaxError:
            return False
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            return False
        if keep is not None:
            return keep(cand)
        py = run_cpython(cand, timeout=2)
        if orig_ok and not py.ok and finding.kind not in ("ok-vs-error", "error-type"):
            return False
        if py.ok and " at 0x" in py.value_repr:      # a function as the value: not a program we generate
            return False
        if cpython and finding.kind in ("ok-vs-error", "error-type") and py.ok:
            return False
        strat = strategies if not finding.kind.startswith("strategy") else (STRATEGIES[0], *strategies)
        return any(f.key == finding.key for f in compare(cand, strat, py, cpython=cpython))

    tries = 0
    best = src
    progress = True
    resume = 0
    while progress and tries < budget:
        progress = False
        for i, cand_tree in enumerate(_candidates(ast.parse(best))):
            if i < resume:
                continue
            tries += 1
            if tries > budget:
                break
            try:
                cand = ast.unparse(cand_tree) + "\n"
            except Exception:          # a replacement the unparser cannot write (inside an f-string)
                continue
            if len(cand) < len(best) and still(cand):
                best, resume = cand, max(0, i - 1)
                progress = True
                break
        else:
            if resume:                       # one full pass from the start before giving up
                resume, progress = 0, True
    return best
