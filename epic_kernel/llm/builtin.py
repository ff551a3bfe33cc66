"""`llm()`: the language's builtin for a model call.

It is an ordinary `async def`, so the evaluator dispatches it like any external call the moment its
arguments are values. It finds its run's backend through the run context, normalises its arguments
into one `LLMRequest`, and reports usage, batch and cache hits on its CallRecord.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..runtime.context import current_call, current_run, register_builtin
from . import registry  # noqa: F401  (installs the provider through which a run resolves its backend)
from .base import LLMRequest, LLMResponse, SamplingParams
from .logprobs import check_k
from .shown_prompt import note_prompt

__all__ = ["llm"]


async def llm(prompt: str | list, *, model: str | None = None, max_tokens: int = 256, temperature: float = 0.0,
              top_p: float = 1.0, stop: str | list[str] | None = None, seed: int | None = None,
              regex: str | None = None, choices: list[str] | None = None, stream: bool = False,
              system: str | None = None, prefill: str | None = None, raw: bool = False,
              logprobs: int | bool | None = None) -> str:
    """Generate a completion of `prompt` (a string, or a list of chat messages).

    A string is sent as one user message through the model's chat template; `system` adds a system
    message; `prefill` continues a partial assistant answer; `raw=True` sends the text as is to a
    completion model. `regex`/`choices` constrain the output where the backend supports it (a clear
    error elsewhere). `stream=True` returns the answer as a list of text chunks whose tail is still
    being generated: a `for` loop (or `lines(...)`) over it runs on each chunk as it arrives.
    `logprobs=k` records every generated token on the call's record (`CallRecord.tokens`: text,
    arrival time, log-probability and the k best alternatives; `True` for no alternatives), which
    the token view shows; the answer itself is unchanged."""
    run = current_run()
    if run is None:
        raise RuntimeError("llm() runs inside epic code (run(), %%epic or an @epic function)")
    backend = await run.backend()
    params = SamplingParams(max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                            stop=_stops(stop), seed=seed, regex=regex,
                            choices=tuple(choices) if choices is not None else None)
    request = LLMRequest.build(prompt, system=system, raw=raw, model=model, params=params, prefill=prefill,
                               logprobs=check_k(logprobs))
    if not params.greedy:
        request = _with_sample_index(run, request)
    backend.check(request)
    rec = current_call()
    if rec is not None:
        rec.args_preview = request.preview()
        text = request.prompt if request.raw else (str(request.messages[-1]["content"]) if request.messages else "")
        note_prompt(run.calls, rec, text or "")
    if stream:
        return _chunks(backend, request, rec)
    resp = await backend.generate(request)
    _usage(rec, resp)
    return resp.text


async def _chunks(backend: Any, request: LLMRequest, rec: Any) -> AsyncIterator[str]:
    """The stream the evaluator splices in chunk by chunk (a list whose tail is still pending)."""
    async for chunk in backend.stream(request):
        if chunk.response is not None:
            _usage(rec, chunk.response)
        if chunk.text:
            yield chunk.text


def _usage(rec: Any, resp: LLMResponse) -> None:
    if rec is not None:
        rec.tokens_in = resp.tokens_in
        rec.tokens_out = resp.tokens_out
        rec.batch_id = resp.batch_id
        rec.cached = resp.cached
        rec.tokens_reused = resp.tokens_cached
        if resp.tokens is not None:
            rec.tokens = resp.tokens


def _stops(stop: str | list[str] | tuple | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    return tuple(stop)


def _with_sample_index(run: Any, request: LLMRequest) -> LLMRequest:
    """A sampled request's sample index names its call's place in the program (call site, the loop
    iterations and calls around it), never the order calls were dispatched in: identical sampled
    requests get different samples, and every strategy gets the same sample at the same place.
    Outside a call record (a direct backend call), the k-th identical request gets index k."""
    rec = current_call()
    if rec is not None and rec.path:
        k = rec.path & 0x7FFFFFFF
    else:
        counts = run.sample_counts
        key = request.key("")
        k = counts.get(key, 0)
        counts[key] = k + 1
    return LLMRequest(messages=request.messages, prompt=request.prompt, model=request.model,
                      params=request.params, prefill=request.prefill, raw=request.raw, sample_index=k,
                      logprobs=request.logprobs)


register_builtin("llm", llm)
