"""Prefill inputs for rows that resume from a cached prompt prefix (pure tensors, no scheduling).

Why a separate module: the batcher decides *when* to prefill; this decides *what* a prefill computes
when some rows' prompt prefixes are already in the `PrefixCache`, and which prefixes a batch of
newcomers shares (so a prefix shared by several new rows is computed once, before them).

Layout of a batch whose row i has `n_i` cached prefix tokens and `s_i` tokens still to compute
(P = max n_i, S = max s_i), along the sequence axis:

    [ pad (P - n_i) | cached prefix (n_i) | pad (S - s_i) | suffix (s_i) ]

The cache holds the first P columns (filled from the prefix cache), the forward computes the last S;
the attention mask is 0 on both pads and position ids count only real tokens, so each row sees
exactly its own prompt at positions 0..len-1, as when it is prefilled alone. Left padding, holes in
the mask and explicit positions are what the batcher already relies on for batch-invariant greedy
tokens (notes/models.md section 5).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

__all__ = ["Layout", "layout", "row_kv", "shared_prefixes"]


def shared_prefixes(seqs: Sequence[Sequence[int]], min_tokens: int) -> list[list[tuple[int, ...]]]:
    """The prompt prefixes that two or more of `seqs` share, grouped in rounds (shortest first).

    Every branch point of the seqs' trie is the common prefix of two neighbours in sorted order. A
    prefix is capped one token short of each prompt that has it (a prompt's last token must be
    computed to get its logits). Round k holds prefixes that have no shorter shared prefix left in
    an earlier round of their own, so computing the rounds in order computes each token once."""
    order = sorted(range(len(seqs)), key=lambda i: list(seqs[i]))
    found: set[tuple[int, ...]] = set()
    for a, b in itertools.pairwise(order):
        sa, sb = seqs[a], seqs[b]
        n = min(_lcp(sa, sb), len(sa) - 1, len(sb) - 1)
        if n >= min_tokens:
            found.add(tuple(sa[:n]))
    rounds: list[list[tuple[int, ...]]] = []
    todo = sorted(found, key=len)
    while todo:
        this: list[tuple[int, ...]] = []
        later = []
        for p in todo:
            (later if any(p[:len(q)] == q for q in this) else this).append(p)
        rounds.append(this)
        todo = later
    return rounds


class Layout:
    """Tensors for one prefill: `ids` [B, S], `mask` [B, P+S], `pos` [B, S], `past` (per layer (k, v)
    [B, heads, P, dim], or None when no row has a cached prefix), and `cols[i]`: the columns that
    hold row i's real tokens, in order (to copy its KV back into the prefix cache)."""

    __slots__ = ("cols", "computed", "ids", "mask", "past", "pos")

    def __init__(self, ids: Any, mask: Any, pos: Any, past: Any, cols: list[Any], computed: int):
        self.ids, self.mask, self.pos, self.past, self.cols, self.computed = ids, mask, pos, past, cols, computed


def layout(seqs: Sequence[Sequence[int]], hits: Sequence[tuple[int, Any]], pad_id: int, device: Any) -> Layout:
    """Build a prefill for `seqs` where `hits[i] = (n_i, kv_i)` is row i's cached prefix
    (kv_i `[layers, 2, heads, n_i, dim]`, or None when n_i == 0)."""
    import torch

    lens = [len(s) for s in seqs]
    cached = [n for n, _ in hits]
    rest = [ln - n for ln, n in zip(lens, cached, strict=True)]
    b, p, s = len(seqs), max(cached), max(rest)
    ids = torch.full((b, s), pad_id, dtype=torch.long)
    mask = torch.zeros((b, p + s), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, s - rest[i]:] = torch.tensor(seq[cached[i]:], dtype=torch.long)
        mask[i, p - cached[i]:p] = 1
        mask[i, p + s - rest[i]:] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
    past = None
    if p:
        some = next(kv for _, kv in hits if kv is not None)
        layers, _, heads, _, dim = some.shape
        buf = some.new_zeros((layers, 2, b, heads, p, dim))
        for i, (n, kv) in enumerate(hits):
            if n:
                buf[:, :, i, :, p - n:] = kv
        buf = buf.to(device)
        past = [(buf[layer, 0], buf[layer, 1]) for layer in range(layers)]
    cols = [mask[i].nonzero().squeeze(-1).to(device) for i in range(b)]
    return Layout(ids.to(device), mask.to(device), pos.to(device), past, cols, sum(rest))


def row_kv(cache: Any, row: int, cols: Any, start: int, end: int) -> Any:
    """Row `row`'s KV for its tokens start..end-1 (`cols` maps token index -> cache column), as
    `[layers, 2, heads, end-start, dim]` on the cache's device (a copy)."""
    import torch

    c = cols[start:end]
    return torch.stack([torch.stack([layer.keys[row].index_select(1, c), layer.values[row].index_select(1, c)])
                        for layer in cache.layers])


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
