"""Every exception epic-kernel raises on purpose, in one tree (catch `EpicException` for all of them).

    EpicException
    +-- EpicSyntaxError        the program uses Python the language does not support (line, column, hint);
    |                          also a SyntaxError
    +-- EpicError              the program ran; some calls failed (each named with its source line);
    |   |                      every finished call and value is kept on `.result`
    |   +-- EpicInterrupted    the run was cancelled (interrupt, Cancel button); finished work is kept
    +-- EpicInternalError      a bug in epic-kernel; please file it
    +-- CallLimitExceeded      a run reached its call budget (`max_calls`); recorded as the failure of
    |                          the call that would have gone over it, which stops the run there
    +-- UnsupportedFeature     a request asks for what its backend cannot do (checked before dispatch)
    |   +-- InvalidConstraint  a `regex=`/`choices=` that cannot be compiled (llm/constrained.py; also a ValueError)
    |   +-- SimScriptError     a scripted sim answer contradicts its constraint (llm/sim/)
    +-- ModelNotAvailable      a local model cannot be loaded here; the message says what to install
    |                          (also a RuntimeError, as before)
    +-- BackendError           a model call failed for good, after the backend's own retries
        +-- BadRequest         4xx the server will never accept (400, 404, 422, ...); not retried
        |   +-- AuthError      401 / 403: wrong or missing API key
        +-- RateLimited        429 still returned after every retry
        +-- ServerError        5xx still returned after every retry
        +-- BackendTimeout     no answer within the timeout, every attempt
        +-- BackendConnectionError  refused or dropped connections, every attempt
        +-- MalformedResponse  the server answered 200 with something that is not a completion
        +-- ConstraintViolation  the server answered 200 with text outside the call's regex=/choices=
        +-- ConstraintIncomplete  a constrained local call ran out of tokens before its match ended
        |                      (llm/constrained.py)
        +-- ReplayMiss         a replay log has no record of this request
        +-- ReplayedError      a recorded failure, raised again on replay (llm/replay.py)

The classes live here so the tree is read in one place; the modules that raise them re-export them
under their old names (`epic_kernel.llm.errors.BackendError`, `epic_kernel.llm.base.UnsupportedFeature`,
`epic_kernel.llm.models.ModelNotAvailable`), so code that catches them keeps working. The
magics add `EpicCellSyntaxError` (an EpicException carrying the EpicSyntaxError of a cell).
A failed call inside a run is not raised on its own: it is recorded (runtime/failures.py) and the
run raises one EpicError listing them all.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError", "BackendConnectionError", "BackendError", "BackendTimeout", "BadRequest", "ConstraintViolation",
    "CallLimitExceeded", "EpicError", "EpicException", "EpicInternalError", "EpicInterrupted", "EpicSyntaxError", "MalformedResponse",
    "ModelNotAvailable", "RateLimited", "ReplayMiss", "ServerError", "UnsupportedFeature", "unwrap",
]


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


class CallLimitExceeded(EpicException):
    """A run reached its call budget (`max_calls`, default `runtime.options.MAX_CALLS`): a loop that
    keeps calling a hosted model is a bill, so the run stops at the call that would go over it."""


class UnsupportedFeature(EpicException):
    """A request asked for something this backend cannot do (e.g. `regex=` on a plain server)."""


class ModelNotAvailable(EpicException, RuntimeError):
    """The named model cannot be loaded on this machine; the message says what to install."""


# ------------------------------------------------------------------------------ failed model calls
class BackendError(EpicException):
    """A model call that failed for good. Subclasses say why; the fields say where.

    The message always names the model, the HTTP status (when there was one) and the server's own
    words, so a failed call in a notebook reads as a diagnosis rather than a stack of httpx frames."""

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None,
                 attempts: int = 1, backend: str | None = None):
        self.message = message
        self.model = model
        self.status = status
        self.attempts = attempts
        self.backend = backend
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.backend or 'backend'} model {self.model!r}" if self.model else (self.backend or "backend")
        status = f"HTTP {self.status}: " if self.status is not None else ""
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{where}: {status}{self.message}{tries}"


class BadRequest(BackendError):
    """The server rejected the request itself; sending it again cannot help."""


class AuthError(BadRequest):
    """401/403: check the API key (OPENAI_API_KEY, or the key given to `epic serve`)."""


class RateLimited(BackendError):
    """429 on every attempt: lower max_concurrency or raise the server's limits."""


class ServerError(BackendError):
    """5xx on every attempt."""


class BackendTimeout(BackendError):
    """Every attempt ran past the timeout."""


class BackendConnectionError(BackendError):
    """Every attempt was refused or dropped before an answer arrived."""


class MalformedResponse(BackendError):
    """The server answered, but not with a completion (invalid JSON, missing fields)."""


class ConstraintViolation(BackendError):
    """The server's answer does not match the call's `regex=`/`choices=`: it ignored the constraint
    (vLLM >= 0.12 answers 200 to the removed `guided_*` fields). Never returned as if it were valid."""


class ReplayMiss(BackendError):
    """A ReplayBackend was asked for a call its log never recorded."""
