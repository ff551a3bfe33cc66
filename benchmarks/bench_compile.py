"""Does `torch.compile` make the batcher's decode step faster on this CPU? (issue 13, item 2)

The batcher calls the model once per decode step with a batch of rows and a KV cache that grows by
one token per step, and the batch changes size as rows join and finish. This measures that step
with the model run eagerly and compiled (inductor, `dynamic=True` so growing shapes do not
recompile every step), side by side in one process: compile time, median step time at 1/16/64 rows,
and whether the greedy tokens stay the same. Results: benchmarks/results/compile.{md,json}.

    python -m benchmarks.bench_compile [--rows 1,16,64] [--steps 24] [--dtype bfloat16] [--tag -bf16]

The model is the plain transformers one (not batch-invariant: the invariant attention's per-batch
key count is data-dependent, which compiles to a graph break per layer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from benchmarks.report import write_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).parent / "results"


def decode(model, tok, rows: int, steps: int, prompt_len: int = 48) -> tuple[list[float], list[list[int]]]:
    """Prefill `rows` prompts, then `steps` greedy decode steps; the time of each step."""
    import torch
    from transformers import DynamicCache

    from epic_kernel.llm.kvcache import cache_kwarg

    kw = cache_kwarg(getattr(model, "_orig_mod", model))     # `cache` in this transformers, not the old name
    text = "Explain in two sentences why the sky is blue, then name three colours of sunset."
    ids = tok([text] * rows, return_tensors="pt").input_ids[:, :prompt_len]
    cache = DynamicCache()
    times, out = [], [[] for _ in range(rows)]
    with torch.inference_mode():
        logits = model(input_ids=ids, **{kw: cache}, use_cache=True).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            t0 = time.perf_counter()
            logits = model(input_ids=nxt, **{kw: cache}, use_cache=True).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - t0)
            for r in range(rows):
                out[r].append(int(nxt[r, 0]))
    return times, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1,16,64")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--tag", default="", help="suffix of the result files (compile<tag>.md)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from epic_kernel.llm.models import quiet_progress, resolve_model

    path = resolve_model("smollm2")
    with quiet_progress():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
        tok = AutoTokenizer.from_pretrained(path)
    compiled = torch.compile(model, dynamic=True)
    rows = [int(r) for r in args.rows.split(",")]
    res: dict = {"model": "SmolLM2-135M-Instruct", "dtype": args.dtype, "steps": args.steps,
                 "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": {}}
    t0 = time.perf_counter()
    decode(compiled, tok, 2, 2)                     # compile (prefill and decode shapes)
    res["compile_s"] = round(time.perf_counter() - t0, 1)
    print(f"compile + first steps: {res['compile_s']} s", flush=True)
    for n in rows:
        t_eager, toks_eager = decode(model, tok, n, args.steps)
        t_comp, toks_comp = decode(compiled, tok, n, args.steps)
        e, c = statistics.median(t_eager[2:]), statistics.median(t_comp[2:])
        res["rows"][n] = {"eager_ms": round(e * 1000, 2), "compiled_ms": round(c * 1000, 2),
                          "speedup": round(e / c, 2), "same_tokens": toks_eager == toks_comp}
        print(f"{n} rows: eager {e * 1000:.1f} ms, compiled {c * 1000:.1f} ms per step "
              f"({e / c:.2f}x), same greedy tokens: {toks_eager == toks_comp}", flush=True)
    md = [f"# torch.compile on the decode step ({res['model']}, {res['dtype']}, torch {res['torch']}, "
          f"{res['threads']} threads, {res['when']})", "",
          f"Compile and first steps: {res['compile_s']} s.", "",
          "| rows | eager step | compiled step | speed-up | same greedy tokens |", "|---|---|---|---|---|"]
    for n, r in res["rows"].items():
        md.append(f"| {n} | {r['eager_ms']} ms | {r['compiled_ms']} ms | {r['speedup']}x | {r['same_tokens']} |")
    write_results(args.out, f"compile{args.tag}", res, "\n".join(md) + "\n", echo=True)
    return res


if __name__ == "__main__":
    main()
