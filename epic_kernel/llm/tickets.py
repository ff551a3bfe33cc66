"""A request as the batcher's decode thread sees it (`Ticket`): its token ids, its sampling state and
how results go back to the event loop that submitted it; and the text helpers the thread uses
(which token ids end a row, how much of a streamed text could still become a stop string)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .base import LLMRequest, LLMResponse, StreamChunk
from .errors import BackendError
from .logprobs import TokenTrace

__all__ = ["BatcherFull", "LogitsHook", "Ticket", "eos_ids", "holdback"]

LogitsHook = Callable[[Sequence[int], Any], Any]
"""Per-request logits mask: `hook(generated_ids, logits[V] float32) -> logits`, called every step.

The seam for constrained decoding (regex=, choices=): return the logits with disallowed tokens set to
-inf. It runs on the decode thread, so it must not touch the event loop."""

class BatcherFull(BackendError):
    """More requests are waiting than `max_queue` allows: the caller is outrunning the model."""


class Ticket:
    """One request's handle. The caller's loop reads `events`; every other field is the worker's.

    events carries ("text", delta) only when streaming, then exactly one ("done", (rest, response))
    or ("error", exc). `cancelled` may be set from any thread; the worker honours it at the next
    step boundary (a pending ticket is dropped from the queue at once).
    """

    def __init__(self, request: LLMRequest, prompt_ids: list[int], loop: asyncio.AbstractEventLoop, *,
                 stream: bool, ignore_eos: bool, hook: LogitsHook | None):
        self.request = request
        self.params = request.params
        self.prompt_ids = prompt_ids
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.stream = stream
        self.ignore_eos = ignore_eos
        self.hook = hook
        self.cancelled = False
        self.finished = False              # the consumer saw "done" or "error"
        self.submitted = time.monotonic()
        self.deadline = self.submitted      # set by the batcher: when it must start at the latest
        self.batch_id: int | None = None
        self.token_ids: list[int] = []     # every generated token, a final EOS included
        # worker-only decode state
        self.track_text = stream or bool(self.params.stop)
        self.text = ""
        self.emitted = 0                   # len(text) already streamed
        self.text_ids: list[int] = []      # generated tokens without EOS
        self.prefix_off = 0                # incremental detokenisation window (TGI/vLLM style)
        self.read_off = 0
        self.next_token = 0                # sampled, not yet fed to the model
        self.pos = 0                       # position id of next_token
        self.reused = 0                    # prompt tokens whose KV came from the prefix cache
        self.generator: Any = None
        # per-token record (llm.logprobs.TokenTrace) when the request asked for logprobs, else None
        self.tokens: TokenTrace | None = (None if request.logprobs is None
                                          else TokenTrace(request.logprobs, constrained=hook is not None))
        self.cancel_hook: Callable[[Ticket], None] | None = None

    def cancel(self) -> None:
        """Give up on this request (no-op once finished)."""
        if not self.finished and self.cancel_hook is not None:
            self.cancel_hook(self)

    async def result(self) -> LLMResponse:
        while True:
            kind, val = await self.events.get()
            if kind == "done":
                self.finished = True
                return val[1]
            if kind == "error":
                self.finished = True
                raise val

    async def chunks(self) -> AsyncIterator[StreamChunk]:
        while True:
            kind, val = await self.events.get()
            if kind == "text":
                yield StreamChunk(*val) if isinstance(val, tuple) else StreamChunk(val)
            elif kind == "done":
                self.finished = True
                yield StreamChunk(val[0], val[1])
                return
            else:
                self.finished = True
                raise val


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list | tuple) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def holdback(text: str, stops: Sequence[str]) -> int:
    """How many trailing chars could still grow into a stop string (so they are not streamed yet)."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
