"""Optional int8 weights for the local model: dynamic quantization of every Linear layer.

Why: single-stream decoding on a CPU reads every weight once per token, so it is bound by memory
bandwidth; int8 weights read 4x less than fp32 and this CPU has VNNI int8 dot products. Measured on
SmolLM2 (benchmarks/results/precision.md) it is faster than fp32 at 1 to 64 rows, but it changes
greedy tokens (weights are rounded per tensor), so it is opt-in (`quantize="int8"`), never the
default, and its agreement with fp32 is measured next to its speed.

It uses `torch.ao.quantization.quantize_dynamic`, which torch 2.13 still ships but has deprecated in
favour of the separate `torchao` package; its deprecation warnings are kept from the user here.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["QUANTIZE_MODES", "quantize"]

QUANTIZE_MODES = ("int8",)


def quantize(model: Any, mode: str | None) -> Any:
    """`model` with its Linear layers replaced by int8 dynamic-quantized ones (mode "int8"), or unchanged (None)."""
    if mode is None:
        return model
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize={mode!r} is not supported; choose one of {', '.join(QUANTIZE_MODES)} or None")
    import torch

    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize='int8' is for CPU models (dynamic int8 kernels are CPU-only)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8)
