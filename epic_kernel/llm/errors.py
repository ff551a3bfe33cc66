"""Errors a backend raises when a call fails for good (after its own retries).

    BackendError                  every failed call: .model, .status, .message, .attempts
     ├── BadRequest               4xx the server will never accept (400, 404, 422, ...); not retried
     │    └── AuthError           401 / 403: wrong or missing API key
     ├── RateLimited              429 still returned after every retry
     ├── ServerError              5xx still returned after every retry
     ├── BackendTimeout           no answer within the timeout, every attempt
     ├── BackendConnectionError   refused or dropped connections, every attempt
     ├── MalformedResponse        the server answered 200 with something that is not a completion
     ├── ConstraintViolation      the server answered 200 with text outside the call's regex=/choices=
     └── ReplayMiss               a replay log has no record of this request

The message always names the model, the HTTP status (when there was one) and the server's own
words, so a failed call in a notebook reads as a diagnosis rather than a stack of httpx frames.
"""

from __future__ import annotations

__all__ = [
    "AuthError", "BackendConnectionError", "BackendError", "BackendTimeout", "BadRequest",
    "ConstraintViolation", "MalformedResponse", "RateLimited", "ReplayMiss", "ServerError",
]


class BackendError(Exception):
    """A model call that failed for good. Subclasses say why; the fields say where."""

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
