"""The evaluator itself: reduction steps per second, and wall time of three call graphs per strategy.

Part 1, evaluator overhead. Pure programs (no external calls) whose step count grows linearly with
N, sized to about 1e3, 1e4, 1e5 and 1e6 reduction steps, run with `trace=False`. Rate = steps /
`RunResult.elapsed` (the evaluator's own clock, from first to last step); the wall time around
`run()` (compile + event loop included) is reported beside it. Program kinds:

    for        acc = acc + i over range(N)          pure fold: every iteration instantiated at once
    for_break  the same loop with a (never taken) `break`: the early-exit encoding, one iteration at a time
    while      i < N counter loop                     recursive closure over a packed state
    recursion  def f(n, acc): ... f(n - 1, acc + n)  user-level recursion, one `if` per level
    listcomp   [i * 2 for i in range(N)]

Targets (reported, never adjusted): >= 100,000 steps/s at every size; flat, i.e. the fastest size
within 2x of the slowest, from 1e3 to 1e6 steps, per program kind.

Part 2, call graphs. Three plain epic programs calling `llm(...)` on `SimBackend(latency=L)` (fixed
latency per request, infinitely parallel; L = 100 ms, 10 ms in --quick), each also written by hand
with asyncio.gather on the same backend (the ideal). Wall time of `run()` under "sequential" and
"opportunistic", and of `asyncio.run(...)` for the hand-written version, measured side by side in
every repetition (order rotated); ratios are medians of the per-repetition ratios.

    map  32 independent calls                                        32 calls, critical path 1
    sot  1 skeleton call, then 8 expansions that each read it         9 calls, critical path 2
    tot  breadth 5, depth 3: at each depth each of the 5 kept states proposes 2 next steps (2 calls),
         each proposal is scored by one evaluate call (regex "[0-9]"), the 5 best of the 10 scored
         candidates are kept. 20 calls per depth, 60 calls; critical path propose->evaluate per
         depth = 6. Each evaluate depends only on its own proposal, so it starts as soon as that
         proposal is back (as in the asyncio version).

Targets: opportunistic within 5 % of asyncio (opportunistic / asyncio <= 1.05); speedup over
sequential equal to the critical-path bound (calls / critical path) within 5 %.

    python -m benchmarks.bench_core [--quick] [--reps N] [--latency S] [--out DIR]

Writes DIR/core.json and DIR/core.md (DIR = benchmarks/results, or benchmarks/results/quick with
--quick so a smoke run never overwrites the full numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.report import write_results
from epic_kernel import run
from epic_kernel.llm.base import LLMRequest, SamplingParams
from epic_kernel.llm.sim import SimBackend

RESULTS = Path(__file__).resolve().parent / "results"

# ------------------------------------------------------------------------------------ part 1: steps/s

PURE = {
    "for": """
acc = 0
for i in range(N):
    acc = acc + i
acc
""",
    "for_break": """
acc = 0
for i in range(N):
    if i < 0:
        break
    acc = acc + i
acc
""",
    "while": """
i = 0
acc = 0
while i < N:
    acc = acc + i
    i = i + 1
acc
""",
    "recursion": """
def f(n, acc):
    if n == 0:
        return acc
    return f(n - 1, acc + n)
f(N, 0)
""",
    "listcomp": """
xs = [i * 2 for i in range(N)]
len(xs)
""",
}
EXPECTED = {"for": lambda n: n * (n - 1) // 2, "for_break": lambda n: n * (n - 1) // 2,
            "while": lambda n: n * (n - 1) // 2, "recursion": lambda n: n * (n + 1) // 2,
            "listcomp": lambda n: n}
SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
REPS = {1_000: 21, 10_000: 11, 100_000: 5, 1_000_000: 3}
TARGET_RATE, TARGET_FLAT = 100_000, 2.0


def steps_of(src: str, n: int) -> int:
    return run(src, namespace={"N": n}, trace=False).steps


def calibrate(src: str) -> tuple[float, float]:
    """steps(N) = a*N + b, from two small runs (and checked on a third)."""
    s10, s20, s40 = steps_of(src, 10), steps_of(src, 20), steps_of(src, 40)
    a = (s20 - s10) / 10
    b = s10 - 10 * a
    if abs(a * 40 + b - s40) > 0.5:
        raise RuntimeError(f"step count is not linear in N: {s10}, {s20}, {s40}")
    return a, b


def one_pure(name: str, src: str, n: int) -> dict:
    gc.collect()
    t0 = time.perf_counter()
    res = run(src, namespace={"N": n}, trace=False)
    wall = time.perf_counter() - t0
    if res.value != EXPECTED[name](n):
        raise RuntimeError(f"{name}(N={n}) returned {res.value!r}, expected {EXPECTED[name](n)!r}")
    return {"steps": res.steps, "elapsed_s": res.elapsed, "wall_s": wall, "rules": res.rules}


def bench_pure(sizes: tuple[int, ...], reps_scale: float) -> dict:
    out: dict = {}
    for name, src in PURE.items():
        a, b = calibrate(src)
        one_pure(name, src, 100)                                   # warm up
        rows = []
        for target in sizes:
            n = max(1, round((target - b) / a))
            reps = max(2, round(REPS.get(target, 3) * reps_scale))
            runs = [one_pure(name, src, n) for _ in range(reps)]
            rates = [r["steps"] / r["elapsed_s"] for r in runs]
            wall_rates = [r["steps"] / r["wall_s"] for r in runs]
            row = {"target_steps": target, "N": n, "steps": runs[0]["steps"], "reps": reps,
                   "elapsed_s": statistics.median(r["elapsed_s"] for r in runs),
                   "wall_s": statistics.median(r["wall_s"] for r in runs),
                   "steps_per_s": statistics.median(rates), "steps_per_s_wall": statistics.median(wall_rates),
                   "steps_per_s_all": [round(x) for x in rates], "rules": runs[0]["rules"]}
            rows.append(row)
            print(f"  {name:9s} {row['steps']:>9,} steps (N={n:,}): {row['steps_per_s']:>10,.0f} steps/s "
                  f"(wall {row['steps_per_s_wall']:,.0f}), {row['elapsed_s']:.3f} s, median of {reps}", flush=True)
        rates = [r["steps_per_s"] for r in rows]
        out[name] = {"steps_per_N": a, "sizes": rows, "min_steps_per_s": min(rates),
                     "flatness": max(rates) / min(rates),
                     "targets": {"at_least_100k_steps_per_s": min(rates) >= TARGET_RATE,
                                 "flat_within_2x": max(rates) / min(rates) <= TARGET_FLAT}}
    return out


# ------------------------------------------------------------------------------- part 2: call graphs

MAP_SRC = """
outs = [llm(f"Summarise document {i} in one line.", max_tokens=16) for i in range(32)]
outs
"""

SOT_SRC = """
question = "How can I make my programs faster?"
skeleton = llm(f"Question: {question}\\nWrite a skeleton of 8 short points.", max_tokens=32)
expansions = [llm(f"Question: {question}\\nSkeleton: {skeleton}\\nExpand point {k + 1} in two sentences.",
                  max_tokens=32) for k in range(8)]
"\\n".join(expansions)
"""

TOT_SRC = """
def propose(state, k):
    return llm(f"Game of 24 with 4 9 10 13.\\nSteps so far: {state}\\nPropose next step #{k}:", max_tokens=16)

def evaluate(cand):
    return int(llm(f"Rate these steps from 0 to 9: {cand}", regex="[0-9]"))

frontier = [f"start {j}" for j in range(5)]
for depth in range(3):
    cands = [state + " | " + propose(state, k) for state in frontier for k in range(2)]
    scored = [(evaluate(c), c) for c in cands]
    frontier = [c for s, c in sorted(scored, reverse=True)[:5]]
frontier
"""


def _req(prompt: str, **params) -> LLMRequest:
    return LLMRequest.build(prompt, params=SamplingParams(**params))


async def map_asyncio(backend) -> list[str]:
    rs = await asyncio.gather(*(backend.generate(_req(f"Summarise document {i} in one line.", max_tokens=16))
                                for i in range(32)))
    return [r.text for r in rs]


async def sot_asyncio(backend) -> str:
    question = "How can I make my programs faster?"
    skeleton = (await backend.generate(_req(f"Question: {question}\nWrite a skeleton of 8 short points.",
                                            max_tokens=32))).text
    rs = await asyncio.gather(*(backend.generate(_req(
        f"Question: {question}\nSkeleton: {skeleton}\nExpand point {k + 1} in two sentences.", max_tokens=32))
        for k in range(8)))
    return "\n".join(r.text for r in rs)


async def tot_asyncio(backend) -> list[str]:
    async def branch(state: str, k: int) -> tuple[int, str]:
        p = (await backend.generate(_req(
            f"Game of 24 with 4 9 10 13.\nSteps so far: {state}\nPropose next step #{k}:", max_tokens=16))).text
        cand = state + " | " + p
        s = int((await backend.generate(_req(f"Rate these steps from 0 to 9: {cand}", regex="[0-9]"))).text)
        return s, cand

    frontier = [f"start {j}" for j in range(5)]
    for _depth in range(3):
        scored = await asyncio.gather(*(branch(state, k) for state in frontier for k in range(2)))
        frontier = [c for s, c in sorted(scored, reverse=True)[:5]]
    return frontier


GRAPHS = {
    "map": {"src": MAP_SRC, "ideal": map_asyncio, "calls": 32, "critical_path": 1,
            "shape": "32 independent calls"},
    "sot": {"src": SOT_SRC, "ideal": sot_asyncio, "calls": 9, "critical_path": 2,
            "shape": "1 skeleton call, then 8 expansions that read it"},
    "tot": {"src": TOT_SRC, "ideal": tot_asyncio, "calls": 60, "critical_path": 6,
            "shape": "breadth 5, depth 3; per depth 5 states x 2 proposals, each then evaluated; keep 5 best"},
}
TARGET_VS_ASYNCIO, TARGET_BOUND = 1.05, 0.05


def waves(res, latency: float) -> int:
    """Groups of dispatches separated by more than half a latency: the critical path the run took."""
    starts = sorted(c.start for c in res.calls)
    return sum(1 for a, b in zip([None, *starts], starts, strict=False) if a is None or b - a > latency / 2)


def one_graph(g: dict, backend, mode: str, latency: float) -> dict:
    gc.collect()
    t0 = time.perf_counter()
    if mode == "asyncio":
        inner: dict = {}

        async def main():
            t = time.perf_counter()
            v = await g["ideal"](backend)
            inner["s"] = time.perf_counter() - t
            return v

        value = asyncio.run(main())
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "inner_s": inner["s"], "value": value}
    res = run(g["src"], strategy=mode, backend=backend, trace=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "inner_s": res.elapsed, "value": res.value, "calls": len(res.calls),
            "steps": res.steps, "waves": waves(res, latency), "rules": res.rules}


MODES = ("sequential", "opportunistic", "asyncio")


def bench_graphs(latency: float, reps: int) -> dict:
    backend = SimBackend(latency=latency)
    out: dict = {}
    for name, g in GRAPHS.items():
        for mode in MODES:                                                 # warm up every path once
            one_graph(g, backend, mode, latency)
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        inners: dict[str, list[float]] = {m: [] for m in MODES}
        ratio_asyncio, speedup, asyncio_speedup = [], [], []
        info: dict = {}
        for rep in range(reps):
            order = MODES[rep % 3:] + MODES[:rep % 3]                       # rotate: no mode always first
            got = {m: one_graph(g, backend, m, latency) for m in order}
            values = {m: got[m]["value"] for m in MODES}
            if len({json.dumps(v) for v in values.values()}) != 1:
                raise RuntimeError(f"{name}: modes disagree: {values}")
            for m in MODES:
                walls[m].append(got[m]["wall_s"])
                inners[m].append(got[m]["inner_s"])
            ratio_asyncio.append(got["opportunistic"]["wall_s"] / got["asyncio"]["wall_s"])
            speedup.append(got["sequential"]["wall_s"] / got["opportunistic"]["wall_s"])
            asyncio_speedup.append(got["sequential"]["wall_s"] / got["asyncio"]["wall_s"])
            info = {k: got["opportunistic"][k] for k in ("calls", "steps", "waves", "rules")}
            info["sequential_waves"] = got["sequential"]["waves"]
            print(f"  {name} rep {rep}: " + ", ".join(f"{m} {got[m]['wall_s']:.3f}s" for m in MODES)
                  + f"; opp/asyncio {ratio_asyncio[-1]:.3f}, speedup {speedup[-1]:.2f}x", flush=True)
        if info["calls"] != g["calls"] or info["waves"] != g["critical_path"]:
            print(f"  WARNING {name}: {info['calls']} calls in {info['waves']} waves, expected "
                  f"{g['calls']} in {g['critical_path']}", flush=True)
        bound = g["calls"] / g["critical_path"]
        med = statistics.median
        row = {"shape": g["shape"], "calls": g["calls"], "critical_path": g["critical_path"], "bound": bound,
               "observed": info, "reps": reps,
               "wall_s": {m: med(walls[m]) for m in MODES}, "inner_s": {m: med(inners[m]) for m in MODES},
               "opportunistic_vs_asyncio": med(ratio_asyncio),
               "speedup_vs_sequential": med(speedup), "asyncio_speedup_vs_sequential": med(asyncio_speedup),
               "speedup_over_bound": med(speedup) / bound,
               "inner_opportunistic_vs_asyncio": med(o / a for o, a in zip(inners["opportunistic"],
                                                                          inners["asyncio"], strict=True)),
               "raw": {"wall_s": walls, "inner_s": inners, "opportunistic_vs_asyncio": ratio_asyncio,
                       "speedup_vs_sequential": speedup}}
        row["targets"] = {"opportunistic_within_5pct_of_asyncio": row["opportunistic_vs_asyncio"] <= TARGET_VS_ASYNCIO,
                          "speedup_within_5pct_of_bound": abs(row["speedup_over_bound"] - 1) <= TARGET_BOUND}
        out[name] = row
    return out


# ---------------------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform()}


def yes(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def markdown(res: dict) -> str:
    m, meta = res["machine"], res["meta"]
    pure, graphs = res["steps_per_second"], res["call_graphs"]
    lines = [
        "# Core benchmark: evaluator overhead and call graphs",
        "",
        f"{m['cpu']}, {m['cpus']} CPUs, {m['implementation']} {m['python']}, {m['platform']}; "
        f"{meta['when']}{' (--quick)' if meta['quick'] else ''}. Generated by `python -m benchmarks.bench_core`; "
        "medians of repeated runs, ratios measured side by side in each repetition.",
    ]
    if pure:
        lines += markdown_pure(pure)
    if graphs:
        lines += markdown_graphs(graphs, meta)
    return "\n".join(lines) + "\n"


def markdown_pure(pure: dict) -> list[str]:
    sizes = [r["target_steps"] for r in next(iter(pure.values()))["sizes"]]
    lines = [
        "",
        "## Evaluator overhead: reduction steps per second (pure programs, `trace=False`)",
        "",
        "steps / `RunResult.elapsed` (the evaluator's clock); in brackets the same over the wall time of "
        "`run()`, compile and event loop included. Target: >= 100,000 steps/s, flat within 2x from "
        f"{sizes[0]:,} to {sizes[-1]:,} steps.",
        "",
        "| program | steps/iteration | " + " | ".join(f"~{s:,} steps" for s in sizes) + " | max/min | targets |",
        "|---|---|" + "---|" * len(sizes) + "---|---|",
    ]
    for name, p in pure.items():
        cells = [f"{r['steps_per_s']:,.0f} ({r['steps_per_s_wall']:,.0f})" for r in p["sizes"]]
        t = p["targets"]
        lines.append(f"| {name} | {p['steps_per_N']:g} | " + " | ".join(cells) + f" | {p['flatness']:.2f} | "
                     f">=100k {yes(t['at_least_100k_steps_per_s'])}, flat {yes(t['flat_within_2x'])} |")
    big = {name: p["sizes"][-1] for name, p in pure.items()}
    lines += ["", "Largest size, seconds (evaluator / wall): " + ", ".join(
        f"{n} {r['elapsed_s']:.2f} / {r['wall_s']:.2f}" for n, r in big.items()) + "."]
    return lines


def markdown_graphs(graphs: dict, meta: dict) -> list[str]:
    lat_ms = meta["latency_s"] * 1000
    lines = [
        "",
        f"## Call graphs: `SimBackend(latency={meta['latency_s']:g})`, {lat_ms:g} ms per call, infinitely parallel",
        "",
        "Wall time of `run()` per strategy and of a hand-written `asyncio.gather` version of the same graph "
        "(the ideal). Bound = calls / critical path; the last ratio column is what the hand-written ideal reaches "
        "against the same sequential run. Targets: opportunistic / asyncio <= 1.05; speedup over "
        "sequential within 5 % of the bound.",
        "",
        "| graph | shape | calls | critical path | sequential s | opportunistic s | asyncio s "
        "| opportunistic / asyncio | speedup vs sequential | bound | speedup / bound | asyncio speedup / bound | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in graphs.items():
        w, t = g["wall_s"], g["targets"]
        lines.append(
            f"| {name} | {g['shape']} | {g['calls']} | {g['critical_path']} | {w['sequential']:.3f} | "
            f"{w['opportunistic']:.3f} | {w['asyncio']:.3f} | **{g['opportunistic_vs_asyncio']:.3f}** | "
            f"{g['speedup_vs_sequential']:.2f}x | {g['bound']:g}x | **{g['speedup_over_bound']:.3f}** | "
            f"{g['asyncio_speedup_vs_sequential'] / g['bound']:.3f} | "
            f"vs asyncio {yes(t['opportunistic_within_5pct_of_asyncio'])}, bound {yes(t['speedup_within_5pct_of_bound'])} |")
    lines += ["", f"Repetitions: {next(iter(graphs.values()))['reps']} per graph (order of the three modes rotated). "
              "Observed dispatch waves under opportunistic: " + ", ".join(
                  f"{n} {g['observed']['waves']}" for n, g in graphs.items()) + "; reduction steps: " + ", ".join(
                  f"{n} {g['observed']['steps']}" for n, g in graphs.items()) + "."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1e3 and 1e4 steps, 10 ms latency, 2 reps")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per call graph (default 5, quick 2)")
    ap.add_argument("--latency", type=float, default=None, help="sim latency per call (default 0.1, quick 0.01)")
    ap.add_argument("--part", choices=("all", "steps", "graphs"), default="all", help="run only one part")
    ap.add_argument("--out", default=None, help="output folder (default benchmarks/results[/quick])")
    args = ap.parse_args(argv)
    latency = args.latency if args.latency is not None else (0.01 if args.quick else 0.1)
    reps = args.reps or (2 if args.quick else 5)
    out = Path(args.out) if args.out else (RESULTS / "quick" if args.quick else RESULTS)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M %Z"), "quick": args.quick, "latency_s": latency,
            "graph_reps": reps, "argv": sys.argv[1:] if argv is None else argv}
    t0 = time.perf_counter()
    pure: dict = {}
    graphs: dict = {}
    if args.part in ("all", "steps"):
        print("== evaluator steps/s", flush=True)
        pure = bench_pure(QUICK_SIZES if args.quick else SIZES, 3 / 21 if args.quick else 1.0)
    if args.part in ("all", "graphs"):
        print(f"== call graphs, latency {latency * 1000:g} ms", flush=True)
        graphs = bench_graphs(latency, reps)
    meta["total_s"] = round(time.perf_counter() - t0, 1)
    res = {"meta": meta, "machine": machine(), "steps_per_second": pure, "call_graphs": graphs,
           "targets_met": all(all(p["targets"].values()) for p in pure.values())
           and all(all(g["targets"].values()) for g in graphs.values())}
    write_results(out, "core", res, markdown(res), echo=True)
    print(f"wrote {out / 'core.json'} and {out / 'core.md'} in {meta['total_s']} s")
    return res


if __name__ == "__main__":
    main()
