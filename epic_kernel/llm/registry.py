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

from ..runtime import backends as _runtime_backends
from .base import Backend

__all__ = ["BACKEND_NAMES", "describe_spec", "resolve_backend", "set_default_backend"]

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


def describe_spec(spec: Any = None, model: str | None = None) -> str:
    """What a run will talk to, named for people ("transformers · SmolLM2-135M-Instruct",
    "sim · sim-1", "openai · gpt-4o @ http://..."), without constructing or loading anything."""
    if spec is None:
        spec = _default.get("backend") or os.environ.get("EPIC_BACKEND") or "transformers"
        model = model or _default.get("model")
    if isinstance(spec, Backend):
        inner = getattr(spec, "inner", spec)              # a cache or recorder: name what it wraps
        shown = model or inner.default_model
        if inner.name == "transformers":
            from .models import display_name
            shown = display_name(shown)
        text = f"{inner.name} · {shown or '?'}"
        url = getattr(inner, "base_url", None)
        return f"{text} @ {url}" if url else text
    name = str(spec)
    kind, _, arg = name.partition(":")
    kind = kind.lower()
    existing = _shared.get((name.lower(), model))
    if existing is not None:
        return describe_spec(existing, model)
    if kind in ("transformers", "local", "hf"):
        from .models import display_name
        return f"transformers · {display_name(model)}"
    if kind == "sim":
        return f"sim · {model or 'sim-1'}"
    if kind == "openai":
        url = os.environ.get("EPIC_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return f"openai · {model or os.environ.get('EPIC_OPENAI_MODEL') or 'the server`s model'} @ {url}"
    if kind == "replay":
        return f"replay · {os.path.basename(arg) or '?'}"
    return name


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


_runtime_backends.install_provider(resolve_backend, describe_spec)      # how the runtime gets a run's backend
