"""The LLM layer: the llm() builtin's backends (sim, transformers, openai, replay), the batcher and the cache.

    from epic_kernel.llm import TransformersBackend, OpenAIBackend, SimBackend, ReplayBackend

The backends load lazily (torch, transformers and openai are imported only when one is used), so
`import epic_kernel` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Backend, LLMRequest, LLMResponse, SamplingParams, StreamChunk, UnsupportedFeature

__all__ = ["Backend", "CachedBackend", "LLMRequest", "LLMResponse", "OpenAIBackend", "RecordingBackend",
           "ReplayBackend", "SamplingParams", "SimBackend", "StreamChunk", "TransformersBackend",
           "UnsupportedFeature"]

_LAZY = {"TransformersBackend": ".transformers_backend", "OpenAIBackend": ".openai_backend",
         "SimBackend": ".sim", "ReplayBackend": ".replay", "RecordingBackend": ".replay",
         "CachedBackend": ".cache"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
