"""Scripted sim answers: `(pattern, reply)` rules and scripts, and the text they are matched against."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from ..base import LLMRequest, UnsupportedFeature

__all__ = ["Reply", "Script", "SimScriptError", "prompt_text", "scripted"]

Reply = str | Callable[[LLMRequest, re.Match[str]], str]
# A script writes the free text of the requests it recognises, from the request's seeded rng, or
# returns None to leave the request to the next script (and in the end to the sim's own words).
Script = Callable[[LLMRequest, random.Random], str | None]


class SimScriptError(UnsupportedFeature):
    """A scripted answer contradicts the request's constraint (`regex=`/`choices=`), or a regex is
    too exotic for the sim to produce a match. Fix the script or the constraint; the sim never
    silently returns an answer a real constrained decoder could not have produced."""


def prompt_text(request: LLMRequest) -> str:
    """What scripted patterns search: the raw prompt, else the last user message (else the last)."""
    if request.raw or not request.messages:
        return request.prompt or ""
    users = [m for m in request.messages if m.get("role") == "user"]
    return str((users or list(request.messages))[-1].get("content", ""))


def scripted(rules: list[tuple[re.Pattern[str], Reply]], request: LLMRequest) -> str | None:
    """The reply of the first rule whose pattern matches the prompt (the prefill stripped), else None."""
    if not rules:
        return None
    target = prompt_text(request)
    for pattern, reply in rules:
        m = pattern.search(target)
        if m is None:
            continue
        text = m.expand(reply) if isinstance(reply, str) else reply(request, m)
        if not isinstance(text, str):
            raise TypeError(f"the sim answer for {pattern.pattern!r} returned "
                            f"{type(text).__name__}, not str")
        if request.prefill and text.startswith(request.prefill):
            text = text[len(request.prefill):]
        return text
    return None
