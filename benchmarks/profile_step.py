"""Where one decode step of the shared batcher spends its time, for 1, 8, 32 and 64 rows.

    python -m benchmarks.profile_step [--model smollm2] [--rows 1,8,32,64] [--steps 16] [--dtype bfloat16]
        [--not-invariant] [--quantize int8|int4] [--tag -bf16]

Drives the batcher's own `_admit`/`_step` on the calling thread (its worker stays idle: nothing is
submitted), with prompts of 24-40 tokens, after 8 warm-up steps. For each batch size it reports the
median wall time of a step and, from `torch.profiler` over `--steps` steps, the self CPU time per
operator group: matmuls (linear layers + LM head), attention (sdpa), KV-cache concatenation,
attention-mask building, elementwise/norm/rope, and what is left (Python, dispatch). Writes
benchmarks/results/profile_step.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.report import machine, machine_line, write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).parent / "results"

GROUPS = {   # operator name fragments -> group (first match wins)
    "matmul": ("addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn"),
    "attention": ("scaled_dot_product", "_flash_attention", "aten::_softmax", "aten::gather", "aten::sort",
                  "aten::argsort", "aten::masked_fill"),
    "kv cache cat": ("aten::cat",),
    "mask": ("aten::__and__", "aten::bitwise_and", "aten::ge", "aten::le", "aten::lt", "aten::gt",
             "aten::eq", "aten::where", "aten::arange", "aten::expand", "aten::any", "aten::all", "aten::_assert"),
    "norm/rope/act": ("aten::mul", "aten::add", "aten::rsqrt", "aten::pow", "aten::mean", "aten::silu", "aten::neg",
                      "aten::sin", "aten::cos", "aten::slice", "aten::index", "aten::to", "aten::_to_copy",
                      "aten::copy_", "aten::embedding", "aten::transpose", "aten::view", "aten::reshape",
                      "aten::unsqueeze", "aten::contiguous", "aten::clone", "aten::empty", "aten::t", "aten::argmax",
                      "aten::sub", "aten::cumsum", "aten::clamp", "aten::select", "aten::item",
                      "aten::_local_scalar_dense", "aten::ones", "aten::new_ones", "aten::zeros", "aten::full",
                      "aten::fill_", "aten::lift", "aten::detach", "aten::as_strided", "aten::squeeze",
                      "aten::float", "aten::type_as", "aten::_unsafe_view", "aten::stack", "aten::result_type"),
}


def group_of(name: str) -> str:
    for g, keys in GROUPS.items():
        if any(name.startswith(k) or k in name for k in keys):
            return g
    return "other ops"


def load(model: str, dtype: str, invariant: bool = True, quantize: str | None = None):
    from epic_kernel.llm.transformers_backend import load_batcher

    return load_batcher(model, device="cpu", dtype=getattr(__import__("torch"), dtype), max_batch_size=128,
                        prefix_cache_mb=0, batch_invariant=invariant, quantize=quantize)


def tickets(b, n: int):
    import asyncio

    from epic_kernel.llm.base import LLMRequest, SamplingParams
    from epic_kernel.llm.batcher import Ticket

    loop = asyncio.new_event_loop()
    words = "the cat reads a book today and the dog writes tokens while a user sends a request with care".split()
    out = []
    for i in range(n):
        text = " ".join(words[(i * 5 + k) % len(words)] for k in range(24 + i % 17))
        req = LLMRequest.build(text, raw=True, params=SamplingParams(max_tokens=10_000))
        out.append(Ticket(req, b.encode(req), loop, stream=False, ignore_eos=True, hook=None))
    return out


def profile(b, rows: int, steps: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    with torch.inference_mode():
        b._rows, b._cache, b._mask, b._batch_id = [], None, None, None
        b._admit(tickets(b, rows))
        for _ in range(8):
            b._step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            b._step()
            times.append(time.perf_counter() - t0)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                b._step()
    groups: dict[str, float] = defaultdict(float)
    total_self = 0.0
    for ev in prof.key_averages():
        groups[group_of(ev.key)] += ev.self_cpu_time_total
        total_self += ev.self_cpu_time_total
    step_us = statistics.median(times) * 1e6
    per_step = {g: v / steps for g, v in groups.items()}
    # profiler overhead inflates op times a little; report shares of the profiled op time and the plain step time
    share = {g: round(v * steps / total_self, 3) for g, v in sorted(per_step.items(), key=lambda kv: -kv[1])}
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    return {"rows": rows, "step_ms": round(step_us / 1000, 2), "tok_per_s": round(rows / (step_us / 1e6), 1),
            "share_of_op_time": share,
            "top_ops": [[e.key, round(e.self_cpu_time_total / steps / 1000, 3), e.count // steps] for e in top],
            "cache_len": int(b._mask.shape[1])}


def markdown(res: dict) -> str:
    groups = list(GROUPS) + ["other ops"]
    inv = "batch-invariant" if res.get("batch_invariant", True) else "not batch-invariant"
    quant = f", {res['quantize']} weights" if res.get("quantize") else ""
    lines = [f"# One decode step of the batcher ({res['model']}, {res['dtype']}{quant}, {inv}, "
             f"{res['torch_threads']} threads)", "", machine_line(res["machine"]), "",
             f"{res['when']}; median of {res['steps']} steps after 8 warm-up steps; prompts of 24-40 tokens. "
             "Shares are of the profiled operator self time (torch.profiler); "
             "'other ops' is everything not in a named group.", "",
             "| rows | step ms | tok/s | " + " | ".join(groups) + " |", "|" + "---|" * (3 + len(groups))]
    for r in res["runs"]:
        lines.append(f"| {r['rows']} | {r['step_ms']} | {r['tok_per_s']} | "
                     + " | ".join(f"{100 * r['share_of_op_time'].get(g, 0):.0f} %" for g in groups) + " |")
    lines += ["", "Top operators (self ms per step, calls per step):", ""]
    for r in res["runs"]:
        lines.append(f"- {r['rows']} rows: " + "; ".join(f"`{k}` {ms} ms x{n}" for k, ms, n in r["top_ops"][:8]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rows", default="1,8,32,64")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--not-invariant", action="store_true", help="plain kernels (batch_invariant=False)")
    ap.add_argument("--quantize", default=None, choices=["int8", "int4"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--tag", default="", help="suffix of the result files (profile_step<tag>.md)")
    args = ap.parse_args(argv)
    import torch

    b = load(args.model, args.dtype, not args.not_invariant, args.quantize)
    try:
        runs = [profile(b, int(n), args.steps) for n in args.rows.split(",")]
    finally:
        b.close()
    res = {"model": args.model, "dtype": args.dtype, "batch_invariant": not args.not_invariant,
           "quantize": args.quantize, "machine": machine(), "steps": args.steps, "torch_threads": torch.get_num_threads(),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs}
    write_results(args.out, f"profile_step{args.tag}", res, markdown(res), echo=True)
    return res


if __name__ == "__main__":
    main()
