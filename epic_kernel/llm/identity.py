"""Stable descriptions of backend settings for the answer cache's key (`Backend.identity()`).

Why: the cache must never hand one backend's answers to another. Settings such as a model name or
a URL are plain data, but a scripted sim carries regexes and *callables*; two lambdas with the same
name can answer differently. A callable is therefore described by its qualified name, a digest of
its compiled code (bytecode, constants, names) and, recursively, the values its closure and
defaults capture. Anything without a stable description falls back to its `repr` together with its
`id()`: such a value is never shared across processes (a cache miss, never a wrong answer).
"""

from __future__ import annotations

import hashlib
import re
import types
from typing import Any

__all__ = ["describe", "digest"]

_MAX_DEPTH = 4


def digest(data: Any) -> str:
    """A short SHA-256 of `describe(data)`'s JSON text."""
    import json

    return hashlib.sha256(json.dumps(describe(data), sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe(value: Any, depth: int = 0) -> Any:
    """JSON-ready data that changes whenever `value` could behave differently."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth > _MAX_DEPTH:
        return _opaque(value)
    if isinstance(value, re.Pattern):
        return {"regex": value.pattern if isinstance(value.pattern, str) else repr(value.pattern),
                "flags": int(value.flags)}
    if isinstance(value, (list, tuple)):
        return [describe(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((describe(v, depth + 1) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): describe(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))}
    if isinstance(value, types.FunctionType):
        return _function(value, depth)
    if isinstance(value, types.MethodType):
        return {"method": _function(value.__func__, depth) if isinstance(value.__func__, types.FunctionType)
                else _opaque(value.__func__), "self": describe(value.__self__, depth + 1)}
    if isinstance(value, type):
        return {"type": f"{value.__module__}.{value.__qualname__}"}
    identity = getattr(value, "identity", None)
    if callable(identity) and hasattr(value, "generate"):        # a Backend (a fallback, a wrapped one)
        return identity()
    return _opaque(value)


def _function(fn: types.FunctionType, depth: int) -> dict[str, Any]:
    closure = [describe(c.cell_contents, depth + 1) if _filled(c) else None for c in fn.__closure__ or ()]
    return {"function": f"{fn.__module__}.{fn.__qualname__}", "code": _code_digest(fn.__code__),
            "defaults": describe(fn.__defaults__ or (), depth + 1),
            "kwdefaults": describe(fn.__kwdefaults__ or {}, depth + 1), "closure": closure}


def _code_digest(code: types.CodeType) -> str:
    h = hashlib.sha256(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        h.update((_code_digest(const) if isinstance(const, types.CodeType) else repr(const)).encode())
    return h.hexdigest()[:16]


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:                         # an empty cell (a name assigned later)
        return False
    return True


def _opaque(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}@{id(value):x}:{repr(value)[:200]}"
