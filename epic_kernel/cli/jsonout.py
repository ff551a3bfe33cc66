"""`epic run --json`: the run as one JSON object (value, calls, rules, failures), whatever the values hold."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["jsonable", "result_json", "syntax_error_json"]

def jsonable(v: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of a program value: containers recurse, anything else becomes its repr."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if _depth > 50:
        return repr(v)
    if isinstance(v, list | tuple):
        return [jsonable(x, _depth + 1) for x in v]
    if isinstance(v, dict):
        return {_json_key(k): jsonable(x, _depth + 1) for k, x in v.items()}
    return repr(v)


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, bool | int) or (isinstance(k, float) and math.isfinite(k)):
        return json.dumps(k)             # what json.dumps itself would write for the key
    return repr(k)


def _call_dicts(res: Any) -> list[dict]:
    """CallRecord.as_dict() for every call, with start/end in seconds since the run started."""
    out = []
    t0 = getattr(res, "start", 0.0) or 0.0
    for c in getattr(res, "calls", None) or []:
        d = {k: jsonable(v) for k, v in c.as_dict().items()}
        d["start"] = round(c.start - t0, 6)
        d["end"] = None if c.end is None else round(c.end - t0, 6)
        d["latency"] = None if c.latency is None else round(c.latency, 6)
        out.append(d)
    return out


def result_json(res: Any, strategy: str, error: str | None = None, failures: list | None = None) -> dict:
    obj: dict[str, Any] = {
        "value": jsonable(res.value) if res is not None else None,
        "elapsed": res.elapsed if res is not None else 0.0,
        "steps": res.steps if res is not None else 0,
        "rules": dict(res.rules) if res is not None else {},
        "strategy": strategy,
        "calls": _call_dicts(res) if res is not None else [],
    }
    if error is not None:
        obj["error"] = error
        obj["failures"] = [{k: jsonable(v) for k, v in f.as_dict().items() if k not in ("start", "end")}
                           for f in failures or []]
    return obj



def syntax_error_json(message: str, strategy: str, error: Any) -> dict:
    """The JSON object of a program that did not compile: no value, no calls, where it went wrong."""
    return {"value": None, "elapsed": 0.0, "steps": 0, "rules": {}, "strategy": strategy, "calls": [],
            "error": message, "error_type": "EpicSyntaxError", "line": error.lineno, "col": error.offset}
