"""Session defaults for `%%epic` cells, set with `%epic config key=value ...`."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from IPython.core.error import UsageError

__all__ = ["SessionConfig", "parse_bool"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(key: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UsageError(f"%epic config: {key} takes on/off (or true/false), not {text!r}")


@dataclass
class SessionConfig:
    """What a `%%epic` cell uses when its line does not say otherwise.

    backend: None means the runtime's default (EPIC_BACKEND, else the local model); a name
        ("sim", "openai", "replay:FILE") or the name of a notebook variable holding a Backend.
    view: auto | widget | html | text | none (EPIC_VIEW sets the initial value).
    cache: the on-disk answer cache (on by default in notebooks).
    """

    backend: str | None = None
    model: str | None = None
    strategy: str = "opportunistic"
    view: str = "auto"
    cache: bool = True

    @classmethod
    def from_env(cls) -> SessionConfig:
        return cls(view=(os.environ.get("EPIC_VIEW") or "auto").lower())

    def describe(self) -> str:
        return " ".join(f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self))

    def updated(self, pairs: list[str], *, strategies: tuple[str, ...], views: tuple[str, ...]) -> dict[str, Any]:
        """Parse `key=value` words into validated changes (raises UsageError; changes nothing)."""
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for word in pairs:
            key, sep, value = word.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not sep or key not in known:
                raise UsageError(f"%epic config: expected key=value with key one of {', '.join(sorted(known))}; "
                                 f"got {word!r}")
            value = value.strip()
            if key == "cache":
                changes[key] = parse_bool(key, value)
            elif key == "strategy":
                if value not in strategies:
                    raise UsageError(f"%epic config: strategy must be one of {', '.join(strategies)}, not {value!r}")
                changes[key] = value
            elif key == "view":
                if value.lower() not in views:
                    raise UsageError(f"%epic config: view must be one of {', '.join(views)}, not {value!r}")
                changes[key] = value.lower()
            else:                                   # backend, model: "default"/"none" resets
                changes[key] = None if value.lower() in ("", "none", "default") else value
        return changes


def _show(v: Any) -> str:
    if v is None:
        return "default"
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)
