"""The OpenAI wire format as the OpenAI backend reads it: completions into LLMResponses (usage
unknown is not zero), server error bodies into messages, Retry-After into seconds, and the failure
classes its retry loop decides on."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import openai

from ..runtime.events import clock
from .base import LLMResponse
from .errors import BackendError
from .logprobs import TokenLog, extend_from_openai

__all__ = ["Failure", "Malformed", "Timeout", "finish_reason", "parse_retry_after", "server_message", "to_response", "usage_counts"]


@dataclass
class Failure:
    kind: type[BackendError]
    message: str
    status: int | None
    retryable: bool
    retry_after: float | None = None
    overload: bool = False


class Timeout(Exception):
    """One of our own deadlines (start of the answer, next chunk) passed; the message says which."""


class Malformed(Exception):
    """The body parsed, but is not a completion (no choices, a plain-text body, an incomplete stream)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if inner.get("message"):
            return str(inner["message"])
    if isinstance(body, str) and body:
        return body[:500]
    return exc.message


def usage_counts(usage: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens; None where the server did not say (unknown is not zero)."""
    def count(name: str) -> int | None:
        v = getattr(usage, name, None)
        return int(v) if isinstance(v, int | float) else None

    return count("prompt_tokens"), count("completion_tokens")


def finish_reason(reason: str | None) -> str | None:
    """"length" or "stop"; None where the server gave none (unknown, shown as "?")."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def to_response(resp: Any, raw: bool, logprobs: int | None = None) -> LLMResponse:
    """Convert a (chat) completion; anything else (a str body, no choices) is malformed. With
    `logprobs` (k) the per-token record is read too, every token stamped with the answer's arrival."""
    choices = getattr(resp, "choices", None)
    if not choices:
        raise Malformed(f"expected a completion with choices, got {str(resp)[:200]!r}")
    c = choices[0]
    text = c.text if raw else c.message.content
    tokens = None
    if logprobs is not None:
        tokens = TokenLog(k=logprobs)
        extend_from_openai(tokens, getattr(c, "logprobs", None), clock())
    return LLMResponse(text or "", *usage_counts(getattr(resp, "usage", None)), finish_reason(c.finish_reason),
                       tokens=tokens)
