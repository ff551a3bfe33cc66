"""A radix tree of prompt token ids -> their KV tensors, with an LRU byte budget.

Why: the programs this project runs repeat long prompt prefixes (the chat template's system prompt,
ToT's few-shot examples, SoT's question and skeleton). A prefix's keys and values depend only on its
tokens and positions (0..n-1 here: every row's positions start at 0), so they can be computed once
and copied into any later row that starts with the same tokens (SGLang's RadixAttention, vLLM's
prefix caching). The batcher owns one `PrefixCache` and uses it from its worker thread only, so
nothing here locks.

Storage: each node holds the KV of its edge's tokens as one contiguous tensor
`[layers, 2 (k/v), kv_heads, tokens, head_dim]`. A lookup concatenates the nodes along the matched
path (a copy: callers may keep it while the tree evicts). When the stored bytes exceed the budget,
the least recently used leaves go first (a leaf's parent becomes a leaf in turn), so the shared
trunk, touched by every lookup that passes through it, stays longest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PrefixCache"]

KVSlice = Callable[[int, int], Any]
"""`kv(start, end)` -> the KV of tokens start..end-1 as `[layers, 2, kv_heads, end-start, head_dim]`."""


class _Node:
    __slots__ = ("children", "kv", "last_used", "parent", "tokens")

    def __init__(self, tokens: tuple[int, ...], kv: Any, parent: _Node | None):
        self.tokens = tokens
        self.kv = kv
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.last_used = 0

    @property
    def nbytes(self) -> int:
        return 0 if self.kv is None else self.kv.numel() * self.kv.element_size()


class PrefixCache:
    """Longest-prefix lookup and insertion of KV tensors by token ids (worker thread only)."""

    def __init__(self, budget_bytes: int):
        if budget_bytes < 0:
            raise ValueError("the prefix cache budget must be >= 0 bytes")
        self.budget = budget_bytes
        self.root = _Node((), None, None)
        self.bytes = 0
        self.evicted_tokens = 0
        self._clock = itertools.count(1)

    def __len__(self) -> int:
        """Tokens stored."""
        return sum(len(n.tokens) for n in self._nodes())

    def matched(self, ids: Sequence[int]) -> int:
        """How many leading tokens of `ids` are stored (no copy, no LRU touch)."""
        node, pos = self.root, 0
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            k = _common(child.tokens, ids, pos)
            pos += k
            if k < len(child.tokens):
                break
            node = child
        return pos

    def match(self, ids: Sequence[int], limit: int | None = None) -> tuple[int, Any]:
        """The longest stored prefix of `ids[:limit]`: (length, KV `[layers, 2, heads, length, dim]` or None)."""
        ids = ids[:limit] if limit is not None else ids
        node, pos, parts = self.root, 0, []
        now = next(self._clock)
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            k = _common(child.tokens, ids, pos)
            child.last_used = now
            parts.append(child.kv if k == len(child.tokens) else child.kv[..., :k, :])
            pos += k
            if k < len(child.tokens):
                break
            node = child
        if not parts:
            return 0, None
        import torch

        return pos, (parts[0].clone() if len(parts) == 1 else torch.cat(parts, dim=-2))

    def insert(self, ids: Sequence[int], kv: KVSlice) -> int:
        """Store `ids`, asking `kv(start, end)` only for the tokens not stored yet; returns how many
        tokens were new. Then evicts least recently used leaves down to the budget."""
        if self.budget == 0 or not ids:
            return 0
        node, pos = self.root, 0
        now = next(self._clock)
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            k = _common(child.tokens, ids, pos)
            if k < len(child.tokens):
                child = self._split(child, k)
            child.last_used = now
            pos += k
            node = child
        added = len(ids) - pos
        if added:
            leaf = _Node(tuple(ids[pos:]), kv(pos, len(ids)).contiguous(), node)
            leaf.last_used = now
            node.children[ids[pos]] = leaf
            self.bytes += leaf.nbytes
        self._evict()
        return added

    def clear(self) -> None:
        self.root.children.clear()
        self.bytes = 0

    def _split(self, node: _Node, k: int) -> _Node:
        """Cut `node`'s edge after k tokens; returns the new upper node (which keeps the parent link)."""
        upper = _Node(node.tokens[:k], node.kv[..., :k, :].clone(), node.parent)
        upper.last_used = node.last_used
        node.parent.children[node.tokens[0]] = upper
        node.tokens, node.kv, node.parent = node.tokens[k:], node.kv[..., k:, :].clone(), upper
        upper.children[node.tokens[0]] = node
        return upper

    def _evict(self) -> None:
        if self.bytes <= self.budget:
            return
        leaves = sorted((n for n in self._nodes() if not n.children), key=lambda n: n.last_used)
        while self.bytes > self.budget and leaves:
            leaf = leaves.pop(0)
            parent = leaf.parent
            del parent.children[leaf.tokens[0]]
            self.bytes -= leaf.nbytes
            self.evicted_tokens += len(leaf.tokens)
            if parent is not self.root and not parent.children:     # the parent is a leaf now
                i = next((j for j, n in enumerate(leaves) if n.last_used > parent.last_used), len(leaves))
                leaves.insert(i, parent)

    def _nodes(self) -> list[_Node]:
        out, todo = [], list(self.root.children.values())
        while todo:
            n = todo.pop()
            out.append(n)
            todo.extend(n.children.values())
        return out


def _common(tokens: tuple[int, ...], ids: Sequence[int], pos: int) -> int:
    """How many of `tokens` equal `ids[pos:]`, from the start."""
    n = min(len(tokens), len(ids) - pos)
    for i in range(n):
        if tokens[i] != ids[pos + i]:
            return i
    return n
