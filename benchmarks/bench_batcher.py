"""Throughput and latency of the shared batcher against static batching and one-at-a-time decoding.

For each model (`--models tiny10m,smollm2`):

* burst: 32 requests (32 new tokens each, EOS ignored so every row runs full length) sent at once
  through `TransformersBackend` from asyncio, vs one static left-padded `model.generate` on the same
  32 prompts, vs the same requests through the backend one at a time (a subset, scaled, on SmolLM2).
* epic program: the same 32 prompts as 32 `llm(p, raw=True, max_tokens=32)` calls from ONE epic
  program (`epic_kernel.run(src, backend=backend, namespace={"prompts": ...})`, same backend
  instance), i.e. the product path: compile, opportunistic evaluator, `llm()` builtin, batcher.
  Wall time of the whole `run()` call; the batch ids of its calls (`res.calls`) and the batcher's
  stats show whether the 32 calls shared one batch.
* staggered: one request every 30 ms; mean/max latency and makespan through the backend (requests
  join the running batch at step boundaries) vs static micro-batching ("generate on whatever has
  arrived, repeat").

Targets (reported, never adjusted): burst and epic program within 15 % of static generate, >= 6x
one-at-a-time; staggered mean latency no worse than static micro-batching. Medians of `--reps` repetitions.
Writes benchmarks/results/batcher.json and batcher.md.

    python -m benchmarks.bench_batcher --models tiny10m,smollm2 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.report import write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N, NEW, GAP = 32, 32, 0.030
WORDS = ("the cat reads a book today and the dog writes some tokens while a user sends the request "
         "again with care for you at night because the server returns an answer quickly").split()
RESULTS = Path(__file__).parent / "results"


def prompts(tok, n: int) -> list[str]:
    """Raw prompts of 16-24 tokens, so left padding really happens."""
    out = []
    for i in range(n):
        words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(40))
        ids = tok(words, add_special_tokens=False).input_ids[:16 + i % 9]
        out.append(tok.decode(ids))
    return out


def requests(texts):
    from epic_kernel.llm.base import LLMRequest, SamplingParams

    return [LLMRequest.build(t, raw=True, params=SamplingParams(max_tokens=NEW)) for t in texts]


def static_generate(backend, reqs) -> float:
    """One left-padded `generate` over all prompts (the batch a static server would run)."""
    import torch

    b = backend.batcher
    ids = [b.encode(r) for r in reqs]
    width = max(map(len, ids))
    x = torch.full((len(ids), width), b.pad_id, dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, s in enumerate(ids):
        x[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    t0 = time.perf_counter()
    with torch.inference_mode():
        b.model.generate(input_ids=x.to(b.device), attention_mask=mask.to(b.device), max_new_tokens=NEW,
                         min_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=b.pad_id)
    return time.perf_counter() - t0


async def burst(backend, reqs) -> float:
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(backend.generate(r) for r in reqs))
    assert all(r.tokens_out == NEW for r in rs)
    return time.perf_counter() - t0


EPIC_SRC = f"outs = [llm(p, raw=True, max_tokens={NEW}) for p in prompts]\nlen(outs)"


def epic_program(backend, texts: list[str]) -> tuple[float, object]:
    """The 32 prompts as `llm()` calls of one epic program (see the module docstring)."""
    from epic_kernel import run

    t0 = time.perf_counter()
    res = run(EPIC_SRC, backend=backend, namespace={"prompts": list(texts)})
    wall = time.perf_counter() - t0
    assert res.value == len(texts), res.value
    assert all(c.tokens_out == NEW for c in res.calls), [c.tokens_out for c in res.calls]
    return wall, res


def idle_stats(b, timeout: float = 5.0) -> dict:
    """The batcher's stats once its worker has finished the step that delivered the last results
    (results are posted row by row, so a caller can see them before the worker's counters settle)."""
    deadline = time.perf_counter() + timeout
    st = b.stats()
    while (st["running"] or st["pending"]) and time.perf_counter() < deadline:
        time.sleep(0.002)
        st = b.stats()
    return st


async def one_at_a_time(backend, reqs) -> float:
    t0 = time.perf_counter()
    for r in reqs:
        await backend.generate(r)
    return time.perf_counter() - t0


async def staggered_backend(backend, reqs) -> dict:
    t0 = time.perf_counter()
    lat: list[float] = []

    async def one(i, r):
        await asyncio.sleep(max(0.0, t0 + i * GAP - time.perf_counter()))
        start = time.perf_counter()
        await backend.generate(r)
        lat.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
    return {"makespan_s": time.perf_counter() - t0, "mean_s": statistics.mean(lat), "max_s": max(lat)}


def staggered_static(backend, reqs) -> dict:
    """Static micro-batching: generate on whatever has arrived (≤32), repeat, until all are served."""
    import torch

    b = backend.batcher
    ids = [b.encode(r) for r in reqs]
    t0 = time.perf_counter()
    arrive = [t0 + i * GAP for i in range(len(reqs))]
    lat, nxt = [], 0
    while nxt < len(reqs):
        now = time.perf_counter()
        if arrive[nxt] > now:
            time.sleep(arrive[nxt] - now)
            continue
        now = time.perf_counter()
        group = [i for i in range(nxt, len(reqs)) if arrive[i] <= now][:N]
        width = max(len(ids[i]) for i in group)
        x = torch.full((len(group), width), b.pad_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for row, i in enumerate(group):
            x[row, width - len(ids[i]):] = torch.tensor(ids[i])
            mask[row, width - len(ids[i]):] = 1
        with torch.inference_mode():
            b.model.generate(input_ids=x.to(b.device), attention_mask=mask.to(b.device), max_new_tokens=NEW,
                             min_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=b.pad_id)
        end = time.perf_counter()
        lat += [end - arrive[i] for i in group]
        nxt = group[-1] + 1
    return {"makespan_s": time.perf_counter() - t0, "mean_s": statistics.mean(lat), "max_s": max(lat)}


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def bench_model(name: str, reps: int, seq_n: int | None) -> dict:
    from epic_kernel.llm.transformers_backend import TransformersBackend

    t0 = time.perf_counter()
    backend = TransformersBackend(name, ignore_eos=True, max_batch_size=N)
    load_s = time.perf_counter() - t0
    b = backend.batcher
    params = sum(p.numel() for p in b.model.parameters())
    texts = prompts(b.tokenizer, N)
    reqs = requests(texts)
    seq_n = seq_n or N
    asyncio.run(burst(backend, reqs[:4]))          # warm up every path once
    epic_program(backend, texts[:4])
    static_generate(backend, reqs[:4])
    asyncio.run(staggered_backend(backend, reqs[:6]))
    staggered_static(backend, reqs[:6])
    res: dict = {"model": name, "params_m": round(params / 1e6, 2), "load_s": round(load_s, 2), "N": N,
                 "new_tokens": NEW, "reps": reps, "seq_requests_measured": seq_n}
    static, batched, seq, stag_b, stag_s, epic, epic_wall_in_run, epic_batches = [], [], [], [], [], [], [], []
    for rep in range(reps):
        static.append(static_generate(backend, reqs))
        b.reset_stats()
        batched.append(asyncio.run(burst(backend, reqs)))
        if rep == 0:
            res["burst_batcher_stats"] = b.stats()
        idle_stats(b)
        b.reset_stats()
        wall, run_res = epic_program(backend, texts)
        epic.append(wall)
        epic_wall_in_run.append(run_res.elapsed)
        ids = [c.batch_id for c in run_res.calls]
        st = idle_stats(b)
        epic_batches.append({"calls": len(ids), "batch_ids": {str(k): ids.count(k) for k in sorted(set(ids), key=str)},
                             "prefills": st["prefills"], "merges": st["merges"],
                             "mean_batch_size": st["mean_batch_size"], "batch_sizes": st["batch_sizes"]})
        if rep == 0:
            res["epic_batcher_stats"] = st
        if rep == 0 or seq_n == N:      # one-at-a-time is the slow path: once on big models
            seq.append(asyncio.run(one_at_a_time(backend, reqs[:seq_n])) * N / seq_n)
        stag_s.append(staggered_static(backend, reqs))
        b.reset_stats()
        stag_b.append(asyncio.run(staggered_backend(backend, reqs)))
        if rep == 0:
            res["staggered_batcher_stats"] = b.stats()
        print(f"  {name} rep {rep}: static {static[-1]:.3f}s batcher {batched[-1]:.3f}s "
              f"epic {epic[-1]:.3f}s (batches {epic_batches[-1]['batch_ids']}, "
              f"prefills {epic_batches[-1]['prefills']}) seq {seq[-1]:.2f}s stagger mean batcher {stag_b[-1]['mean_s']:.3f}s / "
              f"static {stag_s[-1]['mean_s']:.3f}s", flush=True)
    backend.close()
    toks = N * NEW
    res.update(
        static_s=med(static), batcher_s=med(batched), seq_s=med(seq),
        static_tok_s=round(toks / med(static), 1), batcher_tok_s=round(toks / med(batched), 1),
        seq_tok_s=round(toks / med(seq), 1),
        batcher_vs_static=round(med(static) / med(batched), 3),
        batcher_vs_seq=round(med(seq) / med(batched), 2),
        epic_s=med(epic), epic_tok_s=round(toks / med(epic), 1), epic_run_elapsed_s=med(epic_wall_in_run),
        epic_vs_static=round(med(static) / med(epic), 3),
        epic_vs_seq=round(med(seq) / med(epic), 2),
        epic_vs_batcher=round(med(batched) / med(epic), 3),
        epic_batches=epic_batches,
        epic_single_batch_every_rep=all(len(e["batch_ids"]) == 1 and e["calls"] == N for e in epic_batches),
        staggered={k: {m: med([r[m] for r in rows]) for m in ("makespan_s", "mean_s", "max_s")}
                   for k, rows in (("batcher", stag_b), ("static_microbatch", stag_s))},
        raw={"static_s": static, "batcher_s": batched, "seq_s": seq, "epic_s": epic,
             "staggered_mean_s": {"batcher": [r["mean_s"] for r in stag_b],
                                  "static_microbatch": [r["mean_s"] for r in stag_s]}})
    res["targets"] = {
        "within_15pct_of_static": res["batcher_vs_static"] >= 0.85,
        "at_least_6x_one_at_a_time": res["batcher_vs_seq"] >= 6.0,
        "epic_within_15pct_of_static": res["epic_vs_static"] >= 0.85,
        "epic_at_least_6x_one_at_a_time": res["epic_vs_seq"] >= 6.0,
        "staggered_mean_no_worse": res["staggered"]["batcher"]["mean_s"]
        <= res["staggered"]["static_microbatch"]["mean_s"],
    }
    return res


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Shared batcher benchmark",
        "",
        f"{meta['machine']}; torch {meta['torch']}, transformers {meta['transformers']}; "
        f"{N} requests x {NEW} new tokens, EOS ignored; medians of the repetitions shown. Generated by "
        "`benchmarks/bench_batcher.py`.",
        "",
        "| model | params | static generate s (tok/s) | batcher, 32 at once s (tok/s) | one at a time s (tok/s) "
        "| batcher / static | batcher vs one-at-a-time | mean rows/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seq_note = "" if r["seq_requests_measured"] == N else f" [{r['seq_requests_measured']} measured, scaled]"
        lines.append(
            f"| {r['model']} | {r['params_m']} M | {r['static_s']} ({r['static_tok_s']}) | {r['batcher_s']} "
            f"({r['batcher_tok_s']}) | {r['seq_s']} ({r['seq_tok_s']}){seq_note} | {r['batcher_vs_static']:.2f} "
            f"| {r['batcher_vs_seq']:.1f}x | {r['burst_batcher_stats']['mean_batch_size']} |")
    lines += ["", f"Epic program: the same {N} prompts as {N} `llm(p, raw=True, max_tokens={NEW})` calls of one "
              "program run by `epic_kernel.run(src, backend=backend)` on the same backend (wall time of the "
              "whole `run()`: compile, evaluator, `llm()` builtin, batcher). Static and one-at-a-time are "
              "the columns above, measured in the same repetitions.", "",
              "| model | static generate tok/s | epic program s (tok/s) | one at a time tok/s | epic / static "
              "| epic vs one-at-a-time | epic / burst | batch ids of the calls (per rep) | prefills (per rep) "
              "| mean rows/step |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ids = "; ".join(", ".join(f"#{k} x{v}" for k, v in e["batch_ids"].items()) for e in r["epic_batches"])
        pre = ", ".join(str(e["prefills"]) for e in r["epic_batches"])
        mrs = ", ".join(str(e["mean_batch_size"]) for e in r["epic_batches"])
        lines.append(f"| {r['model']} | {r['static_tok_s']} | {r['epic_s']} ({r['epic_tok_s']}) | {r['seq_tok_s']} "
                     f"| {r['epic_vs_static']:.2f} | {r['epic_vs_seq']:.1f}x | {r['epic_vs_batcher']:.2f} | {ids} "
                     f"| {pre} | {mrs} |")
    lines += ["", f"Staggered arrivals: one request every {int(GAP * 1000)} ms (makespan / mean / max latency, s).",
              "", "| model | batcher (iteration-level joins) | static micro-batching | mean rows/step |",
              "|---|---|---|---|"]
    for r in rows:
        sb, ss = r["staggered"]["batcher"], r["staggered"]["static_microbatch"]
        lines.append(f"| {r['model']} | {sb['makespan_s']} / **{sb['mean_s']}** / {sb['max_s']} | "
                     f"{ss['makespan_s']} / **{ss['mean_s']}** / {ss['max_s']} | "
                     f"{r['staggered_batcher_stats']['mean_batch_size']} |")
    lines += ["", "Targets: batcher and epic program within 15 % of static generate (x/static >= 0.85); >= 6x "
              "one at a time; staggered mean latency no worse than static micro-batching.", ""]
    for r in rows:
        lines.append(f"* {r['model']}: " + ", ".join(f"{k} **{'met' if v else 'MISSED'}**"
                                                     for k, v in r["targets"].items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny10m,smollm2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    rows = []
    for name in args.models.split(","):
        big = name.startswith("smollm2")
        print(f"== {name}", flush=True)
        rows.append(bench_model(name, args.reps, seq_n=8 if big else None))
    write_results(args.out, "batcher", {"meta": meta, "results": rows}, markdown(rows, meta), echo=True)


if __name__ == "__main__":
    main()
