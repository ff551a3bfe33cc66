"""Which backend a run talks to, from what the user said (an instance, a name, or nothing).

Precedence: the `backend=` argument, then `%epic config backend=...` (set_default_backend), then the
`EPIC_BACKEND` environment variable, then the local transformers backend on the bundled SmolLM2.
Named backends are shared per (name, model) in the process, so every run, cell and kernel thread
meets the same batcher: that is what lets calls from different programs decode together.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from ..runtime import backends as _runtime_backends
from .base import Backend

__all__ = ["BACKEND_NAMES", "BackendSpec", "describe_spec", "parse_backend", "resolve_backend", "set_default_backend"]

BACKEND_NAMES = ("sim", "transformers", "openai", "vllm", "replay")
_ALIASES = {"local": "transformers", "hf": "transformers"}
_shared: dict[tuple[str, str | None], Backend] = {}
_lock = threading.Lock()
_default: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """A backend named by a string: `kind[:arg]` ("sim", "openai", "replay:calls.jsonl", "local")."""

    kind: str                 # one of BACKEND_NAMES (aliases resolved: local, hf -> transformers)
    arg: str                  # what follows the colon: the replay backend's recording
    text: str                 # as written, the key backends are shared under (with the model)


def parse_backend(name: str) -> BackendSpec:
    """The one parser of backend names (the API, `epic run/serve/demo --backend`, `%%epic --backend`).
    Raises ValueError, saying what would be accepted, for a name no backend answers to."""
    kind, _, arg = str(name).partition(":")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if kind not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} "
                         "(replay needs replay:FILE.jsonl)")
    if kind == "replay" and not arg:
        raise ValueError("the replay backend needs a recording: replay:path/to/calls.jsonl")
    return BackendSpec(kind, arg, str(name))


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
    "sim (simulated model)", "openai · gpt-4o @ http://..."), without constructing or loading anything."""
    if spec is None:
        spec = _default.get("backend") or os.environ.get("EPIC_BACKEND") or "transformers"
        model = model or _default.get("model")
    if isinstance(spec, Backend):
        inner = getattr(spec, "inner", spec)              # a cache or recorder: name what it wraps
        shown = model or inner.default_model
        if inner.name == "transformers":
            from .models import display_name
            shown = display_name(shown)
        if inner.name == "sim" and shown in (None, "sim-1"):
            return "sim (simulated model)"
        text = f"{inner.name} · {shown or '?'}"
        precision = getattr(inner, "precision", None)     # local models: "bf16", "fp32", "bf16 int8 weights"
        if isinstance(precision, str) and precision:
            text = f"{text} · {precision}"
        url = getattr(inner, "base_url", None)
        return f"{text} @ {url}" if url else text
    name = str(spec)
    existing = _shared.get((name.lower(), model))
    if existing is not None:
        return describe_spec(existing, model)
    try:
        parsed = parse_backend(name)
    except ValueError:
        return name
    kind, arg = parsed.kind, parsed.arg
    if kind == "transformers":
        from .models import display_name
        return f"transformers · {display_name(model)}"
    if kind == "sim":
        return f"sim · {model}" if model and model != "sim-1" else "sim (simulated model)"
    if kind == "openai":
        url = os.environ.get("EPIC_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return f"openai · {model or os.environ.get('EPIC_OPENAI_MODEL') or 'the server`s model'} @ {url}"
    if kind == "replay":
        return f"replay · {os.path.basename(arg) or '?'}"
    return name                                           # vllm: its name is all we know unloaded


def _named(name: str, model: str | None) -> Backend:
    key = (name.lower(), model)
    with _lock:
        b = _shared.get(key)
        if b is not None:
            return b
        spec = parse_backend(name)
        kind = spec.kind
        if kind == "sim":
            from .sim import SimBackend
            b = SimBackend()
        elif kind == "transformers":
            from .transformers_backend import TransformersBackend
            b = TransformersBackend(model)
        elif kind == "vllm":
            from .vllm_backend import VLLMBackend
            b = VLLMBackend(model)
        elif kind == "openai":
            from .openai_backend import OpenAIBackend
            b = OpenAIBackend(model=model)
        else:
            from .replay import ReplayBackend
            b = ReplayBackend(spec.arg)
        _shared[key] = b
        return b


_runtime_backends.install_provider(resolve_backend, describe_spec)      # how the runtime gets a run's backend
