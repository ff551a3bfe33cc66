"""What `logprobs=k` costs: decode throughput of the shared batcher at 16 rows with every row asking
(k=5) against none asking, and the bytes a 1,000-token answer's token view adds to a saved notebook.

Throughput: 16 raw prompts sent at once through one `TransformersBackend` (one decode batch), EOS
ignored so every row decodes exactly `--new` tokens; the two workloads alternate for `--reps` reps
so load drift hits both alike; median wall time, tokens per second, and the cost in percent (target
<= 5 %). Size: one call of `--size-tokens` tokens (k=5 and k=0), the HTML its token view adds to the
run's saved snapshot, and the compact JSON record (target <= 100 KB at 1,000 tokens).
Writes benchmarks/results/logprobs.json/md.

    python -m benchmarks.bench_logprobs --model smollm2 --new 64 --reps 5 [--threads 2]
    python -m benchmarks.bench_logprobs --model tiny --new 8 --reps 1 --size-tokens 100   # quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.report import write_results

RESULTS = Path(__file__).parent / "results"
ROWS = 16
_WORDS = ("the cat reads a long letter from home while our team builds a list of tokens and the server "
          "returns an answer quickly").split()


def prompts(n: int) -> list[str]:
    return [" ".join(_WORDS[i % 7:i % 7 + 6 + i % 5]) for i in range(n)]


async def once(backend, reqs) -> tuple[float, int]:
    backend.batcher.reset_stats()
    t0 = time.perf_counter()
    await asyncio.gather(*(backend.generate(r) for r in reqs))
    return time.perf_counter() - t0, backend.stats()["tokens_out"]


def throughput(model: str, new: int, reps: int) -> dict:
    from epic_kernel.llm.base import LLMRequest, SamplingParams
    from epic_kernel.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(model, device="cpu", ignore_eos=True, flush_ms=50, prefix_cache_mb=0)
    try:
        def build(k):
            return [LLMRequest.build(p, raw=True, params=SamplingParams(max_tokens=new), logprobs=k)
                    for p in prompts(ROWS)]
        jobs = {"none": build(None), "all_k5": build(5)}
        asyncio.run(once(backend, jobs["none"]))                 # warm up
        runs: dict[str, list] = {k: [] for k in jobs}
        for _ in range(reps):
            for k, reqs in jobs.items():
                runs[k].append(asyncio.run(once(backend, reqs)))
    finally:
        backend.close()
    out = {}
    for k, v in runs.items():
        wall = statistics.median(r[0] for r in v)
        out[k] = {"wall_s": round(wall, 4), "tokens": v[-1][1], "tokens_per_s": round(v[-1][1] / wall, 1),
                  "walls": [round(r[0], 4) for r in v]}
    out["cost_pct"] = round(100 * (out["all_k5"]["wall_s"] / out["none"]["wall_s"] - 1), 2)
    return out


def size(model: str, n: int) -> dict:
    """Bytes of one n-token call's token view in a saved run snapshot (HTML), and its compact record."""
    from epic_kernel.widgets import RunModel, snapshot_html

    from epic_kernel import run
    from epic_kernel.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(model, device="cpu", ignore_eos=True, prefix_cache_mb=0)
    out = {}
    try:
        for k in (5, 0, None):
            arg = "" if k is None else f", logprobs={k}"
            res = run(f'x = llm("Write a long story about a cat.", max_tokens={n}, temperature=0.8, seed=1{arg})',
                      backend=backend)
            model_ = RunModel()
            for ev in res.trace:
                model_.on_event(ev)
            model_.finish(res)
            snap = model_.snapshot()
            html = snapshot_html(snap)
            out[f"k={k}" if k is not None else "no logprobs"] = {
                "snapshot_html_bytes": len(html.encode()), "tokens": res.calls[0].tokens_out,
                "compact_json_bytes": len(json.dumps(snap["tokens"]).encode()) if snap["tokens"] else 0}
    finally:
        backend.close()
    base = out["no logprobs"]["snapshot_html_bytes"]
    for key in ("k=5", "k=0"):
        out[key]["added_bytes"] = out[key]["snapshot_html_bytes"] - base
    return out


def write(results: dict, out: Path = RESULTS) -> None:
    t = results["throughput"]
    lines = ["# logprobs= cost (shared batcher) and token-view size", "",
             f"{results['machine']}; model {results['model']}; load before: {results['load']}", "",
             f"Throughput, {ROWS} rows in one batch, {results['new']} tokens each, median of {results['reps']} reps:", "",
             "| rows asking | wall s | tokens/s |", "|---|---|---|",
             f"| none | {t['none']['wall_s']} | {t['none']['tokens_per_s']} |",
             f"| all 16 (k=5) | {t['all_k5']['wall_s']} | {t['all_k5']['tokens_per_s']} |", "",
             f"Cost of logprobs at 16 rows, all asking: **{t['cost_pct']:+.2f} %** (target <= 5 %).", "",
             "Saved-notebook size of one call's token view (HTML added to the run's snapshot):", "",
             "| record | tokens | HTML added | compact JSON |", "|---|---|---|---|"]
    for key in ("k=5", "k=0"):
        s = results["size"][key]
        lines.append(f"| {key} | {s['tokens']} | {s['added_bytes'] / 1000:.1f} KB | {s['compact_json_bytes'] / 1000:.1f} KB |")
    lines += ["", "Target: <= 100 KB for a 1,000-token answer. Kept small by: alternatives only where k > 0 was "
              "asked, probabilities as whole percents and times as whole milliseconds, one HTML table "
              "(no second copy as JSON), closing tags the HTML parser does not need left out."]
    write_results(out, "logprobs", results, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size-tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1]
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} threads",
               "model": args.model, "new": args.new, "reps": args.reps, "load": load.strip(),
               "throughput": throughput(args.model, args.new, args.reps),
               "size": size(args.model, args.size_tokens)}
    write(results, Path(args.out))
    return results


if __name__ == "__main__":
    main()
