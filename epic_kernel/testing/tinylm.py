"""Tiny offline models for tests: they live in `epic_kernel.llm.tinylm` (the model registry names
them: "tiny10m", ...); this is the name tests have always imported them by."""

from ..llm.tinylm import CHAT_TEMPLATE, SIZES, build_tiny_model, corpus

__all__ = ["CHAT_TEMPLATE", "SIZES", "build_tiny_model", "corpus"]
