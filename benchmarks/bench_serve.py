"""`epic serve` under load from several client processes, against the same requests in-process.

The product path for "several kernels share one model": `epic serve --backend transformers --model
tiny10m` runs as its own process (the console script, as a user starts it); 4 client processes, each
with the `openai` client (AsyncOpenAI), send 8 concurrent requests at the same moment (a barrier), 32
in all, 32 new tokens each, temperature 0. The same 32 requests then run in this process through a
`TransformersBackend` on the same model (`asyncio.gather`, as bench_batcher's burst does). Rounds
alternate which of the two goes first; medians of `--reps`.

* endpoints: /v1/completions (raw prompts, bench_batcher's 16-24-token prompts) and
  /v1/chat/completions (the same text as one user message, through the chat template).
* EOS: the server has no flag to ignore EOS, so both sides stop at EOS and tokens/s counts the
  tokens actually generated (`usage.completion_tokens` vs `tokens_out`); the texts are compared too.
* batches, observed: GET /v1/stats (the shared batcher's counters) is read before and after every
  round and the difference is reported: decode steps by rows in the batch (a histogram), mean rows
  per decode step, batches, prefills, merges, requests and tokens. The in-process backend's
  `stats()` is diffed the same way, so both sides' batching is compared directly. The counters are
  cumulative (there is no HTTP reset), so a round's figures are after - before, read once the
  round's requests are all counted as finished.
* batches, from timing (secondary, kept as a cross-check): (a) the spread of the 32 end times
  against one decode step, (b) a control round with the 4 clients one after another, (c) a
  streaming round whose per-token arrival times, clustered, show how many requests (and from how
  many client processes) received a token in the same decode step.

Target (reported, never adjusted): server tokens/s within 20 % of in-process (ratio >= 0.8).

    python -m benchmarks.bench_serve [--model tiny10m] [--reps 3] [--quick] [--out DIR]

Writes benchmarks/results/serve.json and serve.md (or DIR/...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.report import write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CLIENTS, PER_CLIENT, NEW = 4, 8, 32
N = CLIENTS * PER_CLIENT
RESULTS = Path(__file__).resolve().parent / "results"
ENDPOINTS = ("completions", "chat")


# ------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epic_command() -> list[str]:
    """The `epic` console script next to this interpreter, else `python -m epic_kernel`."""
    script = Path(sys.executable).with_name("epic")
    return [str(script)] if script.exists() else [sys.executable, "-m", "epic_kernel"]


def start_server(model: str, port: int, log_path: Path, timeout: float = 300.0) -> tuple[subprocess.Popen, float]:
    cmd = [*epic_command(), "serve", "--backend", "transformers", "--model", model, "--host", "127.0.0.1",
           "--port", str(port)]
    log = open(log_path, "w")  # noqa: SIM115 (kept open for the server's lifetime)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/v1/models"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"epic serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    json.loads(r.read())
                    return proc, time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"epic serve did not answer {url} in {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)         # what Ctrl-C does: uvicorn shuts down, the backend closes
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ------------------------------------------------------------------------------------------ batcher stats
COUNTERS = ("requests", "finished", "cancelled", "batches", "prefills", "merges", "reprefills", "steps",
            "tokens_out")


def server_stats(port: int) -> dict:
    """The server's batcher counters: GET /v1/stats -> {"backend": ..., "stats": {...}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats", timeout=10) as r:
        return json.loads(r.read())["stats"]


def settled(read, before: dict, expect: int, timeout: float = 5.0) -> dict:
    """Counters once the round's `expect` requests are counted finished and nothing is running.
    A response can reach its client a moment before the batcher bumps "finished"; poll briefly."""
    t0 = time.monotonic()
    while True:
        after = read()
        done = after.get("finished", 0) + after.get("cancelled", 0) - before.get("finished", 0) \
            - before.get("cancelled", 0)
        if (done >= expect and not after.get("running") and not after.get("pending")) \
                or time.monotonic() - t0 > timeout:
            return after
        time.sleep(0.02)


def stats_delta(before: dict, after: dict) -> dict:
    """What one round did: counter differences and its histogram of rows per decode step."""
    out = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS if k in after}
    b = {int(k): v for k, v in (before.get("batch_sizes") or {}).items()}
    a = {int(k): v for k, v in (after.get("batch_sizes") or {}).items()}
    hist = {k: a.get(k, 0) - b.get(k, 0) for k in sorted(set(a) | set(b))}
    hist = {k: v for k, v in hist.items() if v}
    steps = sum(hist.values())
    out["batch_sizes"] = hist
    out["decode_steps"] = steps
    out["mean_rows_per_step"] = round(sum(k * v for k, v in hist.items()) / steps, 2) if steps else 0.0
    out["max_rows"] = max(hist, default=0)
    return out


def observe(read, expect: int, run):
    """Run `run()` between two reads of the counters; returns (run's result, the round's delta)."""
    before = read()
    got = run()
    return got, stats_delta(before, settled(read, before, expect))


def merge_hists(deltas: list[dict]) -> dict[int, int]:
    out: dict[int, int] = {}
    for d in deltas:
        for k, v in d["batch_sizes"].items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def observed_summary(deltas: list[dict]) -> dict:
    """Rounds together: the summed histogram, mean rows per step over all steps, per-round counts."""
    hist = merge_hists(deltas)
    steps = sum(hist.values())
    return {"batch_sizes": hist, "decode_steps": steps,
            "mean_rows_per_step": round(sum(k * v for k, v in hist.items()) / steps, 2) if steps else 0.0,
            "max_rows": max(hist, default=0),
            **{f"{k}_per_round": [d.get(k, 0) for d in deltas] for k in
               ("requests", "finished", "batches", "prefills", "merges", "reprefills", "decode_steps",
                "tokens_out")},
            "mean_rows_per_step_per_round": [d["mean_rows_per_step"] for d in deltas],
            "rounds": deltas}


def fmt_hist(h: dict) -> str:
    """{32: 31, 30: 1} -> '32x31, 30x1' (rows x decode steps), largest batches first."""
    return ", ".join(f"{k}x{v}" for k, v in sorted(((int(k), v) for k, v in h.items()), reverse=True)) or "-"


# ------------------------------------------------------------------------------------------ clients
def client_main(idx: int, base_url: str, model: str, prompts: list[str], cmds, barrier, results) -> None:
    """One client process: for each command, wait at the barrier, send its 8 requests at once, report."""
    import openai

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0, timeout=600)

        async def one(k: int, p: str, endpoint: str, stream: bool) -> dict:
            t0 = time.monotonic()
            chunks: list[float] = []
            text, toks, finish = "", None, None
            if endpoint == "completions":
                kw = dict(model=model, prompt=p, max_tokens=NEW, temperature=0)
                make = client.completions.create
            else:
                kw = dict(model=model, messages=[{"role": "user", "content": p}], max_tokens=NEW, temperature=0)
                make = client.chat.completions.create
            if not stream:
                r = await make(**kw)
                c = r.choices[0]
                text = c.text if endpoint == "completions" else c.message.content
                toks, finish = r.usage.completion_tokens, c.finish_reason
            else:
                s = await make(**kw, stream=True, stream_options={"include_usage": True})
                async for ev in s:
                    if ev.usage is not None:
                        toks = ev.usage.completion_tokens
                    for c in ev.choices:
                        piece = c.text if endpoint == "completions" else (c.delta.content or "")
                        if piece:
                            chunks.append(time.monotonic())
                            text += piece
                        finish = c.finish_reason or finish
            return {"client": idx, "k": k, "start": t0, "end": time.monotonic(), "tokens": toks, "finish": finish,
                    "text": text, "chunks": chunks}

        results.put(("ready", idx, None))
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, cmds.get)
            if cmd is None:
                break
            endpoint, stream, gated = cmd
            if gated:
                await loop.run_in_executor(None, barrier.wait)
            rows = await asyncio.gather(*(one(k, p, endpoint, stream) for k, p in enumerate(prompts)))
            results.put(("done", idx, rows))
        await client.close()

    asyncio.run(main())


class Clients:
    """The 4 client processes (spawned: no torch state is inherited), driven round by round."""

    def __init__(self, base_url: str, model: str, prompts: list[str]):
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(CLIENTS + 1)
        self.results = ctx.Queue()
        self.cmds = [ctx.Queue() for _ in range(CLIENTS)]
        self.procs = [ctx.Process(target=client_main, daemon=True,
                                  args=(i, base_url, model, prompts[i * PER_CLIENT:(i + 1) * PER_CLIENT],
                                        self.cmds[i], self.barrier, self.results))
                      for i in range(CLIENTS)]
        for p in self.procs:
            p.start()
        for _ in range(CLIENTS):
            kind, _, _ = self.results.get(timeout=120)
            assert kind == "ready"

    def round(self, endpoint: str, stream: bool = False) -> list[dict]:
        """All 4 clients at once: each sends its 8 requests when the barrier opens."""
        for q in self.cmds:
            q.put((endpoint, stream, True))
        self.barrier.wait()
        rows = []
        for _ in range(CLIENTS):
            kind, _, got = self.results.get(timeout=600)
            rows += got
        return sorted(rows, key=lambda r: (r["client"], r["k"]))

    def serial(self, endpoint: str) -> list[list[dict]]:
        """Control: the clients one after another (each still sends its 8 at once)."""
        out = []
        for q in self.cmds:
            q.put((endpoint, False, False))
            out.append(self.results.get(timeout=600)[2])
        return out

    def close(self) -> None:
        for q in self.cmds:
            q.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()


# ------------------------------------------------------------------------------------------ in-process
def inproc_requests(texts: list[str], endpoint: str):
    from epic_kernel.llm.base import LLMRequest, SamplingParams

    params = SamplingParams(max_tokens=NEW)
    if endpoint == "completions":
        return [LLMRequest(prompt=t, raw=True, params=params) for t in texts]
    return [LLMRequest.build(t, params=params) for t in texts]


async def inproc_burst(backend, reqs) -> tuple[float, list]:
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(backend.generate(r) for r in reqs))
    return time.perf_counter() - t0, rs


# ------------------------------------------------------------------------------------------ analysis
def summarize_round(rows: list[dict]) -> dict:
    starts, ends = [r["start"] for r in rows], [r["end"] for r in rows]
    wall = max(ends) - min(starts)
    toks = sum(r["tokens"] or 0 for r in rows)
    return {"wall_s": wall, "tokens": toks, "tok_s": toks / wall, "start_spread_s": max(starts) - min(starts),
            "end_spread_s": max(ends) - min(ends), "mean_latency_s": statistics.mean(e - s for s, e in zip(starts, ends, strict=True)),
            "min_latency_s": min(e - s for s, e in zip(starts, ends, strict=True))}


def stream_clusters(rows: list[dict]) -> dict:
    """Cluster every streamed token's arrival time: a new cluster where the gap to the previous
    arrival exceeds half a decode step (the median gap between one request's consecutive tokens).
    Each cluster approximates one decode step as the clients saw it."""
    gaps = [b - a for r in rows for a, b in zip(r["chunks"], r["chunks"][1:], strict=False)]
    if not gaps:
        return {}
    step = statistics.median(gaps)
    events = sorted((t, r["client"], i) for i, r in enumerate(rows) for t in r["chunks"])
    clusters, cur, last = [], [], None
    for ev in events:
        if last is not None and ev[0] - last > step / 2:
            clusters.append(cur)
            cur = []
        cur.append(ev)
        last = ev[0]
    clusters.append(cur)
    sizes = [len({e[2] for e in c}) for c in clusters]
    procs = [len({e[1] for e in c}) for c in clusters]
    widths = [c[-1][0] - c[0][0] for c in clusters]
    hist: dict[int, int] = {}
    for s in sizes:
        hist[s] = hist.get(s, 0) + 1
    return {"median_token_gap_s": step, "clusters": len(clusters), "token_events": len(events),
            "requests_per_cluster_median": statistics.median(sizes), "requests_per_cluster_max": max(sizes),
            "requests_per_cluster_hist": dict(sorted(hist.items())),
            "clusters_with_all_clients": sum(p == CLIENTS for p in procs),
            "clusters_with_2plus_clients": sum(p >= 2 for p in procs),
            "median_cluster_width_s": statistics.median(widths),
            "tokens_per_request_streamed": statistics.median(len(r["chunks"]) for r in rows)}


def paired_ratio(server_rounds: list[dict], inproc_walls: list[float], inproc_toks: list[int]) -> float:
    """Median over rounds of (server tok/s / in-process tok/s) within the same round (noise-robust)."""
    return round(statistics.median(s["tok_s"] / (t / w) for s, w, t in
                                   zip(server_rounds, inproc_walls, inproc_toks, strict=True)), 3)


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


# ------------------------------------------------------------------------------------------ main
def bench(model: str, reps: int, out: Path) -> dict:
    import torch

    from benchmarks.bench_batcher import prompts as make_prompts
    from epic_kernel.llm.transformers_backend import TransformersBackend

    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="bench_serve_")) / "server.log"
    proc, server_start_s = start_server(model, port, log_path)
    clients = None
    backend = None
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        backend = TransformersBackend(model, max_batch_size=N)       # EOS honoured, like the server
        texts = make_prompts(backend.batcher.tokenizer, N)
        clients = Clients(base_url, model, texts)

        def srv_read() -> dict:
            return server_stats(port)

        inp_read = backend.stats
        res: dict = {"model": model, "clients": CLIENTS, "per_client": PER_CLIENT, "N": N, "new_tokens": NEW,
                     "reps": reps, "server_start_s": round(server_start_s, 2),
                     "server_cmd": " ".join([Path(epic_command()[0]).name, *epic_command()[1:], "serve",
                                             "--backend transformers", f"--model {model}", "--host 127.0.0.1",
                                             "--port PORT"]),
                     "torch_threads_inproc": torch.get_num_threads()}
        reqs = {ep: inproc_requests(texts, ep) for ep in ENDPOINTS}
        for ep in ENDPOINTS:                                  # warm up both sides, both endpoints
            clients.round(ep)
            asyncio.run(inproc_burst(backend, reqs[ep]))
        for ep in ENDPOINTS:
            server_rounds, inproc_walls, inproc_toks, same_text = [], [], [], []
            srv_obs, inp_obs = [], []
            for rep in range(reps):
                first_inproc = rep % 2 == 1
                if first_inproc:
                    (wall_i, rs), oi = observe(inp_read, N, lambda ep=ep: asyncio.run(inproc_burst(backend, reqs[ep])))
                rows, os_ = observe(srv_read, N, lambda ep=ep: clients.round(ep))
                if not first_inproc:
                    (wall_i, rs), oi = observe(inp_read, N, lambda ep=ep: asyncio.run(inproc_burst(backend, reqs[ep])))
                srv_obs.append(os_)
                inp_obs.append(oi)
                s = summarize_round(rows)
                server_rounds.append(s)
                inproc_walls.append(wall_i)
                inproc_toks.append(sum(r.tokens_out for r in rs))
                same_text.append(sum(a.text == r["text"] for a, r in zip(rs, rows, strict=True)))
                print(f"  {ep} rep {rep}: server {s['wall_s']:.3f}s ({s['tok_s']:.0f} tok/s, {s['tokens']} tok, "
                      f"starts within {s['start_spread_s'] * 1000:.1f} ms, ends within "
                      f"{s['end_spread_s'] * 1000:.1f} ms) | in-process {wall_i:.3f}s "
                      f"({inproc_toks[-1] / wall_i:.0f} tok/s, {inproc_toks[-1]} tok) | same text {same_text[-1]}/{N}",
                      flush=True)
                print(f"    observed rows per decode step: server [{fmt_hist(os_['batch_sizes'])}] mean "
                      f"{os_['mean_rows_per_step']}, {os_['batches']} batch(es), {os_['prefills']} prefill(s), "
                      f"{os_['merges']} merge(s), {os_['requests']} requests | in-process "
                      f"[{fmt_hist(oi['batch_sizes'])}] mean {oi['mean_rows_per_step']}, {oi['batches']} batch(es), "
                      f"{oi['prefills']} prefill(s)", flush=True)
            wall_s = med([r["wall_s"] for r in server_rounds])
            tok_server = med([r["tok_s"] for r in server_rounds])
            tok_inproc = med([t / w for t, w in zip(inproc_toks, inproc_walls, strict=True)])
            step_s = med(inproc_walls) / NEW
            res[ep] = {
                "server_wall_s": wall_s, "server_tok_s": round(tok_server, 1),
                "inproc_wall_s": med(inproc_walls), "inproc_tok_s": round(tok_inproc, 1),
                "server_vs_inproc": round(tok_server / tok_inproc, 3),
                "server_vs_inproc_paired": paired_ratio(server_rounds, inproc_walls, inproc_toks),
                "server_tokens": [r["tokens"] for r in server_rounds], "inproc_tokens": inproc_toks,
                "same_text_as_inproc": same_text,
                "start_spread_s": med([r["start_spread_s"] for r in server_rounds]),
                "end_spread_s": med([r["end_spread_s"] for r in server_rounds]),
                "mean_latency_s": med([r["mean_latency_s"] for r in server_rounds]),
                "inproc_step_s": round(step_s, 4),
                "end_spread_in_steps": round(med([r["end_spread_s"] for r in server_rounds]) / step_s, 2),
                "raw": {"server_wall_s": [r["wall_s"] for r in server_rounds], "inproc_wall_s": inproc_walls},
                "target_within_20pct": tok_server / tok_inproc >= 0.8,
                "observed_server": observed_summary(srv_obs),
                "observed_inproc": observed_summary(inp_obs),
            }
        # control: the 4 clients one after another (8 concurrent each); twice, keep the faster
        serial_walls, serial_obs = [], []
        for _ in range(2 if reps > 1 else 1):
            per, ob = observe(srv_read, N, lambda: clients.serial("completions"))
            serial_walls.append([summarize_round(rows)["wall_s"] for rows in per])
            serial_obs.append(ob)
        bi = min(range(len(serial_walls)), key=lambda i: sum(serial_walls[i]))
        best = serial_walls[bi]
        res["serial_clients"] = {"per_client_wall_s": [round(w, 4) for w in best], "sum_s": round(sum(best), 4),
                                 "concurrent_wall_s": res["completions"]["server_wall_s"],
                                 "concurrent_vs_serial": round(sum(best) / res["completions"]["server_wall_s"], 2),
                                 "observed_server": serial_obs[bi]}
        # streaming round: per-token arrival times across the 4 processes
        rows, ob = observe(srv_read, N, lambda: clients.round("completions", stream=True))
        st = summarize_round(rows)
        res["stream_probe"] = {"wall_s": round(st["wall_s"], 4), "tok_s": round(st["tok_s"], 1),
                               **stream_clusters(rows), "observed_server": ob}
        print(f"  serial clients {res['serial_clients']}\n  stream probe {res['stream_probe']}", flush=True)
    finally:
        if clients is not None:
            clients.close()
        if backend is not None:
            backend.close()
        stop_server(proc)
    res["server_log_tail"] = log_path.read_text()[-1500:]
    return res


def clients_at_least(rows: int) -> int:
    """Fewest client processes a decode step of `rows` rows can draw from (each has PER_CLIENT requests)."""
    return -(-rows // PER_CLIENT)


def steps_from_all_clients(hist: dict) -> int:
    """Decode steps whose rows must come from all CLIENTS processes (more rows than CLIENTS-1 can hold)."""
    return sum(v for k, v in hist.items() if clients_at_least(int(k)) >= CLIENTS)


def markdown(res: dict, meta: dict) -> str:
    c, h, s, p = res["completions"], res["chat"], res["serial_clients"], res["stream_probe"]
    n, k = res["N"], res["clients"]

    def per_round(xs: list) -> str:
        return ", ".join(map(str, xs))

    def obs_row(label: str, side: str, o: dict) -> str:
        if "rounds" not in o:                  # a single round's delta
            o = observed_summary([o])
        merges = sum(o["merges_per_round"])
        pre = per_round(o["prefills_per_round"]) + (f" ({merges} merge{'s' * (merges != 1)})" if merges else "")
        return (f"| {label} | {side} | {per_round(o['requests_per_round'])} | {per_round(o['batches_per_round'])} | "
                f"{pre} | {per_round(o['decode_steps_per_round'])} | {fmt_hist(o['batch_sizes'])} | "
                f"**{o['mean_rows_per_step']}** ({per_round(o['mean_rows_per_step_per_round'])}) | "
                f"{steps_from_all_clients(o['batch_sizes'])} of {o['decode_steps']} |")

    cs, hs = c["observed_server"], h["observed_server"]
    lines = [
        f"# `epic serve`: {res['clients']} client processes x {res['per_client']} concurrent requests vs in-process",
        "",
        f"{meta['machine']}; torch {meta['torch']}, transformers {meta['transformers']}, openai {meta['openai']}. "
        f"Server: `{res['server_cmd']}` in its own process (started and answering /v1/models in "
        f"{res['server_start_s']} s); {res['clients']} client processes (AsyncOpenAI), each sending "
        f"{res['per_client']} requests at once when a shared barrier opens: {res['N']} requests, max_tokens="
        f"{res['new_tokens']}, temperature 0. In-process: the same {res['N']} requests through a "
        "`TransformersBackend` on the same model in the benchmark process (`asyncio.gather`). The server "
        "cannot be told to ignore EOS, so both sides honour it and tokens/s counts generated tokens. "
        f"Medians of {res['reps']} rounds, server and in-process alternating. Generated by "
        "`benchmarks/bench_serve.py`.",
        "",
        "| endpoint | server wall s (tok/s) | in-process wall s (tok/s) | server / in-process | same, per-round "
        "pairs | tokens server / in-process (per round) | same text as in-process | request starts within "
        "| responses end within (decode steps) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ep, r in (("/v1/completions", c), ("/v1/chat/completions", h)):
        lines.append(
            f"| {ep} | {r['server_wall_s']} ({r['server_tok_s']}) | {r['inproc_wall_s']} ({r['inproc_tok_s']}) | "
            f"**{r['server_vs_inproc']:.2f}** | {r['server_vs_inproc_paired']:.2f} | "
            f"{', '.join(map(str, r['server_tokens']))} / "
            f"{', '.join(map(str, r['inproc_tokens']))} | {', '.join(f'{x}/{n}' for x in r['same_text_as_inproc'])} | "
            f"{r['start_spread_s'] * 1000:.1f} ms | {r['end_spread_s'] * 1000:.1f} ms "
            f"({r['end_spread_in_steps']}) |")
    lines += [
        "",
        "## Observed decode batches",
        "",
        "Do requests from different client processes share decode batches? Read from the batcher's own "
        "counters: the server's `GET /v1/stats` (and the in-process backend's `stats()`) before and after "
        "each round, the difference being that round's work. `rows x steps` counts decode steps by the number "
        "of rows (requests) in the batch; the prefill that produces each request's first token is not a decode "
        f"step, so a round of {n} requests x {res['new_tokens']} tokens without EOS is 1 prefill and "
        f"{res['new_tokens'] - 1} decode steps of {n} rows. Each client process holds {res['per_client']} "
        f"requests, so a step with more than {res['per_client'] * (k - 1)} rows has rows from all {k} processes.",
        "",
        "| rounds | counters | requests per round | batches per round | prefills per round | decode steps per "
        "round | rows x decode steps, all rounds | mean rows per decode step (per round) | steps of more than "
        f"{res['per_client'] * (k - 1)} rows (rows from all {k} clients) |",
        "|---|---|---|---|---|---|---|---|---|",
        obs_row(f"/v1/completions, {k} clients at once", "server /v1/stats", cs),
        obs_row("", "in-process stats()", c["observed_inproc"]),
        obs_row(f"/v1/chat/completions, {k} clients at once", "server /v1/stats", hs),
        obs_row("", "in-process stats()", h["observed_inproc"]),
        obs_row(f"/v1/completions, {k} clients one after another (control)", "server /v1/stats",
                s["observed_server"]),
        obs_row(f"/v1/completions streamed, {k} clients at once", "server /v1/stats", p["observed_server"]),
        "",
        f"* concurrent rounds, server: mean **{cs['mean_rows_per_step']}** rows per decode step on /v1/completions "
        f"and **{hs['mean_rows_per_step']}** on /v1/chat/completions (in-process: "
        f"{c['observed_inproc']['mean_rows_per_step']} and {h['observed_inproc']['mean_rows_per_step']}); largest "
        f"step {cs['max_rows']} and {hs['max_rows']} rows of {n}; "
        f"{steps_from_all_clients(cs['batch_sizes'])} of {cs['decode_steps']} and "
        f"{steps_from_all_clients(hs['batch_sizes'])} of {hs['decode_steps']} decode steps carried rows from all "
        f"{k} client processes. Each round's {n} requests were admitted in "
        f"{per_round(cs['prefills_per_round'])} and {per_round(hs['prefills_per_round'])} prefills "
        f"({sum(cs['merges_per_round'])} and {sum(hs['merges_per_round'])} merges into the running batch in all), "
        f"{per_round(cs['batches_per_round'])} and {per_round(hs['batches_per_round'])} batches per round; "
        "in-process, "
        f"{per_round(c['observed_inproc']['prefills_per_round'])} and "
        f"{per_round(h['observed_inproc']['prefills_per_round'])} prefills.",
        f"* control, the clients one after another: mean {s['observed_server']['mean_rows_per_step']} rows per "
        f"step, at most {s['observed_server']['max_rows']} (one client's {res['per_client']}), in "
        f"{s['observed_server']['batches']} batches: the counters tell sequential clients from concurrent ones.",
        "",
        "## Timing (secondary evidence, consistent with the counters)",
        "",
        f"* the {res['N']} non-streamed responses of a round end within {c['end_spread_s'] * 1000:.1f} ms of one "
        f"another (median), {c['end_spread_in_steps']} in-process decode steps of {c['inproc_step_s'] * 1000:.1f} ms; "
        f"mean request latency {c['mean_latency_s']:.3f} s of a {c['server_wall_s']:.3f} s round;",
        f"* the same clients one after another (8 concurrent each): {', '.join(map(str, s['per_client_wall_s']))} s, "
        f"{s['sum_s']} s in all, vs {s['concurrent_wall_s']} s when all 4 send together "
        f"({s['concurrent_vs_serial']}x);",
        f"* streamed round ({p.get('wall_s')} s, {p.get('tok_s')} tok/s): {p.get('token_events')} token arrivals "
        f"cluster into {p.get('clusters')} groups (a gap of more than half the median {1000 * p.get('median_token_gap_s', 0):.1f} ms "
        f"token interval starts a new group); requests per group: median {p.get('requests_per_cluster_median')}, "
        f"max {p.get('requests_per_cluster_max')}; groups with tokens for all {res['clients']} client processes: "
        f"{p.get('clusters_with_all_clients')}, with 2 or more: {p.get('clusters_with_2plus_clients')}; "
        f"histogram {p.get('requests_per_cluster_hist')}. (Arrival clusters blur steps together or split "
        "them; the counters above are exact.)",
        "",
        "Target: server tokens/s within 20 % of in-process (server / in-process >= 0.8, the ratio of the "
        "medians; the per-round pairs column is the median of the ratios of rounds run back to back).",
        "",
        f"* /v1/completions: **{'met' if c['target_within_20pct'] else 'MISSED'}** ({c['server_vs_inproc']:.2f})",
        f"* /v1/chat/completions: **{'met' if h['target_within_20pct'] else 'MISSED'}** ({h['server_vs_inproc']:.2f})",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import openai
    import torch
    import transformers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny10m")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one round per endpoint (a smoke run)")
    ap.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results)")
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
            "torch": torch.__version__, "transformers": transformers.__version__, "openai": openai.__version__,
            "python": platform.python_version(), "quick": args.quick,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    out = Path(args.out)
    print(f"== epic serve {args.model}: {CLIENTS} clients x {PER_CLIENT} requests, {reps} rounds", flush=True)
    res = bench(args.model, reps, out)
    write_results(out, "serve", {"meta": meta, "results": res}, markdown(res, meta), echo=True)


if __name__ == "__main__":
    main()
