"""Cutting text to fit one line of a table, a message or a preview: the one truncation rule.

Every preview in the package (a call's prompt and result, a request, a widget cell, a CLI row) is
cut here, so a long value ends in the same "…" everywhere and a width change is made once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["clip"]


def clip(text: Any, n: int, *, squash: bool = True) -> str:
    """`text` on one line, at most `n` characters, ending in "…" when cut.

    squash=True folds every run of whitespace into one space (tables, where alignment matters);
    squash=False only turns newlines into spaces (previews that keep the value's own spacing)."""
    text = " ".join(str(text).split()) if squash else str(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"
