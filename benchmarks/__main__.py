"""Run every benchmark (`make bench`): each module in its own process, results in benchmarks/results/.

    python -m benchmarks [--quick] [--only core,openai] [--skip batcher]

    core     bench_core.py     evaluator steps/s; map / SoT / ToT call graphs per strategy vs asyncio
    batcher  bench_batcher.py  shared batcher vs static batching and one at a time (tiny10m, smollm2)
    openai   bench_openai.py   256 concurrent calls through OpenAIBackend to a fake server
    serve    bench_serve.py    `epic serve` (tiny10m) under 4 client processes x 8 requests vs in-process
    programs bench_programs.py ToT / tool use / constrained decoding replayed from SmolLM2 recordings:
                               sequential vs opportunistic vs hand-written asyncio
    sot      bench_sot.py      Skeleton-of-Thought on Vicuna-80 (SmolLM2): normal vs SoT vs streaming SoT per
                               category; questions not yet in benchmarks/recordings/sot run live, then every
                               recorded question is replayed (latencies / 10 in `make bench`)
    sot_graph  bench_sot_graph.py  skeleton graphs (sot(graph=True)) vs SoT vs normal on Vicuna-80, on the sim
                               (the default model by hand: see docs/skeleton-graphs.md)
    constrained  bench_constrained_decoding.py  regex=/choices= masks vs unconstrained, 32 calls
    recorder bench_recorder.py what `%%epic --step`'s recording costs per step, and its size
    scale    bench_scale.py    10,000-call fan-out and a 2,000-call ToT against a 50 ms fake server: evaluator
                               CPU and memory per call vs a bare asyncio.gather over AsyncOpenAI

`--quick` is a smoke run of every module (small sizes, one model, one repetition) that writes under
benchmarks/results/quick/, so it never overwrites the full numbers. A module that fails does not
stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK_OUT = HERE / "results" / "quick"

# name -> (module, full-run args, quick-run args)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "core": ("benchmarks.bench_core", [], ["--quick", "--out", str(QUICK_OUT)]),
    "batcher": ("benchmarks.bench_batcher", [], ["--models", "tiny10m", "--reps", "1", "--out", str(QUICK_OUT)]),
    "openai": ("benchmarks.bench_openai", [], ["--calls", "64", "--reps", "1", "--out", str(QUICK_OUT)]),
    "serve": ("benchmarks.bench_serve", [], ["--quick", "--out", str(QUICK_OUT)]),
    "programs": ("benchmarks.bench_programs", [], ["--quick", "--out", str(QUICK_OUT)]),
    "sot": ("benchmarks.bench_sot", ["--speed", "10"],
            ["--model", "sim", "--questions", "1,21", "--speed", "20", "--out", str(QUICK_OUT),
             "--recordings", str(QUICK_OUT / "recordings" / "sot")]),
    "sot_graph": ("benchmarks.bench_sot_graph", ["--model", "sim"],
                  ["--model", "sim", "--questions", "1,21", "--out", str(QUICK_OUT)]),
    "constrained": ("benchmarks.bench_constrained_decoding", [],
                    ["--models", "tiny10m", "--reps", "1", "--out", str(QUICK_OUT)]),
    "recorder": ("benchmarks.bench_recorder", [], ["--quick", "--out", str(QUICK_OUT)]),
    "scale": ("benchmarks.bench_scale", [], ["--quick", "--out", str(QUICK_OUT)]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode, writes under benchmarks/results/quick/")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    args = ap.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    skip = {n for n in args.skip.split(",") if n}
    unknown = [n for n in [*names, *skip] if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    status: dict[str, tuple[int, float]] = {}
    for name in names:
        if name in skip:
            continue
        module, full, quick = BENCHES[name]
        cmd = [sys.executable, "-m", module, *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent, env=env)
        status[name] = (rc, time.perf_counter() - t0)
    print("\n=== summary")
    for name, (rc, secs) in status.items():
        print(f"  {name:8s} {'ok' if rc == 0 else f'FAILED (exit {rc})':16s} {secs:7.1f} s")
    print(f"  results in {QUICK_OUT if args.quick else HERE / 'results'}")
    return 1 if any(rc for rc, _ in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
