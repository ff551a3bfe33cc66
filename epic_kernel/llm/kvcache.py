"""The batcher's KV cache: transformers' `DynamicCache` with layers that grow in place, and the
row surgery (select, merge) that continuous batching needs. Pure tensors, no scheduling.

Why growing layers: `DynamicLayer.update` appends a decode step's one new column with `torch.cat`,
which copies the layer's whole cache every step. At 64 rows of SmolLM2 (30 layers, 3 KV heads) and
~100 tokens that is ~0.3 GB of copying per step, all of it outside the model's math (profile:
benchmarks/results/profile_step.md). `GrowingLayer` keeps spare room along the sequence axis and
writes the new column into it; `keys`/`values` stay views of the filled part, so every reader
(transformers' attention, `get_seq_length`, the batcher's row surgery) sees a normal tensor. Anything
that replaces `keys` (row selection, merging) simply makes the next update adopt the new tensor
into a fresh buffer: one copy per join or leave, not one per step.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_kwarg", "cache_of", "merge", "mergeable", "new_cache", "plain_layers", "select_rows"]

_SPARE = 64          # columns of spare room a buffer gets when it is (re)allocated, at least


def _growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A `DynamicLayer` whose keys/values are views into buffers with spare columns (see module doc)."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._kbuf: Any = None
            self._vbuf: Any = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            cur = self.keys.shape[-2] if self.keys.numel() else 0
            if not self._owns(key_states, cur + n):
                self._adopt(key_states, value_states, cur, cur + n)
            self._kbuf[:, :, cur:cur + n] = key_states
            self._vbuf[:, :, cur:cur + n] = value_states
            self.keys = self._kbuf[:, :, :cur + n]
            self.values = self._vbuf[:, :, :cur + n]
            return self.keys, self.values

        def _owns(self, new: Any, need: int) -> bool:
            """keys/values are still the front of our buffers, and the buffers have room for `need`."""
            kb = self._kbuf
            return (kb is not None and need <= kb.shape[2] and kb.shape[:2] == new.shape[:2]
                    and self.keys.data_ptr() == kb.data_ptr() and self.values.data_ptr() == self._vbuf.data_ptr()
                    and self.keys.stride() == kb.stride())

        def _adopt(self, key_states: Any, value_states: Any, cur: int, need: int) -> None:
            b, h, _, d = key_states.shape
            cap = need + max(_SPARE, need // 4)
            kb = key_states.new_empty((b, h, cap, d))
            vb = value_states.new_empty((b, h, cap, value_states.shape[-1]))
            if cur:
                kb[:, :, :cur] = self.keys
                vb[:, :, :cur] = self.values
            self._kbuf, self._vbuf = kb, vb

        def reset(self) -> None:
            self._kbuf = self._vbuf = None
            super().reset()

    return GrowingLayer


@functools.cache
def growing_layer() -> type:
    """The `GrowingLayer` class (built on first use: transformers is imported lazily)."""
    return _growing_layer_class()


@functools.cache
def _cache_kwarg_of(forward_cls: type) -> str:
    params = inspect.signature(forward_cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg(model: Any) -> str:
    """The forward() keyword for the cache: `cache` since transformers 5.2x, `past_key_values` before."""
    return _cache_kwarg_of(type(model))


def cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def new_cache(model: Any) -> Any:
    """An empty cache for `model`; plain full-attention layers become `GrowingLayer`s."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:           # older transformers
        return DynamicCache()
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer for layer in layers):
        cache.layers = [growing_layer()() for _ in layers]
    return cache


def _plain(layer: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    return type(layer) is DynamicLayer or type(layer) is growing_layer()


def plain_layers(cache: Any) -> bool:
    """Every layer is a full-length DynamicLayer (no sliding window): its KV can be cut and pasted."""
    try:
        layers = getattr(cache, "layers", None)
        return bool(layers) and all(_plain(layer) for layer in layers)
    except ImportError:
        return False


def mergeable(cache: Any) -> bool:
    """Plain layers, all filled: rows can be selected, trimmed and stacked (see `merge`)."""
    return plain_layers(cache) and all(layer.is_initialized for layer in cache.layers)


def select_rows(cache: Any, mask: Any, idx: Any) -> tuple[Any, Any]:
    """Keep rows `idx`, then drop leading columns that are padding in every remaining row."""
    cache.batch_select_indices(idx)
    mask = mask[idx]
    first = int(mask.any(0).int().argmax())        # leading columns that are padding in every row
    if first > 0 and mergeable(cache):
        for layer in cache.layers:
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
        mask = mask[:, first:]
    return cache, mask


def merge(cache_a: Any, mask_a: Any, cache_b: Any, mask_b: Any) -> tuple[Any, Any]:
    """Stack two left-padded caches along the batch axis, left-padding the shorter one with zeros."""
    import torch
    import torch.nn.functional as F

    width = max(mask_a.shape[1], mask_b.shape[1])

    def pad(x: Any, n: int) -> Any:         # x: [B, heads, T, dim] -> zeros on the left of T
        return F.pad(x, (0, 0, n, 0)) if n else x

    na, nb = width - mask_a.shape[1], width - mask_b.shape[1]
    for la, lb in zip(cache_a.layers, cache_b.layers, strict=True):
        la.keys = torch.cat([pad(la.keys, na), pad(lb.keys, nb)], dim=0)
        la.values = torch.cat([pad(la.values, na), pad(lb.values, nb)], dim=0)
    mask = torch.cat([F.pad(mask_a, (na, 0)), F.pad(mask_b, (nb, 0))], dim=0)
    return cache_a, mask
