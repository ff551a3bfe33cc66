"""The batcher's growing KV layers: same tensors as transformers' concatenating DynamicLayer, without
reallocating on every step, and robust to the row surgery that replaces `keys` from outside."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.cache_utils import DynamicLayer  # noqa: E402

from epic_kernel.llm.kvcache import growing_layer  # noqa: E402


def test_growing_layer_matches_dynamic_layer_and_grows_in_place():
    torch.manual_seed(0)
    grow, plain = growing_layer()(), DynamicLayer()
    chunks = [torch.randn(3, 2, n, 4) for n in (5, 1, 1, 1)]
    ptrs = set()
    for k in chunks:
        gk, gv = grow.update(k, -k)
        pk, pv = plain.update(k, -k)
        assert torch.equal(gk, pk) and torch.equal(gv, pv) and grow.get_seq_length() == pk.shape[-2]
        ptrs.add(gk.data_ptr())
    assert len(ptrs) == 1                      # one buffer: the decode steps wrote into its spare room
    # row surgery from outside (what the batcher's select/merge do): the next update adopts the new tensor
    grow.keys, grow.values = grow.keys[[0, 2]], grow.values[[0, 2]]
    plain.keys, plain.values = plain.keys[[0, 2]], plain.values[[0, 2]]
    step = torch.randn(2, 2, 1, 4)
    gk, gv = grow.update(step, step)
    pk, pv = plain.update(step, step)
    assert torch.equal(gk, pk) and torch.equal(gv, pv) and gk.shape == (2, 2, 9, 4)
