"""The local-model backend: Hugging Face `transformers` on a batcher shared per (model, device, dtype).

Every `TransformersBackend` naming the same model on the same device talks to one `Batcher` (one
model copy, one decode thread), so several notebook runs, kernels in one process, and `epic serve`
all land in the same decode batches. The registry is reference-counted: the batcher stops when the
last backend using it is closed. Batcher settings (max_batch_size, flush_ms, join_ms, max_queue) come from
the first backend that creates it; pass `shared=False` for a private batcher with other settings.

torch and transformers are imported only when a backend is constructed, so `import epic_kernel`
stays light.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from . import constrained
from .base import Backend, LLMRequest, LLMResponse, StreamChunk
from .batcher import Batcher, LogitsHook
from .invariant import make_invariant
from .models import model_key, quiet_progress, resolve_model
from .quantize import quantize as _quantize

__all__ = ["TransformersBackend", "cpu_has_native_bf16", "pick_device", "pick_dtype", "shared_batcher"]

_registry: dict[tuple[str, ...], Batcher] = {}
_refs: dict[tuple[str, ...], int] = {}
_registry_lock = threading.Lock()


def pick_device(device: str = "auto") -> str:
    """"auto" -> CUDA, then Apple MPS, then CPU; anything else is normalised by torch.device."""
    import torch

    if device != "auto":
        return str(torch.device(device))
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles): then bf16 halves the
    bytes a decode step reads at a perplexity cost of ~0.1 % (docs/precision.md); without them torch
    emulates bf16 and fp32 is the faster choice."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(cpu, c)() for c in checks if hasattr(cpu, c))
    except RuntimeError:
        return False


def pick_dtype(dtype: Any, device: str) -> Any:
    """None -> bf16 on CUDA when supported (else fp16), fp16 on MPS, bf16 on a CPU with native bf16
    (`cpu_has_native_bf16`), fp32 on other CPUs (emulated bf16/fp16 matmuls are slow there)."""
    import torch

    if dtype == "auto":
        dtype = None
    if isinstance(dtype, str):
        return getattr(torch, dtype.removeprefix("torch."))
    if dtype is not None:
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def precision_label(model: Any) -> str:
    """"bf16", "fp32", "bf16 int8 weights", ...: the dtype a loaded model computes in and its weight format."""
    from .quantize import weight_format

    dt = str(getattr(model, "dtype", "")).removeprefix("torch.")
    short = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(dt, dt)
    fmt = weight_format(model)
    text = f"{short} {fmt} weights" if fmt else short
    return text if getattr(model, "epic_invariant_rows", None) else f"{text}, not batch-invariant"


def load_batcher(model: str | None, *, device: str, dtype: Any, quantize: str | None = None,
                 batch_invariant: bool = True, **settings: Any) -> Batcher:
    """Load tokenizer + weights (quantized if asked; batch-invariant unless told not to: llm.invariant)
    and start a (private) batcher for them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_progress():
        path = resolve_model(model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        weights = _quantize(AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval(), quantize)
        if batch_invariant:
            weights = make_invariant(weights)
    return Batcher(weights, tokenizer, name=model_key(model), **settings)


def shared_batcher(model: str | None, *, device: str = "auto", dtype: Any = None, quantize: str | None = None,
                   batch_invariant: bool = True, **settings: Any) -> Batcher:
    """The process-wide batcher for (model, device, dtype, quantize, batch_invariant), created on
    first use; counts a reference."""
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    key = (model_key(model), dev, str(dt), str(quantize), str(batch_invariant))
    with _registry_lock:
        b = _registry.get(key)
        if b is None or b.closed:
            b = load_batcher(model, device=dev, dtype=dt, quantize=quantize, batch_invariant=batch_invariant,
                             **settings)
            _registry[key], _refs[key] = b, 0
        _refs[key] += 1
        return b


def release_batcher(batcher: Batcher) -> None:
    """Drop one reference; the last one closes the batcher (and frees the model)."""
    with _registry_lock:
        for key, b in list(_registry.items()):
            if b is batcher:
                _refs[key] -= 1
                if _refs[key] > 0:
                    return
                del _registry[key], _refs[key]
                break
    batcher.close()


class TransformersBackend(Backend):
    """Local generation with `transformers` (see the batcher module for the scheduling policy).

    `model`: "smollm2" (default), "tiny"/"tiny10m", a local HF directory or a hub id (offline cache).
    `ignore_eos` keeps decoding past EOS (benchmarks that need full-length rows; not for constrained calls).
    `prefix_cache_mb`: the byte budget of the batcher's prompt-prefix KV cache (0 turns it off).
    `dtype`: None picks bf16 on a CPU with native bf16 (AVX512-BF16 or AMX) or a CUDA GPU with bf16,
    fp32 on other CPUs (`pick_dtype`); `dtype="float32"`/`"bfloat16"` overrides.
    `quantize="int8"`/`"int4"`: weight-only int8 per channel / int4 per group of 32 on CPU (`quantize`
    module; perplexity and speed in docs/precision.md).
    `batch_invariant` (default True): a call's logits do not depend on the calls it is batched with,
    so a program's greedy answers are the same under every strategy (`invariant` module); False
    trades that for the plain kernels' speed.
    `regex=`/`choices=` become a per-request logits mask (see the `constrained` module for the
    semantics: full match, `stop=` ignored, `ConstraintIncomplete` when `max_tokens` runs out first).
    """

    name = "transformers"
    capabilities = frozenset({"stream", "prefill", "raw", "seed", "regex", "choices", "logprobs"})

    def __init__(self, model: str | None = None, *, device: str = "auto", dtype: Any = None,
                 max_batch_size: int = 32, flush_ms: float = 5.0, join_ms: float = 30.0,
                 max_queue: int = 1024, shared: bool = True, ignore_eos: bool = False,
                 prefix_cache_mb: float = 256.0, quantize: str | None = None, batch_invariant: bool = True):
        super().__init__()
        settings = dict(max_batch_size=max_batch_size, flush_ms=flush_ms, join_ms=join_ms, max_queue=max_queue,
                        prefix_cache_mb=prefix_cache_mb)
        self._settings = dict(device=device, dtype=dtype, quantize=quantize, batch_invariant=batch_invariant,
                              **settings)
        self._shared = shared
        if shared:
            self.batcher = shared_batcher(model, **self._settings)
        else:
            dev = pick_device(device)
            self.batcher = load_batcher(model, device=dev, dtype=pick_dtype(dtype, dev), quantize=quantize,
                                        batch_invariant=batch_invariant, **settings)
        self.feeders = self.batcher.feeders     # one quiescence count for every run on this batcher
        self.default_model = self.batcher.name
        self.ignore_eos = ignore_eos
        self._others: dict[str, Batcher] = {}   # batchers for requests naming another model
        self._closed = False

    @property
    def precision(self) -> str:
        """What the numbers are, for headers: "bf16", "fp32", "bf16 int8 weights" (+ ", not batch-invariant")."""
        return precision_label(self.batcher.model)

    def describe(self) -> str:
        return f"{super().describe()} ({self.precision})"

    def identity(self) -> dict[str, Any]:
        """The weights, and what changes their numbers or stopping (device, dtype, ignore_eos)."""
        return {**super().identity(), "device": str(self._settings["device"]),
                "dtype": str(self._settings["dtype"]), "ignore_eos": self.ignore_eos,
                **({} if self._settings["batch_invariant"] else {"batch_invariant": False}),
                **({"quantize": self._settings["quantize"]} if self._settings["quantize"] else {})}

    def check(self, request: LLMRequest) -> None:
        """Also rejects an invalid regex or empty choices up front (`InvalidConstraint`)."""
        super().check(request)
        constrained.validate(request.params)

    def logits_hook(self, request: LLMRequest, batcher: Batcher | None = None) -> LogitsHook | None:
        """Per-request logits mask for regex=/choices=; None means unconstrained."""
        if not constrained.is_constrained(request.params):
            return None
        return constrained.constrainer_for(batcher or self.batcher).hook(request.params)

    async def _submit(self, request: LLMRequest, *, stream: bool) -> tuple[Any, Any]:
        """Queue a request on its model's batcher; returns (ticket, hook)."""
        batcher = await self._batcher_for(request)
        if not constrained.is_constrained(request.params):
            return batcher.submit(request, stream=stream, ignore_eos=self.ignore_eos), None
        if constrained.constrainer_for(batcher, build=False) is None:   # tokenizer conversion: once, off the loop
            await asyncio.to_thread(constrained.constrainer_for, batcher)
        hook = self.logits_hook(request, batcher)
        # the constraint decides where the answer ends: stop strings and ignore_eos do not apply
        ticket = batcher.submit(request.with_params(stop=()), stream=stream, logits_hook=hook)
        return ticket, hook

    def _verify(self, ticket: Any, hook: Any) -> None:
        """Raise ConstraintIncomplete if a constrained answer ended without matching."""
        why = hook.failure(ticket.token_ids) if hook is not None else None
        if why is not None:
            model = model_key(ticket.request.model) if ticket.request.model else self.default_model
            raise constrained.ConstraintIncomplete(why, model=model, backend=self.name)

    async def _batcher_for(self, request: LLMRequest) -> Batcher:
        if request.model is None or model_key(request.model) == self.batcher.name:
            return self.batcher
        key = model_key(request.model)
        if key not in self._others:        # loading takes seconds: keep it off the event loop
            self._others[key] = await asyncio.to_thread(shared_batcher, request.model, **self._settings)
        return self._others[key]

    async def generate(self, request: LLMRequest) -> LLMResponse:
        self.check(request)
        ticket, hook = await self._submit(request, stream=False)
        try:
            resp = await ticket.result()
        finally:
            ticket.cancel()                # no-op once finished; frees the slot if we were cancelled
        self._verify(ticket, hook)
        return resp

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        self.check(request)
        ticket, hook = await self._submit(request, stream=True)
        try:
            async for chunk in ticket.chunks():
                if chunk.response is not None:
                    self._verify(ticket, hook)
                yield chunk
        finally:
            ticket.cancel()

    def on_all_quiescent(self) -> None:
        self.batcher.flush()

    def stats(self) -> dict[str, Any]:
        return self.batcher.stats()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for b in [self.batcher, *self._others.values()]:
            if self._shared or b is not self.batcher:
                release_batcher(b)
            else:
                b.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
