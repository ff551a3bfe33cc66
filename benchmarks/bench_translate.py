"""Translation speed: `compile_program` over every program we ship or test, N times, side by side with
another checkout of the package (`--baseline DIR`, e.g. the tree before a translator refactoring).

Why: the translator runs on every `%%epic` cell and every `@epic` import, so a restructuring of
`epic_kernel/lang/` must not make it slower. Wall time of one pass is noisy on a shared machine, so
each repetition times every tree once, in rotated order, in separate processes (each tree imports its
own `epic_kernel`), and the ratio reported is the median of the per-repetition ratios.

The corpus: the `%%epic` cells of `tutorials/*.ipynb`, the epic programs in `examples/*.py`, and the
differential-test programs `progen.generate(seed)` for seeds 0..199 (as `make test` runs them).

    python -m benchmarks.bench_translate [--reps 7] [--passes 5] [--baseline DIR] [--out DIR]

Writes DIR/translate.json and DIR/translate.md (DIR = benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROGEN_SEEDS = 200

# run in a child process whose sys.path starts at one tree: translate the corpus `passes` times
_TIMER = """
import json, sys, time
from epic_kernel.lang import compile_program
srcs = json.load(open(sys.argv[1]))
passes = int(sys.argv[2])
for s in srcs:
    compile_program(s)                      # warm-up: imports, caches
t0 = time.perf_counter()
for _ in range(passes):
    for s in srcs:
        compile_program(s)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def corpus() -> list[str]:
    """Every program that must translate: tutorial cells, examples, differential-test programs."""
    from epic_kernel.lang import compile_program
    from epic_kernel.testing.progen import generate

    out: list[str] = []
    for nb in sorted((ROOT / "tutorials").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            if cell["cell_type"] == "code" and src.startswith("%%epic"):
                out.append(src.split("\n", 1)[1] if "\n" in src else "")
    out += [p.read_text() for p in sorted((ROOT / "examples").glob("*.py"))]
    out += [generate(seed) for seed in range(PROGEN_SEEDS)]
    kept = []
    for src in out:                          # a cell that is not epic on its own (say, a %%epic --def) is skipped
        try:
            compile_program(src)
        except Exception:
            continue
        kept.append(src)
    return kept


def _time(tree: Path, corpus_file: str, passes: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "-c", _TIMER, corpus_file, str(passes)], env=env, cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["seconds"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--passes", type=int, default=5, help="translations of the whole corpus per timing")
    ap.add_argument("--baseline", type=Path, default=None, help="another tree holding an epic_kernel package")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    srcs = corpus()
    trees = {"current": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    times: dict[str, list[float]] = {k: [] for k in trees}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(srcs, f)
    try:
        names = list(trees)
        for rep in range(args.reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                times[name].append(_time(trees[name], f.name, args.passes))
    finally:
        os.unlink(f.name)
    n = len(srcs) * args.passes
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "meta": {"programs": len(srcs), "passes": args.passes, "reps": args.reps,
                       "baseline": str(args.baseline) if args.baseline else None},
              "median_s": {k: statistics.median(v) for k, v in times.items()},
              "programs_per_s": {k: n / statistics.median(v) for k, v in times.items()}}
    if args.baseline:
        result["ratio_current_over_baseline"] = statistics.median(
            c / b for c, b in zip(times["current"], times["baseline"], strict=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "translate.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Translation speed", "", f"{len(srcs)} programs x {args.passes} passes, {args.reps} repetitions "
             "(median)", "", "| tree | median s | programs/s |", "|---|---|---|"]
    lines += [f"| {k} | {result['median_s'][k]:.3f} | {result['programs_per_s'][k]:.0f} |" for k in trees]
    if args.baseline:
        lines += ["", f"current / baseline time: **{result['ratio_current_over_baseline']:.3f}** "
                  "(median of per-repetition ratios)"]
    (args.out / "translate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
