"""Optional weight-only quantization of the local model's Linear layers (CPU): int8 per channel, int4 per group.

Why: a decode step reads every weight once per token, so on a CPU it is bound by memory bandwidth;
int8 weights read half the bytes of bf16 (a quarter of fp32), int4 a quarter of bf16. Activations
stay in the model's dtype (bf16 or fp32) and only the weights are rounded, which keeps the quality:
the previous per-tensor *dynamic* int8 (activations rounded too, one scale for a whole matrix) cost
+272 % perplexity on SmolLM2; these cost a fraction of a percent (int8) and a few percent (int4), as
benchmarks/bench_precision.py measures (docs/precision.md).

* `"int8"`: symmetric int8 with one scale per output channel, multiplied by torch's
  `_weight_int8pack_mm` CPU kernel.
* `"int4"`: asymmetric 4-bit with a scale and zero point per group of 32 inputs (the layout of
  llama.cpp's Q4_1 blocks), multiplied by `_weight_int4pack_mm_for_cpu` (tinygemm's packed layout).

Both are ATen operators that ship with torch itself, so no extra package (torchao) is needed. Every
nn.Linear is replaced, the LM head included (for a tied head the embedding keeps its own weights).
`QuantLinear` honours `invariant_rows` (set by `invariant.make_invariant`) like the plain linears.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GROUP", "QUANTIZE_MODES", "quantize", "weight_format"]

QUANTIZE_MODES = ("int8", "int4")
GROUP = 32            # int4: inputs per scale/zero group (llama.cpp's Q4_0/Q4_1 block size)
_INNER_K_TILES = 2    # tinygemm packing parameter: K must be a multiple of 16 * this


def _module_class() -> type:
    import torch

    from .invariant import fixed_rows_apply

    class QuantLinear(torch.nn.Module):
        """A Linear with int8 (per channel) or int4 (per group) weights; same in/out as the layer it replaces."""

        invariant_rows: int | None = None

        def __init__(self, linear: Any, mode: str):
            super().__init__()
            w = linear.weight.detach().float()
            self.in_features, self.out_features, self.mode = linear.in_features, linear.out_features, mode
            dtype = linear.weight.dtype
            self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
            if mode == "int8":
                scale = (w.abs().amax(1) / 127).clamp(min=1e-12)
                self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
                self.register_buffer("scales", scale.to(dtype))
            else:
                n, k = w.shape
                g = w.reshape(n, k // GROUP, GROUP)
                lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
                scale = ((hi - lo) / 15).clamp(min=1e-12)
                q = torch.round((g - lo) / scale).clamp(0, 15).reshape(n, k).to(torch.int32)
                # tinygemm dequantizes (q - 8) * scale + zero: zero is the group's value at q = 8
                zero = lo + 8 * scale
                self.register_buffer("qweight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, _INNER_K_TILES))
                self.register_buffer("scales", torch.cat([scale, zero], -1).transpose(0, 1).contiguous().to(dtype))

        def _mm(self, x: Any) -> Any:
            if self.mode == "int8":
                out = torch.ops.aten._weight_int8pack_mm(x, self.qweight, self.scales)
            else:
                out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.qweight, GROUP, self.scales)
            return out if self.bias is None else out + self.bias

        def forward(self, x: Any) -> Any:
            lead = x.shape[:-1]
            x2 = x.reshape(-1, self.in_features).to(self.scales.dtype).contiguous()
            out = self._mm(x2) if self.invariant_rows is None else fixed_rows_apply(x2, self._mm, self.invariant_rows)
            return out.reshape(*lead, self.out_features)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"

    return QuantLinear


_CLS: list[type] = []


def _cls() -> type:
    if not _CLS:
        _CLS.append(_module_class())
    return _CLS[0]


def quantize(model: Any, mode: str | None) -> Any:
    """`model` with every nn.Linear replaced by a weight-only quantized one ("int8", "int4"), or unchanged (None)."""
    if mode is None:
        return model
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize={mode!r} is not supported; choose one of {', '.join(QUANTIZE_MODES)} or None")
    import torch

    if next(model.parameters()).device.type != "cpu":
        raise ValueError(f"quantize={mode!r} is for CPU models (its packed matmul kernels are CPU-only)")
    cls = _cls()
    swaps = []
    for mod in model.modules():
        for child_name, child in mod.named_children():
            if type(child) is torch.nn.Linear and (mode == "int8" or child.in_features % (16 * _INNER_K_TILES) == 0
                                                   and child.in_features % GROUP == 0):
                swaps.append((mod, child_name, child))
    if not swaps:
        raise ValueError(f"quantize={mode!r}: the model has no Linear layer this mode can quantize")
    if getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False     # the head gets its own (quantized) copy from here on
    for parent, child_name, child in swaps:
        setattr(parent, child_name, cls(child, mode))
    model.epic_weight_format = mode
    return model


def weight_format(model: Any) -> str | None:
    """"int8"/"int4" for a model `quantize` converted, else None."""
    return getattr(model, "epic_weight_format", None)
