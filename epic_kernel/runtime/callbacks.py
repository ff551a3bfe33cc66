"""Python builtins that call back into epic code, run inside the run instead of by host code.

Handed to host code, an epic function is a Python callable that starts a nested run per call:
correct, but its calls run one after another, outside this run's trace, batches and sample
numbering. For the builtins programs use most with callbacks, the callback is instead instantiated
in this run, once per element and all at once (so its `llm()` calls dispatch together):

    map(f, xs), filter(f, xs)        lazy, like a generator expression (see lazy.py): `next`/`any`/
                                     `all` and loops that may break walk them one element at a time
    sorted(xs, key=f, reverse=r)     every f(x) at once, then Python's own sort on the keys
    min(xs, key=f), max(xs, key=f)   (stable: ties keep Python's first element; `default=` supported)

Anything else (several iterables, a host callable, other keywords) goes to the host builtin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .graph import DELTA, PENDING, CallNode, Cell, Closure, PackVal
from .interop import EpicFunction
from .lazy import LazySeq
from .partial_builtins import IO_AWARE, STRUCTURAL
from .stepkit import Intrinsic, done, elements, emit_calls

__all__: list[str] = []            # importing it installs the structural builtins


def _epic_callable(ev: Any, cell: Cell) -> Any:
    """The cell's closure if it holds an epic function, PENDING if not known yet, else None."""
    v, _root = ev.whnf(cell)
    if v is PENDING:
        return PENDING
    if v.__class__ is EpicFunction:
        return v.closure
    return v if v.__class__ is Closure else None


def _lazy(op: str) -> Callable[[Any, Any], bool]:
    """map(f, xs) / filter(f, xs) of an epic function: a lazy sequence of f over xs."""

    def apply(ev: Any, node: Any) -> bool:
        if len(node.args) != 2 or node.site.kwnames:
            return False
        f = _epic_callable(ev, node.args[0])
        if f is PENDING:
            ev.park(node, ev.whnf(node.args[0])[1])
            return True
        if f is None:
            return False
        ev.fired = DELTA
        ev.pass_io(node)
        ev.bind(node.out, LazySeq(node.args[1], Cell(f), op, node.inner(), node.site, node.origin))
        return True

    return apply


def _keyed(name: str, allowed: frozenset[str]) -> Callable[[Any, Any], bool]:
    """sorted/min/max(xs, key=f) of an epic function: every key at once, then the order from the
    host builtin on the keys alone (the elements may still be pending)."""

    def apply(ev: Any, node: Any) -> bool:
        kw = node.site.kwnames
        if "key" not in kw or not set(kw) <= allowed or len(node.args) != len(kw) + 1:
            return False
        kwargs = dict(zip(kw, node.args[1:], strict=True))
        f = _epic_callable(ev, kwargs["key"])
        if f is PENDING:
            ev.park(node, ev.whnf(kwargs["key"])[1])
            return True
        if f is None:
            return False
        items = elements(ev, node, node.args[0])
        if items is None:
            return True
        ev.fired = DELTA
        options = tuple(k for k in kw if k != "key")
        plain = replace(node.site, kwnames=())
        keys = emit_calls(ev, node, Cell(f), [[x] for x in items], plain)     # threads the print token
        ev.push(CallNode(Cell(_FINISH[name]), [Cell(tuple(items)), Cell(tuple(keys)),
                                                *(kwargs[k] for k in options)],
                          node.out, None, None, replace(node.site, kwnames=options), node.frame, node.origin))
        return True

    return apply


def _finish(name: str) -> Callable[[Any, Any], None]:
    builtin = {"sorted": sorted, "min": min, "max": max}[name]

    def finish(ev: Any, node: Any) -> None:
        items, keys = node.args[0].val, [ev.to_host(k) for k in node.args[1].val]   # Wait/Poison: guarded
        options = {k: ev.to_host(c) for k, c in zip(node.site.kwnames, node.args[2:], strict=True)}
        order = range(len(items))
        try:
            if name == "sorted":
                ranked = sorted(order, key=keys.__getitem__, reverse=bool(options.get("reverse", False)))
                done(ev, node, PackVal(tuple(items[i] for i in ranked), "list"))
                return
            if not items and "default" in options:
                done(ev, node, options["default"])
                return
            best = builtin(order, key=keys.__getitem__)
        except Exception as e:                          # incomparable keys, an empty sequence
            ev.fail(node, e)
            return
        ev.fired = DELTA
        ev.alias(node.out, items[best])

    return finish


_FINISH = {name: Intrinsic(f"{name}_by_key", _finish(name), structural=True) for name in ("sorted", "min", "max")}

IO_AWARE.update({id(sorted), id(min), id(max)})

STRUCTURAL[id(map)] = _lazy("map")
STRUCTURAL[id(filter)] = _lazy("filter")
STRUCTURAL[id(sorted)] = _keyed("sorted", frozenset({"key", "reverse"}))
STRUCTURAL[id(min)] = _keyed("min", frozenset({"key", "default"}))
STRUCTURAL[id(max)] = _keyed("max", frozenset({"key", "default"}))
