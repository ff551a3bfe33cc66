"""256 concurrent calls through OpenAIBackend to a fake OpenAI server with 200 ms latency.

The question: does our layer (adaptive cap, retries, per-loop clients) keep a remote model's calls
concurrent? If it did, 256 calls take about as long as one, plus client/server CPU. Target: wall time
< 3x a single call's latency. The fake server runs in its own process (as a real server would), so
the two do not share one GIL.

    python -m benchmarks.bench_openai [--calls 256] [--latency 0.2] [--reps 3] [--out DIR]

Writes benchmarks/results/openai.json and openai.md (or DIR/...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import openai

from benchmarks.report import write_results
from epic_kernel.llm.base import LLMRequest
from epic_kernel.llm.openai_backend import OpenAIBackend

RESULTS = Path(__file__).resolve().parent / "results"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "epic_kernel.testing.fake_openai", "0", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()            # "fake OpenAI server on http://127.0.0.1:PORT/v1 latency=..."
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, line.split(" on ")[1].split()[0]


async def timed(coro) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


async def bench(base_url: str, calls: int, reps: int) -> dict:
    out: dict = {}
    backend = OpenAIBackend(base_url=base_url, api_key="sk-bench", model="fake-model", max_concurrency=calls)
    req = LLMRequest.build
    for i in range(4):                                            # warm up the connection pool
        await backend.generate(req(f"warm {i}"))
    await asyncio.gather(*[backend.generate(req(f"warm {i}")) for i in range(calls)])

    single = [await timed(backend.generate(req(f"single {i}"))) for i in range(7)]
    out["single_latency_s"] = statistics.median(single)

    async def stream_one(i: int) -> None:
        async for _ in backend.stream(req(f"stream {i}")):
            pass

    for label, make in [("generate", lambda i: backend.generate(req(f"call {i}"))), ("stream", stream_one)]:
        walls = []
        for _ in range(reps):
            walls.append(await timed(asyncio.gather(*[make(i) for i in range(calls)])))
        out[label] = {"wall_s": statistics.median(walls), "walls_s": walls,
                      "ratio_vs_single": statistics.median(walls) / out["single_latency_s"],
                      "throughput_rps": calls / statistics.median(walls)}
    out["lowest_cap"] = backend.limiter().lowest
    await backend.aclose()

    capped = OpenAIBackend(base_url=base_url, api_key="sk-bench", model="fake-model")   # default cap 64
    await asyncio.gather(*[capped.generate(req(f"warm {i}")) for i in range(64)])
    wall = await timed(asyncio.gather(*[capped.generate(req(f"capped {i}")) for i in range(calls)]))
    out["generate_default_cap_64"] = {"wall_s": wall, "ratio_vs_single": wall / out["single_latency_s"]}
    await capped.aclose()

    raw = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)   # the bare client
    msgs = [{"role": "user", "content": "warm"}]
    await asyncio.gather(*[raw.chat.completions.create(model="fake-model", messages=msgs) for _ in range(calls)])
    walls = []
    for _ in range(reps):
        walls.append(await timed(asyncio.gather(*[raw.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": f"raw {i}"}]) for i in range(calls)])))
    out["bare_asyncopenai"] = {"wall_s": statistics.median(walls), "walls_s": walls}
    await raw.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results)")
    args = ap.parse_args()
    out = Path(args.out)
    proc, base_url = start_server(args.latency)
    try:
        res = asyncio.run(bench(base_url, args.calls, args.reps))
    finally:
        proc.terminate()
        proc.wait(10)
    res.update(calls=args.calls, server_latency_s=args.latency, target_ratio=3.0,
               passed=res["generate"]["ratio_vs_single"] < 3.0,
               machine={"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
               openai_version=openai.__version__)
    g, s, c, b = res["generate"], res["stream"], res["generate_default_cap_64"], res["bare_asyncopenai"]
    md = f"""# OpenAIBackend: {args.calls} concurrent calls, fake server with {args.latency * 1000:.0f} ms latency

Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, openai {openai.__version__}; the server runs
in a separate process. Medians of {args.reps} runs. Target: wall < 3x one call's latency.

| run | wall | x single call | throughput |
|---|---|---|---|
| 1 call (median of 7) | {res['single_latency_s'] * 1000:.0f} ms | 1.00 | - |
| {args.calls} x generate, max_concurrency={args.calls} | {g['wall_s'] * 1000:.0f} ms | **{g['ratio_vs_single']:.2f}** | {g['throughput_rps']:.0f} req/s |
| {args.calls} x stream, max_concurrency={args.calls} | {s['wall_s'] * 1000:.0f} ms | {s['ratio_vs_single']:.2f} | {s['throughput_rps']:.0f} req/s |
| {args.calls} x generate, default max_concurrency=64 | {c['wall_s'] * 1000:.0f} ms | {c['ratio_vs_single']:.2f} | {args.calls / c['wall_s']:.0f} req/s |
| {args.calls} x bare AsyncOpenAI (no cap, no retries) | {b['wall_s'] * 1000:.0f} ms | {b['wall_s'] / res['single_latency_s']:.2f} | {args.calls / b['wall_s']:.0f} req/s |

Result: {'PASS' if res['passed'] else 'FAIL'} ({g['ratio_vs_single']:.2f}x < 3x). The default cap of 64 runs
{args.calls} calls in {args.calls // 64} waves by design; raise `max_concurrency` for a server that batches more.
"""
    write_results(out, "openai", res, md, echo=True)


if __name__ == "__main__":
    main()
