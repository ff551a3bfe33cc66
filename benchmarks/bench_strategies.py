"""Does a program mean the same under every strategy? Greedy answers that differ between `sequential`
and `opportunistic` on the local model, per dtype, with and without batch invariance.

    python -m benchmarks.bench_strategies [--modes bf16,fp32,bf16-fast] [--questions 18] [--max-tokens 96] [--quick]

Programs: Skeleton-of-Thought (`programs.sot`, opportunistic expansions decode as one batch) on the
first `--questions` of the 18-question Vicuna-80 subset bench_sot uses (2 per category), and the
example programs the tutorials teach (examples/*.py that need nothing but `llm`). Each runs once
under `strategy="sequential"` (one call at a time: every call decoded alone) and once under
`"opportunistic"` (calls batched with whatever else is pending), greedy, answer cache off. Reported
per mode: programs whose value differs, and calls (matched by their place in the program) whose
answer preview differs. With the default batch-invariant model both must be 0; the `-fast` modes
(`batch_invariant=False`) show what the invariance buys.

Modes: fp32, bf16 (batch-invariant, the defaults by CPU) and fp32-fast, bf16-fast. `--quick`: two
questions, the demo program, 24 tokens, modes bf16,fp32 (CI-sized). Writes
benchmarks/results/strategies.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.report import machine, machine_line, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
EXAMPLES = HERE.parent / "examples"
PROGRAMS = ("demo.py", "fanout.py", "tot.py", "sot.py")     # examples that need only `llm`
MODES = {"fp32": ("float32", True), "bf16": ("bfloat16", True),
         "fp32-fast": ("float32", False), "bf16-fast": ("bfloat16", False)}


def example_source(name: str) -> str:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# ruff:"))


def run_program(kind: str, arg: str, strategy: str, backend: Any, max_tokens: int) -> Any:
    from epic_kernel.runtime.api import run

    if kind == "sot":
        from epic_kernel.programs.sot import sot

        return sot.run(arg, max_tokens=max_tokens, expand_with="point", backend=backend, strategy=strategy)
    return run(example_source(arg), strategy=strategy, backend=backend, cache=False, filename=arg)


def compare(seq: Any, opp: Any) -> dict:
    calls_s = {c.path: c.result_preview for c in seq.calls}
    calls_o = {c.path: c.result_preview for c in opp.calls}
    differ = sorted(p for p in calls_s.keys() & calls_o.keys() if calls_s[p] != calls_o[p])
    return {"same_value": repr(seq.value) == repr(opp.value), "calls": len(calls_s),
            "calls_compared": len(calls_s.keys() & calls_o.keys()), "calls_differ": len(differ),
            "seq_s": round(seq.elapsed, 2), "opp_s": round(opp.elapsed, 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="bf16,fp32,bf16-fast,fp32-fast")
    ap.add_argument("--questions", type=int, default=18, help="how many of the 18-question SoT subset")
    ap.add_argument("--programs", default=",".join(PROGRAMS))
    ap.add_argument("--max-tokens", type=int, default=96, help="per SoT part (skeleton, each expansion)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.modes, args.questions, args.programs, args.max_tokens = "bf16,fp32", 2, "demo.py", 24
    import torch

    from benchmarks.bench_sot import load_questions, pick
    from epic_kernel.llm import TransformersBackend

    modes = args.modes.split(",")
    questions = pick(load_questions(), "subset", 2)[:args.questions]
    work = [("sot", q["text"], f"sot q{q['question_id']}") for q in questions]
    work += [("example", p, p) for p in args.programs.split(",") if p]
    res: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                           "load_before": os.getloadavg()[0], "max_tokens": args.max_tokens, "quick": args.quick,
                           "modes": {}}
    for m in modes:
        dt, inv = MODES[m]
        backend = TransformersBackend("smollm2", dtype=getattr(torch, dt), batch_invariant=inv, shared=False)
        rows = {}
        try:
            for kind, arg, label in work:
                seq = run_program(kind, arg, "sequential", backend, args.max_tokens)
                opp = run_program(kind, arg, "opportunistic", backend, args.max_tokens)
                rows[label] = compare(seq, opp)
                r = rows[label]
                print(f"{m:<10} {label:<12} same value: {r['same_value']!s:<5} calls differ {r['calls_differ']}/"
                      f"{r['calls_compared']}  {r['seq_s']} s -> {r['opp_s']} s", flush=True)
        finally:
            backend.close()
        res["modes"][m] = {"label": backend.precision, "programs": rows,
                           "values_differ": sum(not r["same_value"] for r in rows.values()),
                           "calls_differ": sum(r["calls_differ"] for r in rows.values()),
                           "calls": sum(r["calls_compared"] for r in rows.values())}
        write_results(args.out, "strategies", res, markdown(res))
    write_results(args.out, "strategies", res, markdown(res), echo=True)
    return res


def markdown(res: dict) -> str:
    lines = ["# Greedy answers that differ between sequential and opportunistic (SmolLM2-135M-Instruct)", "",
             machine_line(res["machine"]), "",
             f"{res['when']}; load average {res['load_before']:.1f} at the start; SoT parts capped at "
             f"{res['max_tokens']} tokens. A program differs when its value differs; a call differs when "
             "its answer preview at the same place in the program differs.", "",
             "| mode | precision | programs | values that differ | calls that differ |", "|---|---|---|---|---|"]
    for m, r in res["modes"].items():
        lines.append(f"| {m} | {r['label']} | {len(r['programs'])} | {r['values_differ']} | "
                     f"{r['calls_differ']} of {r['calls']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
