"""Which backend a run talks to, from what the user said (an instance, a name, or nothing).

Precedence: the `backend=` argument, then `%epic config backend=...` (set_default_backend), then the
`EPIC_BACKEND` environment variable, then the local transformers backend on the bundled SmolLM2.
Named backends are shared per (name, model) in the process, so every run, cell and kernel thread
meets the same batcher: that is what lets calls from different programs decode together.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .base import Backend

__all__ = ["BACKEND_NAMES", "resolve_backend", "set_default_backend"]

BACKEND_NAMES = ("sim", "transformers", "openai", "vllm", "replay")
_shared: dict[tuple[str, str | None], Backend] = {}
_lock = threading.Lock()
_default: dict[str, Any] = {}


def set_default_backend(backend: Any = None, model: str | None = None) -> None:
    """Session default for runs that name no backend (what `%epic config backend=sim` sets)."""
    _default["backend"] = backend
    _default["model"] = model


def resolve_backend(spec: Any = None, options: dict | None = None, *, construct: bool = True) -> Backend | None:
    """The Backend for `spec`. With construct=False, return None instead of building (loading) one:
    the evaluator then builds it in a worker thread."""
    options = options or {}
    model = options.get("model") or (_default.get("model") if spec is None else None)
    if spec is None:
        spec = _default.get("backend") or os.environ.get("EPIC_BACKEND") or "transformers"
    if isinstance(spec, Backend):
        backend = spec
    elif isinstance(spec, str):
        if not construct:
            existing = _shared.get((spec.lower(), model))
            if existing is None:
                return None
            spec = existing
        backend = spec if isinstance(spec, Backend) else _named(spec, model)
    else:
        raise TypeError(f"backend must be a Backend instance or one of {', '.join(BACKEND_NAMES)}, "
                        f"not {type(spec).__name__}")
    if options.get("cache"):
        from .cache import CachedBackend
        backend = CachedBackend(backend)
    return backend


def _named(name: str, model: str | None) -> Backend:
    key = (name.lower(), model)
    with _lock:
        b = _shared.get(key)
        if b is not None:
            return b
        kind, _, arg = name.partition(":")
        kind = kind.lower()
        if kind == "sim":
            from .sim import SimBackend
            b = SimBackend()
        elif kind in ("transformers", "local", "hf"):
            from .transformers_backend import TransformersBackend
            b = TransformersBackend(model)
        elif kind == "vllm":
            from .vllm_backend import VLLMBackend
            b = VLLMBackend(model)
        elif kind == "openai":
            from .openai_backend import OpenAIBackend
            b = OpenAIBackend(model=model)
        elif kind == "replay":
            from .replay import ReplayBackend
            if not arg:
                raise ValueError("the replay backend needs a recording: backend='replay:path/to/calls.jsonl'")
            b = ReplayBackend(arg)
        else:
            raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} "
                             "or pass a Backend instance")
        _shared[key] = b
        return b
