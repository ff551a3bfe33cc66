"""Precision and kernels for the batcher on this CPU: fp32 vs bf16 vs int8 dynamic quantization.

    python -m benchmarks.bench_precision [--modes fp32,bf16,int8] [--rows 1,16,64] [--new 32] [--reps 2]

For each mode the same SmolLM2 batcher (`load_batcher`) answers the same fan-outs of chat prompts
(greedy, EOS ignored so every row runs `--new` tokens), modes interleaved rep by rep so machine noise
hits them alike. Reported: median wall time per fan-out, tokens/s, and greedy agreement with fp32 on
the 16 prompts (identical answers, and the mean fraction of each fp32 answer's tokens that match
before the first difference). Writes benchmarks/results/precision.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from benchmarks.report import write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).parent / "results"
MODES = {"fp32": ("float32", None), "bf16": ("bfloat16", None), "int8": ("float32", "int8")}


def prompts(n: int) -> list[str]:
    from benchmarks.bench_engines import TOPICS

    return [f"Explain {t} in two sentences." for t in TOPICS[:n]]


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
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--rows", default="1,16,64")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    import torch

    from epic_kernel.llm.transformers_backend import load_batcher

    modes = args.modes.split(",")
    rows = [int(n) for n in args.rows.split(",")]
    batchers = {m: load_batcher("smollm2", device="cpu", dtype=getattr(torch, MODES[m][0]), quantize=MODES[m][1],
                                max_batch_size=max(rows), prefix_cache_mb=0) for m in modes}
    times: dict[str, dict[int, list[float]]] = {m: {n: [] for n in rows} for m in modes}
    answers: dict[str, list[list[int]]] = {}
    try:
        for m in modes:     # warm-up, and the 16 answers greedy agreement is judged on
            answers[m] = asyncio.run(fanout(batchers[m], prompts(16), args.new))
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
           "threads": torch.get_num_threads(), "modes": {}}
    for m in modes:
        med = {n: statistics.median(times[m][n]) for n in rows}
        res["modes"][m] = {"wall_s": med, "tok_per_s": {n: round(n * args.new / med[n], 1) for n in rows},
                           **(agreement(answers["fp32"], answers[m]) if "fp32" in answers else {})}
    write_results(args.out, "precision", res, markdown(res, rows), echo=True)
    return res


def markdown(res: dict, rows: list[int]) -> str:
    base = res["modes"].get("fp32")
    lines = ["# Batcher precision on this CPU (SmolLM2-135M-Instruct)", "",
             f"{res['when']}; {res['new']} tokens per answer (EOS ignored), greedy, {res['threads']} threads, "
             f"median of {res['reps']}, modes interleaved. Agreement: answers to 16 chat prompts identical to fp32's, "
             "and the mean share of each fp32 answer matched before the first different token.", "",
             "| mode | " + " | ".join(f"{n} rows" for n in rows) + " | " + " | ".join(f"vs fp32 @{n}" for n in rows)
             + " | identical to fp32 | common prefix |", "|" + "---|" * (3 + 2 * len(rows))]
    for m, r in res["modes"].items():
        cells = [f"{r['wall_s'][n]:.2f} s ({r['tok_per_s'][n]:.0f} tok/s)" for n in rows]
        cells += [f"{base['wall_s'][n] / r['wall_s'][n]:.2f}x" if base else "-" for n in rows]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {r.get('identical', '-')} | {r.get('mean_common_prefix', '-')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
