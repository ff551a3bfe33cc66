"""The judge on a real model: llama-server (llama.cpp) with the default model, SmolLM2-135M, on
12 control pairs (a complete answer vs the same answer cut in half), each asked in both orders.

The oracle is the protocol, not the model's taste: every reply is kept, a reply that cannot be
parsed makes its pair "unparsed" (never a win), and the numbers that say how far to trust this
judge (accuracy on the control pairs, order-consistency, unparsed replies) are computed and
printed; docs/decoding.md quotes them. A 135M judge is expected to be poor: no threshold on its
accuracy is asserted. Skipped when llama-server is not built (fails under EPIC_REQUIRE_ENGINES=1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")

from epic_kernel import run  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402
from epic_kernel.programs.judge import cut_in_half, reliability  # noqa: E402

pytestmark = pytest.mark.engines
CONTROLS = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "judge_controls.jsonl"


@pytest.mark.timeout(900)          # ~1 min on a quiet 2-core machine; a loaded one is many times slower
def test_smollm2_judge_on_llama_server_in_both_orders(engine_factory, capsys):
    srv = engine_factory("llama.cpp")
    judge = OpenAIBackend(base_url=srv.base_url, api_key="none", model="smollm2", timeout=120.0)
    pairs = [json.loads(line) for line in CONTROLS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(pairs) >= 10
    # every pair in one epic run: all 2 x 12 judge calls in flight at once (llama-server's slots batch them);
    # 32 tokens: FastChat's verdict is the reply's first line (the explanation after it is not read)
    triples = [(p["question"], p["answer"], cut_in_half(p["answer"])) for p in pairs]
    verdicts = run("[judge_pair(q, full, half, 32) for q, full, half in triples]", backend=judge,
                   namespace={"triples": triples}).value
    for v in verdicts:
        for side, at in (("forward", 1), ("backward", 2)):
            s = v[side]
            assert isinstance(s["reply"], str) and s["candidate_is"] == f"Assistant {at}"
            assert (s["scores"] is None) == (s["verdict"] == "unparsed")       # unparsed only when unread
        if "unparsed" in (v["forward"]["verdict"], v["backward"]["verdict"]):
            assert v["verdict"] == "unparsed" and v["consistent"] is None   # never a win
        elif v["forward"]["verdict"] != v["backward"]["verdict"]:
            assert v["verdict"] == "tie"                                    # flipped with the order
    r = reliability(verdicts)
    assert r["pairs"] == len(pairs) and r["win"] + r["tie"] + r["loss"] + r["unparsed"] == len(pairs)
    with capsys.disabled():
        print(f"\nSmolLM2-135M judge on llama-server, {len(pairs)} control pairs x 2 orders: "
              f"accuracy {r['accuracy']:.2f}, order-consistency "
              f"{'n/a' if r['order_consistency'] is None else format(r['order_consistency'], '.2f')}, "
              f"unparsed pairs {r['unparsed']}, unreadable replies {r['sides_unparsed']:.2f}, "
              f"W/T/L {r['win']}/{r['tie']}/{r['loss']}")
