"""Errors a backend raises when a call fails for good (after its own retries).

The classes are defined in `epic_kernel.errors`, which draws the whole exception tree (every one of
them is an `EpicException`); this module keeps the names backends and users have always imported.
"""

from __future__ import annotations

from ..errors import (
    AuthError,
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BadRequest,
    ConstraintViolation,
    MalformedResponse,
    RateLimited,
    ReplayMiss,
    ServerError,
)

__all__ = [
    "AuthError", "BackendConnectionError", "BackendError", "BackendTimeout", "BadRequest",
    "ConstraintViolation", "MalformedResponse", "RateLimited", "ReplayMiss", "ServerError",
]
