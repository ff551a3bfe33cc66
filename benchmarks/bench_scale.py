"""Programs of 10,000 calls: the evaluator's CPU and memory per call against a bare asyncio client.

    python -m benchmarks.bench_scale [--sizes 1000,2500,5000,10000] [--tot-nodes 2000] [--latency 0.05]
                                     [--slots 256] [--quick] [--profile] [--out DIR]

First the evaluator alone: the fan-out against an in-process model that only sleeps the latency
(`local-epic`) and the same calls in a bare `asyncio.gather` (`local-bare`): the CPU difference is the
evaluator's own work per call, with no HTTP client in either.

Then a fake OpenAI-compatible server (`epic_kernel.testing.fake_openai`) runs in its own process with a
fixed latency (50 ms) and 256 slots (it answers 429 past 256 requests in flight). Against it, each
in a fresh process of its own (so CPU time and peak memory belong to one run):

    bare     a hand-written `asyncio.gather` over `openai.AsyncOpenAI`, an `asyncio.Semaphore(256)`
    epic     the same calls as an epic program (`out = [llm(...) for i in range(n)]`) through
             `run()` and `OpenAIBackend(max_concurrency=256, stream_generate=False)`: the same
             non-streaming requests on the wire
    tot      a Tree-of-Thoughts-shaped epic program of about 2,000 calls (breadth 20: each state
             proposes once, its 10 candidates are each evaluated once, the 20 best go on) and
             the same search written with asyncio (the fake server echoes the prompt, cut to
             max_tokens words: a proposal is 10 words, so 10 candidates)

For every size: wall time, process CPU time, peak RSS, and calls in flight at the server (mean and
peak of the number in flight at each arrival, from the server's counters; the JSON also has the
client's view, where an epic call counts from its dispatch, waiting for a slot included). Evaluator CPU per call = (epic CPU - bare CPU) / calls: the client library's own work cancels
out, what is left is what epic adds. Memory per call is the peak RSS above the process's RSS after
its warm-up, over calls; both should be flat across sizes (linear totals). `--profile` adds the
top of a cProfile of the largest epic run, to find what grows. Results: OUT/scale.{json,md}.

Call budget: if `run()` takes a per-run call budget (a cap on the calls a run may make), the epic
runs pass one equal to their size explicitly, so the default cap never cuts the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import machine, write_results

OUT = Path(__file__).resolve().parent / "results"
FANOUT_SRC = 'out = [llm(f"Question {i}: say something.", max_tokens=8) for i in range(n)]\nlen(out)'
TOT_SRC = """
def propose(state):
    return llm(f"Propose ten next steps, one word each, after this state: {state}", max_tokens=10)

def evaluate(cand):
    return len(llm(f"Rate: {cand}", max_tokens=4))

frontier = [f"s{j}" for j in range(breadth)]
for depth in range(levels):
    cands = [state + "|" + word for state in frontier for word in propose(state).split()[:k]]
    scored = [(evaluate(c), c) for c in cands]
    frontier = [c for s, c in sorted(scored, reverse=True)[:breadth]]
len(frontier)
"""
BUDGET_NAMES = ("max_calls", "call_budget", "calls_budget", "budget")


# ------------------------------------------------------------------------------------ the server
SERVER = """
import sys, threading
from epic_kernel.testing.fake_openai import FakeOpenAIServer
srv = FakeOpenAIServer(latency=float(sys.argv[1]), capacity=int(sys.argv[2])).start()
print(srv.base_url, flush=True)
threading.Event().wait()
"""


def start_server(latency: float, slots: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(latency), str(slots)], stdout=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, line


# ------------------------------------------------------------------------------------ workers
def budget_kwargs(n: int) -> dict:
    """The run's call budget, set to `n`, if `run()` has one (see the module docstring)."""
    from epic_kernel import run

    params = inspect.signature(run).parameters
    return {name: n for name in BUDGET_NAMES if name in params}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def inflight(spans: list[tuple[float, float]]) -> dict:
    """Calls in flight over the run: time-weighted mean and peak."""
    if not spans:
        return {"mean": 0.0, "peak": 0}
    ev = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = peak = 0
    area, last = 0.0, ev[0][0]
    for t, d in ev:
        area += cur * (t - last)
        last = t
        cur += d
        peak = max(peak, cur)
    span = ev[-1][0] - ev[0][0]
    return {"mean": round(area / span, 1) if span > 0 else 0.0, "peak": peak}


async def _bare_fanout(base_url: str, n: int, slots: int) -> list[tuple[float, float]]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=5)
    sem = asyncio.Semaphore(slots)
    spans: list[tuple[float, float]] = []

    async def one(i: int) -> str:
        async with sem:
            t0 = time.perf_counter()
            r = await client.chat.completions.create(
                model="fake-model", max_tokens=8, messages=[{"role": "user", "content": f"Question {i}: say something."}])
            spans.append((t0, time.perf_counter()))
            return r.choices[0].message.content or ""

    await asyncio.gather(*(one(i) for i in range(16)))          # warm-up: connections
    spans.clear()
    return await _measure(lambda: asyncio.gather(*(one(i) for i in range(n))), spans)


async def _bare_tot(base_url: str, breadth: int, levels: int, k: int, slots: int) -> list[tuple[float, float]]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=5)
    sem = asyncio.Semaphore(slots)
    spans: list[tuple[float, float]] = []

    async def ask(prompt: str, max_tokens: int) -> str:
        async with sem:
            t0 = time.perf_counter()
            r = await client.chat.completions.create(model="fake-model", max_tokens=max_tokens,
                                                     messages=[{"role": "user", "content": prompt}])
            spans.append((t0, time.perf_counter()))
            return r.choices[0].message.content or ""

    async def branch(state: str) -> list[tuple[int, str]]:
        words = (await ask(f"Propose ten next steps, one word each, after this state: {state}", 10)).split()[:k]
        cands = [state + "|" + w for w in words]
        scores = await asyncio.gather(*(ask(f"Rate: {c}", 4) for c in cands))
        return [(len(s), c) for s, c in zip(scores, cands, strict=True)]

    async def search() -> None:
        frontier = [f"s{j}" for j in range(breadth)]
        for _ in range(levels):
            scored = [x for xs in await asyncio.gather(*(branch(s) for s in frontier)) for x in xs]
            frontier = [c for s, c in sorted(scored, reverse=True)[:breadth]]

    await asyncio.gather(*(ask(f"warm {i}", 4) for i in range(16)))
    spans.clear()
    return await _measure(search, spans)


async def _measure(make: Any, spans: list) -> Any:
    _STATE.update(rss0=rss_mb(), cpu0=time.process_time(), t0=time.perf_counter())
    await make()
    _STATE.update(cpu1=time.process_time(), t1=time.perf_counter())
    return spans


_STATE: dict[str, float] = {}


def _epic(base_url: str, src: str, ns: dict, calls_hint: int, slots: int, profile: bool) -> tuple[list, int, dict]:
    from epic_kernel import run
    from epic_kernel.llm.openai_backend import OpenAIBackend

    backend = OpenAIBackend(base_url=base_url, api_key="sk-bench", model="fake-model", max_concurrency=slots,
                            stream_generate=False)
    run(FANOUT_SRC, backend=backend, namespace={"n": 16})      # warm-up: connections, compiler caches
    extra = budget_kwargs(calls_hint)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    _STATE.update(rss0=rss_mb(), cpu0=time.process_time(), t0=time.perf_counter())
    if prof:
        prof.enable()
    res = run(src, backend=backend, namespace=dict(ns), **extra)
    if prof:
        prof.disable()
    _STATE.update(cpu1=time.process_time(), t1=time.perf_counter())
    backend.close()
    spans = [(c.start, c.end) for c in res.calls if c.end is not None]
    top = {}
    if prof:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        top = {"profile_top": buf.getvalue().splitlines()[:40]}
    return spans, len(res.calls), {"budget_kwargs": sorted(extra), **top}


class _Local:
    """An in-process model that answers after `latency` seconds and does nothing else: with it, the
    difference between epic and a bare gather is the evaluator's own work, no HTTP client in it."""

    def __new__(cls, latency: float) -> Any:
        from epic_kernel.llm.base import Backend, LLMResponse

        class Local(Backend):
            name = "local-sleep"

            async def generate(self, request: Any) -> Any:
                await asyncio.sleep(latency)
                return LLMResponse("alpha beta gamma delta epsilon zeta eta theta iota kappa",
                                   tokens_in=8, tokens_out=10)

        return Local()


async def _local_bare(n: int, latency: float) -> list[tuple[float, float]]:
    from epic_kernel.llm.base import LLMRequest, SamplingParams

    backend, spans = _Local(latency), []

    async def one(i: int) -> str:
        t0 = time.perf_counter()
        r = await backend.generate(LLMRequest.build(f"Question {i}: say something.", params=SamplingParams(max_tokens=8)))
        spans.append((t0, time.perf_counter()))
        return r.text

    return await _measure(lambda: asyncio.gather(*(one(i) for i in range(n))), spans)


def _local_epic(n: int, latency: float) -> tuple[list, int, dict]:
    from epic_kernel import run

    backend = _Local(latency)
    run(FANOUT_SRC, backend=backend, namespace={"n": 16})
    extra = budget_kwargs(n)
    _STATE.update(rss0=rss_mb(), cpu0=time.process_time(), t0=time.perf_counter())
    res = run(FANOUT_SRC, backend=backend, namespace={"n": n}, **extra)
    _STATE.update(cpu1=time.process_time(), t1=time.perf_counter())
    return [(c.start, c.end) for c in res.calls if c.end is not None], len(res.calls), {"budget_kwargs": sorted(extra)}


def worker(args: argparse.Namespace) -> None:
    """One measured run in this process; prints one JSON line."""
    n, extra = args.n, {}
    if args.worker == "bare":
        spans = asyncio.run(_bare_fanout(args.base_url, n, args.slots))
        calls = len(spans)
    elif args.worker == "epic":
        spans, calls, extra = _epic(args.base_url, FANOUT_SRC, {"n": n}, n, args.slots, args.profile)
    elif args.worker == "local-bare":
        spans = asyncio.run(_local_bare(n, args.latency))
        calls = len(spans)
    elif args.worker == "local-epic":
        spans, calls, extra = _local_epic(n, args.latency)
    elif args.worker == "tot-bare":
        spans = asyncio.run(_bare_tot(args.base_url, *tot_shape(n), args.slots))
        calls = len(spans)
    else:
        breadth, levels, k = tot_shape(n)
        spans, calls, extra = _epic(args.base_url, TOT_SRC, {"breadth": breadth, "levels": levels, "k": k},
                                    breadth * levels * (k + 1), args.slots, args.profile)   # its exact call count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"calls": calls, "wall_s": _STATE["t1"] - _STATE["t0"], "cpu_s": _STATE["cpu1"] - _STATE["cpu0"],
                      "rss_before_mb": round(_STATE["rss0"], 1), "peak_rss_mb": round(peak, 1),
                      "client_inflight": inflight(spans), **extra}))


def tot_shape(nodes: int) -> tuple[int, int, int]:
    """(breadth, levels, k) for about `nodes` calls: per level `breadth` proposals and breadth*k evaluations."""
    breadth, k = 20, 10
    return breadth, max(1, round(nodes / (breadth * (k + 1)))), k


# ------------------------------------------------------------------------------------ driver
def server_stats(base_url: str) -> dict:
    """The fake server's counters: requests, and the number in flight at every arrival."""
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=30) as r:
        return json.loads(r.read())


def measure(mode: str, n: int, base_url: str, slots: int, profile: bool = False, latency: float = 0.05) -> dict:
    local = mode.startswith("local")
    before = None if local else server_stats(base_url)
    cmd = [sys.executable, "-m", "benchmarks.bench_scale", "--worker", mode, "--n", str(n), "--base-url", base_url,
           "--slots", str(slots), "--latency", str(latency), *(["--profile"] if profile else [])]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{mode} n={n} failed: {p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["cpu_ms_per_call"] = round(1000 * r["cpu_s"] / r["calls"], 3)
    r["mem_kb_per_call"] = round(1024 * (r["peak_rss_mb"] - r["rss_before_mb"]) / r["calls"], 2)
    r["calls_per_s"] = round(r["calls"] / r["wall_s"], 1)
    if local:
        print(f"  {mode:10s} n={n:>6}: {r['wall_s']:6.2f} s wall, {r['cpu_s']:6.3f} s CPU ({r['cpu_ms_per_call']:.4f} "
              f"ms/call), peak RSS {r['peak_rss_mb']:.0f} MB (+{r['mem_kb_per_call']:.2f} kB/call)", flush=True)
        return r
    after = server_stats(base_url)
    arrivals = after["arrivals"][len(before["arrivals"]):]     # the warm-up's few requests included
    r["server"] = {"requests": after["requests"] - before["requests"],
                   "inflight_at_arrival_mean": round(sum(arrivals) / len(arrivals), 1) if arrivals else 0.0,
                   "inflight_at_arrival_peak": max(arrivals, default=0),
                   "not_completed": (after["requests"] - before["requests"]) - (after["completed"] - before["completed"])}
    print(f"  {mode:8s} n={n:>6}: {r['calls']:>6} calls, {r['wall_s']:6.2f} s wall, {r['cpu_s']:6.2f} s CPU "
          f"({r['cpu_ms_per_call']:.3f} ms/call), peak RSS {r['peak_rss_mb']:.0f} MB "
          f"(+{r['mem_kb_per_call']:.1f} kB/call), on the server: {r['server']['inflight_at_arrival_mean']} in flight "
          f"(peak {r['server']['inflight_at_arrival_peak']})",
          flush=True)
    return r


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="fan-out sizes (default 1000,2500,5000,10000; quick 200,400)")
    ap.add_argument("--tot-nodes", type=int, default=None, help="ToT calls, about (default 2000; quick 220)")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the largest epic fan-out")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return None
    sizes = [int(x) for x in (args.sizes or ("200,400" if args.quick else "1000,2500,5000,10000")).split(",")]
    tot_nodes = args.tot_nodes or (220 if args.quick else 2000)
    server, url = start_server(args.latency, args.slots)
    res: dict[str, Any] = {"meta": {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                    "latency_s": args.latency, "slots": args.slots, "quick": args.quick,
                                    "python": platform.python_version(), "cpu": machine()["cpu"], "cpus": os.cpu_count(),
                                    "load_before": os.getloadavg()},
                           "local": {}, "fanout": {}, "tot": {}}
    try:
        for n in sizes:      # the evaluator alone: an in-process model that only sleeps, no HTTP
            res["local"][str(n)] = {m: measure(m, n, url, args.slots, latency=args.latency)
                                    for m in ("local-bare", "local-epic")}
        for n in sizes:
            res["fanout"][str(n)] = {m: measure(m, n, url, args.slots, args.profile and n == max(sizes) and m == "epic")
                                     for m in ("bare", "epic")}
            write_results(args.out, "scale", _finish(res), markdown(_finish(res)))
        res["tot"] = {m: measure(m, tot_nodes, url, args.slots) for m in ("tot-bare", "tot")}
    finally:
        server.kill()
        server.wait()
    res["meta"]["load_after"] = os.getloadavg()
    out = _finish(res)
    write_results(args.out, "scale", out, markdown(out), echo=True)
    return out


def _finish(res: dict) -> dict:
    out = json.loads(json.dumps(res))
    summary = {}
    for n, r in out["fanout"].items():
        b, e = r["bare"], r["epic"]
        summary[n] = {"evaluator_cpu_ms_per_call": round(1000 * (e["cpu_s"] - b["cpu_s"]) / e["calls"], 3),
                      "throughput_vs_bare": round(e["calls_per_s"] / b["calls_per_s"], 2),
                      "epic_mem_kb_per_call": e["mem_kb_per_call"], "bare_mem_kb_per_call": b["mem_kb_per_call"]}
    out["summary"] = summary
    out["summary_local"] = {n: {"evaluator_cpu_ms_per_call": round(1000 * (r["local-epic"]["cpu_s"] - r["local-bare"]["cpu_s"])
                                                                   / r["local-epic"]["calls"], 4),
                                "epic_mem_kb_per_call": r["local-epic"]["mem_kb_per_call"],
                                "bare_mem_kb_per_call": r["local-bare"]["mem_kb_per_call"]}
                            for n, r in out.get("local", {}).items()}
    if out["tot"]:
        b, e = out["tot"]["tot-bare"], out["tot"]["tot"]
        out["summary_tot"] = {"calls": e["calls"], "evaluator_cpu_ms_per_call": round(1000 * (e["cpu_s"] - b["cpu_s"])
                                                                                      / e["calls"], 3),
                              "throughput_vs_bare": round(e["calls_per_s"] / b["calls_per_s"], 2)}
    per = [s["evaluator_cpu_ms_per_call"] for s in summary.values()]
    out["targets"] = {"throughput_at_least_0.8x_bare": all(s["throughput_vs_bare"] >= 0.8 for s in summary.values()),
                      "evaluator_cpu_at_most_0.5_ms_per_call": bool(per) and max(per) <= 0.5}
    return out


def markdown(res: dict) -> str:
    m = res["meta"]
    lines = ["# Programs of many calls: evaluator CPU and memory per call", "",
             f"{m['when']}; {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}; fake OpenAI server in its own "
             f"process, {m['latency_s'] * 1000:.0f} ms latency, {m['slots']} slots; load average before "
             f"{', '.join(f'{x:.1f}' for x in m['load_before'])}{' (--quick)' if m['quick'] else ''}. "
             "Each run in a fresh process; CPU = that process's CPU time during the run (client library "
             "included); evaluator CPU per call = (epic - bare) / calls.", "",
             "| calls | bare: wall s, CPU s, calls/s | epic: wall s, CPU s, calls/s | epic / bare throughput | "
             "evaluator CPU ms/call | memory kB/call (bare, epic) | in flight at the server, mean/peak (bare, epic) |",
             "|---|---|---|---|---|---|---|"]
    for n, r in res["fanout"].items():
        b, e, s = r["bare"], r["epic"], res["summary"][n]
        n = f"{n} (profiled: slower, not comparable)" if e.get("profile_top") else n
        lines.append(f"| {n} | {b['wall_s']:.2f}, {b['cpu_s']:.2f}, {b['calls_per_s']:.0f} | {e['wall_s']:.2f}, "
                     f"{e['cpu_s']:.2f}, {e['calls_per_s']:.0f} | {s['throughput_vs_bare']} | "
                     f"{s['evaluator_cpu_ms_per_call']} | {b['mem_kb_per_call']}, {e['mem_kb_per_call']} | "
                     f"{_fl(b)}, {_fl(e)} |")
    if res.get("summary_local"):
        lines += ["", "The evaluator alone (an in-process model that sleeps the same latency; no HTTP, no client library):", "",
                  "| calls | bare gather CPU s | epic CPU s | evaluator CPU ms/call | memory kB/call (bare, epic) |",
                  "|---|---|---|---|---|"]
        for n, s in res["summary_local"].items():
            b, e = res["local"][n]["local-bare"], res["local"][n]["local-epic"]
            lines.append(f"| {n} | {b['cpu_s']:.3f} | {e['cpu_s']:.3f} | {s['evaluator_cpu_ms_per_call']} | "
                         f"{s['bare_mem_kb_per_call']}, {s['epic_mem_kb_per_call']} |")
    if res.get("summary_tot"):
        b, e, s = res["tot"]["tot-bare"], res["tot"]["tot"], res["summary_tot"]
        lines += ["", f"ToT-shaped search, {s['calls']} calls: asyncio {b['wall_s']:.2f} s wall / {b['cpu_s']:.2f} s "
                  f"CPU, epic {e['wall_s']:.2f} s / {e['cpu_s']:.2f} s: throughput {s['throughput_vs_bare']}x, "
                  f"evaluator CPU {s['evaluator_cpu_ms_per_call']} ms per call."]
    budget = next((r["epic"].get("budget_kwargs") for r in res["fanout"].values()), None)
    lines += ["", f"Call budget passed to run(): {', '.join(budget) if budget else 'none (run() has no call budget option)'}.",
              "", "Targets: throughput >= 0.8x bare: "
              f"{'met' if res['targets']['throughput_at_least_0.8x_bare'] else '**missed**'}; evaluator CPU <= 0.5 ms "
              f"per call: {'met' if res['targets']['evaluator_cpu_at_most_0.5_ms_per_call'] else '**missed**'}."]
    prof = next((r["epic"].get("profile_top") for r in res["fanout"].values() if r["epic"].get("profile_top")), None)
    if prof:
        lines += ["", "## Profile of the largest epic run (cProfile, by own time)", "", "```", *prof, "```"]
    return "\n".join(lines) + "\n"


def _fl(r: dict) -> str:
    return f"{r['server']['inflight_at_arrival_mean']}/{r['server']['inflight_at_arrival_peak']}"



if __name__ == "__main__":
    main()
