"""Did an OpenAI-style event stream reach `data: [DONE]`? Read on the HTTP body, below the SDK.

A stream is complete when it reaches `[DONE]`: some compatible servers and proxies never send a chunk
with a `finish_reason`, and their answers are whole all the same (the finish reason is then unknown).
A body that ends before `[DONE]` was cut: the connection was closed cleanly mid-answer, and the call
must be retried. The openai SDK ends its iterator the same way in both cases (it stops reading at
`[DONE]`, and a body that simply ends looks no different), so the OpenAI backend installs `watch` as
a response hook on the HTTP client it builds: it wraps each event-stream body in `DoneWatch`, which
passes the bytes through untouched and notes whether a `data: [DONE]` line went by.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2

__all__ = ["DoneWatch", "reached_done", "watch"]

# an SSE field line starting `data: [DONE]` (the space after the colon is optional in SSE; the SDK
# too only asks that the data start with "[DONE]")
_DONE = re.compile(rb"(?:^|[\r\n])data: ?\[DONE\]")
_KEEP = 16      # bytes carried over between reads: a [DONE] line split across two network chunks


class DoneWatch(httpx2.AsyncByteStream):
    """An event-stream body, passed through unchanged; `done` turns True once `data: [DONE]` is read."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._tail = b"\n"           # the body's start counts as a line start
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if not self.done and chunk:
                seen = self._tail + chunk
                self.done = _DONE.search(seen) is not None
                self._tail = seen[-_KEEP:]
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def watch(response: httpx2.Response) -> None:
    """httpx response hook: watch every event-stream body for `[DONE]` (other bodies are left alone)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        response.stream = DoneWatch(response.stream)


def reached_done(response: Any) -> bool | None:
    """True/False: whether the body read so far reached `[DONE]`; None when it was not watched (a
    client built without the `watch` hook)."""
    stream = getattr(response, "stream", None)
    return stream.done if isinstance(stream, DoneWatch) else None
