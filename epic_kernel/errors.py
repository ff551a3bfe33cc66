"""The exceptions users see, in three tiers (drawn as a tree so the hierarchy reads at a glance):

    EpicException
    +-- EpicSyntaxError        the program uses Python the language does not support (line, column, hint)
    +-- EpicError              the program ran; some calls failed (each named with its source line);
    |                          every finished call and value is kept on `.result`
    |   +-- EpicInterrupted    the run was cancelled (interrupt, Cancel button); finished work is kept
    +-- EpicInternalError      a bug in epic-kernel; please file it
"""

from __future__ import annotations

from typing import Any

__all__ = ["EpicError", "EpicException", "EpicInternalError", "EpicInterrupted", "EpicSyntaxError", "unwrap"]


class EpicException(Exception):
    """Base class of everything epic-kernel raises on purpose."""


class EpicSyntaxError(EpicException, SyntaxError):
    """A construct outside the epic subset of Python, reported at its line and column with a hint."""

    def __init__(self, message: str, *, construct: str = "", line: int | None = None, col: int | None = None,
                 hint: str = "", filename: str = "<epic>", source_line: str | None = None):
        full = message + (f"\n  hint: {hint}" if hint else "")
        SyntaxError.__init__(self, full, (filename, line, (col or 0) + 1, source_line, None, None))
        self.construct = construct
        self.line = line
        self.col = col
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.filename}, line {self.line}" + (f", column {self.col + 1}" if self.col is not None else "")
        text = f"{self.msg} ({where})"
        if self.text:
            text += f"\n    {self.text.strip()}"
        return text


class EpicError(EpicException):
    """Some calls failed. `failures` lists them (CallRecords with `.error` and `.site_line`);
    `result` is the partial RunResult: every call that finished is in `result.calls` (and the cache)."""

    def __init__(self, message: str, failures: list[Any] | None = None, result: Any = None):
        super().__init__(message)
        self.failures = failures or []
        self.result = result


def unwrap(exc: BaseException) -> BaseException:
    """The error a callback raised, not the nested run that reported it: host code (`sorted(key=...)`,
    `map`) calls an epic function through a nested run, whose EpicError wraps the user's own error."""
    while isinstance(exc, EpicError) and not isinstance(exc, EpicInterrupted) and exc.failures:
        inner = getattr(exc.failures[0], "error", None)
        if inner is None:
            break
        exc = inner
    return exc


class EpicInterrupted(EpicError):
    """The run was cancelled; in-flight calls were cancelled, finished ones are kept on `.result`."""


class EpicInternalError(EpicException):
    """An invariant of the evaluator broke. This is our bug, not yours."""
