"""Batch-invariant decoding: a row's logits do not depend on which other rows share its forward pass.

Why: opportunistic evaluation batches whatever calls happen to be pending, so a program's answer
must not depend on the schedule. A CPU matmul picks its kernel and blocking from the *shape* of the
call (fp32 on this Xeon: one row goes through a GEMV whose sums round differently from the GEMM
used for 2+ rows; bf16: the LM head at 64+ rows), and left-padded attention shifts a row's keys to
another position inside the reduction, so the same prompt decoded alone or beside 15 others gave
different logits, and near-ties flipped greedy answers.

The fix, as in vLLM's batch-invariant mode and the "defeating nondeterminism" kernels, is to give
every row the same reduction order whatever the batch:

* Linear layers (and the LM head) multiply in blocks of exactly `rows` rows: the input is padded to
  a multiple of `rows` and each block is one call of the same shape, so every row goes through the
  same kernel with the same blocking (`FixedRowsLinear`).
* Attention gathers each row's own keys to the front of a zero-padded buffer whose length is a
  multiple of 64 (`_KEY_BLOCK`), so a row's keys sit at the same offsets alone or beside longer
  rows; queries are multiplied in fixed blocks of `rows` like the linears, masked columns add exact
  zeros, and the attention arithmetic runs in fp32 whatever the model dtype (`attention`).
* Norms, RoPE and activations work per token already, but torch's elementwise loops compute the
  last few elements of a tensor (its tail after whole 2-vector blocks) with scalar code, whose `exp`
  rounds differently from the vectorised one; so the activation and the rotary embedding run on
  tensors padded to a whole number of 64-element blocks per token (a no-op for SmolLM2's sizes).

`make_invariant(model)` applies both to a loaded transformers model; `tests/test_invariance.py`
checks the promise bitwise on the real batcher (alone vs beside 1, 15, 63 rows; prefilled whole vs
resumed from the prefix cache). The cost is measured in benchmarks/bench_precision.py.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

__all__ = ["ATTN_NAME", "DEFAULT_ROWS", "attention", "fixed_rows_apply", "fixed_rows_matmul", "is_invariant",
           "make_invariant", "supported"]

ATTN_NAME = "epic_invariant"
DEFAULT_ROWS = 16       # rows per matmul call: the waste at one row vs the number of calls at 64
_KEY_BLOCK = 64         # attention buffers are a multiple of this many keys long
_VEC_BLOCK = 64         # elementwise ops see whole blocks of this many elements per token


def fixed_rows_matmul(a: Any, b: Any, rows: int) -> Any:
    """`a @ b` for a: [..., M, K], b: [..., K, N] (same leading dims), computed in calls whose M is
    exactly `rows` (a is zero-padded), so each output row is rounded the same way for every M."""
    import torch.nn.functional as F

    *lead, m, k = a.shape
    n = b.shape[-1]
    pad = (-m) % rows
    if pad:
        a = F.pad(a, (0, 0, 0, pad))
    chunks = (m + pad) // rows
    a4 = a.reshape(-1, chunks, rows, k)
    b4 = b.reshape(-1, 1, k, n).expand(-1, chunks, k, n)
    out = (a4.reshape(-1, rows, k).bmm(b4.reshape(-1, k, n)) if chunks == 1
           else a4.reshape(-1, rows, k).bmm(b4.contiguous().reshape(-1, k, n)))
    return out.reshape(*lead, m + pad, n)[..., :m, :]


def fixed_rows_apply(x2: Any, fn: Any, rows: int) -> Any:
    """`fn(x2)` for a row-wise fn on x2 [M, K], called on blocks of exactly `rows` rows (zero-padded):
    every row goes through the same kernel with the same blocking, whatever M is."""
    import torch
    import torch.nn.functional as F

    m = x2.shape[0]
    pad = (-m) % rows
    if pad:
        x2 = F.pad(x2, (0, 0, 0, pad))
    out = fn(x2) if x2.shape[0] == rows else torch.cat([fn(c) for c in x2.split(rows)])
    return out[:m]


def _fixed_rows_linear(x: Any, weight: Any, bias: Any, rows: int) -> Any:
    import torch.nn.functional as F

    out = fixed_rows_apply(x.reshape(-1, x.shape[-1]), lambda c: F.linear(c, weight, bias), rows)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _linear_class() -> type:
    import torch

    class FixedRowsLinear(torch.nn.Linear):
        """nn.Linear whose matmul runs in blocks of exactly `rows` rows (see the module docstring).
        Same parameters and state dict as the Linear it replaces."""

        invariant_rows: int = DEFAULT_ROWS

        def forward(self, x: Any) -> Any:
            return _fixed_rows_linear(x, self.weight, self.bias, self.invariant_rows)

    return FixedRowsLinear


@functools.cache
def _cls() -> type:
    return _linear_class()


def __getattr__(name: str) -> Any:     # FixedRowsLinear is built on first use: torch is imported lazily
    if name == "FixedRowsLinear":
        return _cls()
    raise AttributeError(name)


def _pad_last(x: Any, mult: int) -> tuple[Any, int]:
    import torch.nn.functional as F

    n = x.shape[-1]
    pad = (-n) % mult
    return (F.pad(x, (0, pad)) if pad else x), n


def _padded_act(x: Any, act: Any) -> Any:
    """`act(x)` computed on a last dim padded to a multiple of 64 (no scalar tail, see above)."""
    padded, n = _pad_last(x, _VEC_BLOCK)
    return act(padded)[..., :n] if padded is not x else act(x)


def _rotary_forward(orig: Any, x: Any, position_ids: Any, *args: Any, **kwargs: Any) -> Any:
    """The model's rotary embedding on positions padded so every row is a whole number of blocks."""
    import torch.nn.functional as F

    s = position_ids.shape[-1]
    step = _VEC_BLOCK // math.gcd(_VEC_BLOCK, int(getattr(orig.__self__, "head_dim", 0) or _head_dim(x, orig)))
    pad = (-s) % step
    if not pad:
        return orig(x, position_ids, *args, **kwargs)
    cos, sin = orig(x, F.pad(position_ids, (0, pad)), *args, **kwargs)
    return cos[:, :s], sin[:, :s]


def _head_dim(x: Any, orig: Any) -> int:
    inv = getattr(orig.__self__, "inv_freq", None)
    return 2 * inv.shape[-1] if inv is not None else _VEC_BLOCK


def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention function ("epic_invariant"): query [B, H, q, D], key/value [B, Hkv, L, D],
    attention_mask a 4D bool mask [B, 1, q, L] (True = attend) or None; returns ([B, q, H, D], None).

    Each row's visible keys (those its last query may see: every real token of the row) are gathered,
    in order, to the front of a buffer of a multiple of 64 columns; query i of a row with n keys sees
    keys 0..n-q+i. So a row's arithmetic is the same whatever the padding its batch needed."""
    import torch

    b, h, q, d = query.shape
    hkv = key.shape[1]
    g = h // hkv
    rows = getattr(module, "invariant_rows", DEFAULT_ROWS)
    n, flat, allowed, live = _layout(attention_mask, b, q, key.shape[2], query.device)
    width = live.shape[1]
    # all of it in fp32, like sdpa's bf16 kernel: bf16 scores (8-bit mantissa) flip answers
    k = _take(key, flat, width).float()    # dead columns hold finite cache values; their scores are masked
    v = torch.where(live[:, None, :, None], _take(value, flat, width).float(), torch.zeros(()))
    # GQA: the g query heads of one KV head become g*q rows against that head's keys
    qg = query.reshape(b, hkv, g * q, d).float()
    scores = fixed_rows_matmul(qg, k.transpose(-1, -2), rows)
    scores = scores * (scaling if scaling is not None else d ** -0.5)
    allowed = allowed[:, None, None].expand(b, hkv, g, q, width).reshape(b, hkv, g * q, width)
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)   # finite: a padding query stays finite
    probs = torch.softmax(scores, dim=-1)
    out = fixed_rows_matmul(probs, v, rows).to(query.dtype)     # [B, Hkv, g*q, D]
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous(), None


_last = threading.local()       # per decode thread: .ref (weakref to the mask of the forward in progress), .layout


def _layout(attention_mask: Any, b: int, q: int, length: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """Per row: key count n [B], the token indices to take (row b's keys first, then filler; flattened
    over [B*L] for `_take`), allowed [B, q, W] (query i sees keys 0..n-q+i), live [B, W]. Every layer of one forward gets the same mask object, so the
    layout is computed once per forward (a weak reference: a freed mask never matches a new one)."""
    import weakref

    import torch

    ref = getattr(_last, "ref", None)
    if attention_mask is not None and ref is not None and ref() is attention_mask:
        return _last.layout
    if attention_mask is None:
        vis = torch.ones((b, length), dtype=torch.bool, device=device)
    else:
        m = attention_mask[:, 0, -1, :]
        vis = m if m.dtype == torch.bool else m == 0
    n = vis.sum(-1)
    width = max(_KEY_BLOCK, -(-int(n.max()) // _KEY_BLOCK) * _KEY_BLOCK)
    order = torch.argsort((~vis).to(torch.int8), dim=-1, stable=True)   # a row's keys first, in order
    if width > length:
        order = torch.nn.functional.pad(order, (0, width - length))
    order = order[:, :width]
    kpos = torch.arange(width, device=device)
    live = kpos[None, :] < n[:, None]
    qlim = n[:, None] - q + torch.arange(q, device=device)[None, :]     # [B, q] the last key each query sees
    allowed = kpos[None, None, :] <= qlim[:, :, None]
    flat = (order + torch.arange(b, device=device)[:, None] * length).reshape(-1)
    out = (n, flat, allowed, live)
    if attention_mask is not None:
        _last.ref, _last.layout = weakref.ref(attention_mask), out
    return out


def _take(x: Any, flat: Any, width: int) -> Any:
    """x [B, H, L, D] -> [B, H, W, D]: row b's columns listed in flat[b*W:(b+1)*W] (indices into the
    [B*L] token axis). One index_select of whole [H, D] token slices: ~10x faster than `gather`."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b * length, h, d).index_select(0, flat).view(b, width, h, d).transpose(1, 2)


def _mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' boolean 4D mask, never skipped for pure causal (the attention needs padding info)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, attention)
    AttentionMaskInterface.register(ATTN_NAME, _mask)


def make_invariant(model: Any, rows: int = DEFAULT_ROWS) -> Any:
    """Make `model` (a transformers causal LM) batch-invariant in place and return it: fixed-row
    matmuls in every nn.Linear and the invariant attention. Quantized linears that define
    `invariant_rows` (quantize.py) get the same row count. A model whose attention is not plain
    causal attention (`supported`) is returned unchanged, and `is_invariant` says so."""
    import torch

    if rows < 1:
        raise ValueError("rows must be >= 1")
    if not supported(model.config):
        return model          # its attention needs what `attention` does not do: left as it is, not invariant
    _register()
    cls = _cls()
    for mod in model.modules():
        if type(mod) is torch.nn.Linear:
            mod.__class__ = cls
        if hasattr(mod, "invariant_rows") or type(mod) is cls:
            mod.invariant_rows = rows
        if hasattr(mod, "num_key_value_groups"):                  # attention modules: rows for q blocks
            mod.invariant_rows = rows
        act = getattr(mod, "act_fn", None)
        if isinstance(act, torch.nn.Module) and not hasattr(act, "_epic_orig"):
            act._epic_orig = act.forward
            act.forward = functools.partial(_padded_act, act=act._epic_orig)
        if hasattr(mod, "inv_freq") and "rotary" in type(mod).__name__.lower() and not hasattr(mod, "_epic_orig"):
            mod._epic_orig = mod.forward
            mod.forward = functools.partial(_rotary_forward, mod._epic_orig)
    model.set_attn_implementation(ATTN_NAME)
    model.epic_invariant_rows = rows
    return model


def supported(config: Any) -> bool:
    """Whether `attention` computes what this model's attention does: plain causal attention over
    every earlier token (no sliding window, logit soft-capping or attention sinks)."""
    types = getattr(config, "layer_types", None)
    if types is not None and any(t != "full_attention" for t in types):
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    return not any(getattr(config, k, None) for k in ("attn_logit_softcapping", "attention_sinks", "sinks"))


def is_invariant(model: Any) -> bool:
    """Whether `make_invariant` was applied to `model`."""
    return getattr(model, "epic_invariant_rows", None) is not None
