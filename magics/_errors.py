"""Short error output for `%%epic` cells.

IPython prints `exc._render_traceback_()` instead of a traceback when an exception has it, so a
failed cell shows the message that matters (the failing call's line, the unsupported construct)
and not the magic's and the evaluator's frames. SyntaxError subclasses never reach that hook
(IPython formats them itself, with the full stack), so an EpicSyntaxError is re-raised as an
`EpicCellSyntaxError` that carries it.
"""

from __future__ import annotations

from epic_kernel.errors import EpicException, EpicSyntaxError
from epic_kernel.runtime.failures import error_lines

__all__ = ["EpicCellSyntaxError", "short", "short_syntax_error"]

class EpicCellSyntaxError(EpicException):
    """A `%%epic` cell's program is outside the epic language; `.error` is the EpicSyntaxError
    (line, column, construct, hint)."""

    def __init__(self, error: EpicSyntaxError):
        super().__init__(str(error))
        self.error = error
        self.line = error.line
        self.construct = error.construct

    def _render_traceback_(self) -> list[str]:
        return error_lines("EpicSyntaxError", str(self.error))


def short(error: BaseException, *, note: str = "") -> BaseException:
    """Give `error` a short rendering in IPython (no traceback) and drop its frames; returns it."""
    text = str(error) + (f" {note}" if note else "")
    name = type(error).__name__
    error._render_traceback_ = lambda: error_lines(name, text)  # type: ignore[attr-defined]
    return error.with_traceback(None)


def short_syntax_error(error: EpicSyntaxError) -> EpicCellSyntaxError:
    return EpicCellSyntaxError(error)

