"""The public API, pinned: `epic_kernel.__all__`, the exception tree users catch, and the signature
of every public function, class and method, compared with tests/data/public_api.json.

A change here is a change for every user. When it is intended, regenerate the snapshot and commit it
with the change (the diff then shows reviewers exactly what moved):

    EPIC_UPDATE_API=1 .venv/bin/python -m pytest tests/test_public_api.py
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import epic_kernel
import epic_kernel.errors

SNAPSHOT = Path(__file__).parent / "data" / "public_api.json"
MODULES = (epic_kernel, epic_kernel.errors)


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):          # a builtin without a text signature
        return "(...)"


def _describe_class(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {"bases": [b.__name__ for b in cls.__bases__], "signature": _signature(cls)}
    if dataclasses.is_dataclass(cls):
        out["fields"] = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    members = {}
    for name, value in sorted(vars(cls).items()):
        if name.startswith("_") and name not in ("__call__", "__init__"):
            continue
        if isinstance(value, property):
            members[name] = "property"
        elif isinstance(value, (staticmethod, classmethod)):
            members[name] = f"{type(value).__name__}{_signature(value.__func__)}"
        elif inspect.isfunction(value):
            members[name] = _signature(value)
    out["members"] = members
    return out


def describe_api() -> dict[str, Any]:
    """What a user can import from the public modules, as JSON-ready data."""
    api: dict[str, Any] = {}
    for module in MODULES:
        entries: dict[str, Any] = {}
        for name in sorted(module.__all__):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                entries[name] = {"class": _describe_class(obj)}
            elif callable(obj):
                entries[name] = {"function": _signature(obj)}
            else:
                entries[name] = {"value": type(obj).__name__}
        api[module.__name__] = {"__all__": sorted(module.__all__), "names": entries}
    return api


def test_public_api_matches_the_snapshot() -> None:
    now = json.dumps(describe_api(), indent=1, sort_keys=True) + "\n"
    if os.environ.get("EPIC_UPDATE_API") == "1":
        SNAPSHOT.write_text(now, encoding="utf-8")
    pinned = SNAPSHOT.read_text(encoding="utf-8")
    if now != pinned:
        diff = "".join(difflib.unified_diff(pinned.splitlines(True), now.splitlines(True),
                                            "tests/data/public_api.json (pinned)", "the code now"))
        raise AssertionError(
            "the public API changed (names in __all__, or a signature of a public function, class or "
            "method). If that is intended, regenerate the snapshot and commit it with the change:\n"
            "    EPIC_UPDATE_API=1 .venv/bin/python -m pytest tests/test_public_api.py\n\n" + diff)


def test_the_snapshot_notices_a_change(monkeypatch) -> None:
    """The check can fail: a changed signature changes the description."""
    before = describe_api()

    def run(source: str, *, strategy: str = "opportunistic") -> None: ...

    monkeypatch.setattr(epic_kernel, "run", run)
    assert describe_api() != before
