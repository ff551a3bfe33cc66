"""The cost of regex=/choices= on the local backend: 32 concurrent calls, constrained vs plain.

For each model (`--models tiny10m,smollm2`), 32 raw prompts sent at once through one
`TransformersBackend` (so they share a decode batch), `--new` tokens each:

* plain: no constraint, EOS ignored, so every row decodes exactly `--new` tokens (the baseline);
* regex: `regex="[a-z ]*"`: a mask over a large share of the vocabulary every step (the expensive
  case for the matcher); rows may end early at EOS, so cost is compared per row-token;
* choices: the map an evaluator sends most often, 32 calls with the same 8 `choices=` (one compile,
  then cached matchers), against 32 plain calls of the same token count.

Reported per workload: wall seconds (median of `--reps`), decode steps, row-tokens, ms per
row-token, the overhead against plain, and the time spent inside the constraint hooks per step
(measured directly, so it does not drown in the noise of a shared machine). Writes benchmarks/results/constrained_decoding.json/md.

    python -m benchmarks.bench_constrained_decoding --models tiny10m,smollm2 --reps 3 [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.report import write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N = 32
WORDS = ("the cat reads a book today and the dog writes some tokens while a user sends the request "
         "again with care for you at night because the server returns an answer quickly").split()
LABELS = ["animal", "plant", "mineral", "person", "place", "tool", "food", "idea"]
RESULTS = Path(__file__).parent / "results"


def prompts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(12 + i % 9)) for i in range(n)]


def workloads(new: int) -> dict[str, list]:
    from epic_kernel.llm.base import LLMRequest, SamplingParams

    def build(**kw):
        return [LLMRequest.build(p, raw=True, params=SamplingParams(**kw)) for p in prompts(N)]

    return {"plain": build(max_tokens=new), "regex": build(max_tokens=new, regex="[a-z ]*"),
            "choices": [LLMRequest.build(f"Is a {w} an animal, a plant or a mineral?",
                                         params=SamplingParams(choices=tuple(LABELS)))
                        for w in (WORDS * 2)[:N]]}


HOOK_S = [0.0]      # seconds spent inside constraint hooks (masking), summed over rows and steps


def time_hooks() -> None:
    """Wrap ConstraintHook.__call__ to add up its time: the mask's own cost, free of model noise."""
    from epic_kernel.llm.constrained import ConstraintHook

    call = ConstraintHook.__call__

    def timed(self, generated, logits):
        t0 = time.perf_counter()
        try:
            return call(self, generated, logits)
        finally:
            HOOK_S[0] += time.perf_counter() - t0

    ConstraintHook.__call__ = timed


async def once(backend, reqs) -> tuple[float, int, int, float]:
    backend.batcher.reset_stats()
    HOOK_S[0] = 0.0
    t0 = time.perf_counter()
    await asyncio.gather(*(backend.generate(r) for r in reqs))
    wall = time.perf_counter() - t0
    st = backend.stats()
    return wall, st["steps"], st["tokens_out"], HOOK_S[0]


def summarize(runs: list[tuple[float, int, int, float]]) -> dict:
    wall = statistics.median(r[0] for r in runs)
    hook = statistics.median(r[3] for r in runs)
    steps, tokens = runs[-1][1], runs[-1][2]
    return {"wall_s": round(wall, 4), "steps": steps, "row_tokens": tokens,
            "ms_per_row_token": round(1000 * wall / max(tokens, 1), 3),
            "ms_per_step": round(1000 * wall / max(steps, 1), 2),
            "mask_ms_per_step": round(1000 * hook / max(steps, 1), 2),
            "mask_share_pct": round(100 * hook / wall, 1)}


def interleaved(jobs: dict[str, tuple], reps: int) -> dict[str, dict]:
    """Run every workload once per rep, alternating, so load drift hits them alike."""
    runs: dict[str, list] = {k: [] for k in jobs}
    for _ in range(reps):
        for k, (backend, reqs) in jobs.items():
            runs[k].append(asyncio.run(once(backend, reqs)))
    return {k: summarize(v) for k, v in runs.items()}


def bench_model(model: str, new: int, reps: int) -> dict:
    from epic_kernel.llm.base import LLMRequest, SamplingParams
    from epic_kernel.llm.constrained import constrainer_for
    from epic_kernel.llm.transformers_backend import TransformersBackend

    time_hooks()
    backend = TransformersBackend(model, device="cpu", flush_ms=50)
    plain_backend = TransformersBackend(model, device="cpu", ignore_eos=True)    # same shared batcher
    try:
        w = workloads(new)
        asyncio.run(once(plain_backend, w["plain"]))                             # warm up a full batch
        asyncio.run(once(backend, w["choices"][:2] + w["regex"][:2]))            # ... and the tokenizer
        c = constrainer_for(backend.batcher)
        compiles = c.compiles
        choices_tokens = asyncio.run(once(backend, w["choices"]))[2]
        # the same 32 chat prompts unconstrained, cut to the choices' token count
        per_row = max(1, round(choices_tokens / N))
        same_len = [LLMRequest.build(r.messages[-1]["content"], params=SamplingParams(max_tokens=per_row))
                    for r in w["choices"]]
        out = interleaved({"plain": (plain_backend, w["plain"]), "regex": (backend, w["regex"]),
                           "choices_plain": (plain_backend, same_len), "choices": (backend, w["choices"])}, reps)
        out["compiles_during_runs"] = c.compiles - compiles
        for k, base in (("regex", "plain"), ("choices", "choices_plain")):
            out[k]["overhead_per_row_token_pct"] = round(
                100 * (out[k]["ms_per_row_token"] / out[base]["ms_per_row_token"] - 1), 1)
        return out
    finally:
        backend.close()
        plain_backend.close()


def write(results: dict, out: Path = RESULTS) -> None:
    lines = ["# Constrained decoding overhead (local backend, llguidance)", "",
             f"{results['machine']}; {N} concurrent calls, median of {results['reps']} reps; "
             f"`--new {results['new']}` tokens for plain/regex rows.", "",
             "| model | workload | wall s | steps | row-tokens | ms/row-token | overhead (wall) "
             "| masking ms/step | masking share of wall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, r in results["models"].items():
        for k in ("plain", "regex", "choices_plain", "choices"):
            v = r[k]
            ov = f"{v['overhead_per_row_token_pct']:+.1f} %" if "overhead_per_row_token_pct" in v else "baseline"
            lines.append(f"| {model} | {k} | {v['wall_s']} | {v['steps']} | {v['row_tokens']} | "
                         f"{v['ms_per_row_token']} | {ov} | {v['mask_ms_per_step']} | {v['mask_share_pct']} % |")
        lines.append(f"| {model} | compiles during the timed runs | {r['compiles_during_runs']} | | | | | | |")
    lines += ["", "regex = `[a-z ]*` (a mask over much of the vocabulary every step); choices = 8 labels, the "
              "same for all 32 calls; choices_plain = the same chat prompts unconstrained, cut to the same "
              "token count. Overhead (wall) is per row-token, since constrained rows may end early at EOS; "
              "on a shared machine it is noisy (a few %), so the time spent inside the constraint hooks "
              "(matcher mask, unpacking, masking the row) is also given directly."]
    write_results(out, "constrained_decoding", results, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny10m,smollm2")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default); 1 is steadier on a busy small machine")
    ap.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} threads",
               "new": args.new, "reps": args.reps, "models": {}}
    for m in args.models.split(","):
        results["models"][m] = bench_model(m, args.new, args.reps)
        print(m, json.dumps(results["models"][m]))
    write(results, Path(args.out))
    return results


if __name__ == "__main__":
    main()
