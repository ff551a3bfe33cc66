"""What one reduction step costs, in instructions (valgrind's callgrind), for this tree and another.

Why instructions: on a shared machine wall time is too noisy to see a few per cent; the number of
instructions the CPU retires is not. Each program of `bench_core` (part 1, pure programs) runs at
two sizes under `valgrind --tool=callgrind`; instructions per step is the difference of the two
totals divided by the difference of the two step counts, so start-up, imports and compilation
cancel out. With `--base DIR` (another checkout, e.g. `git worktree add /tmp/base main`) the same
is measured for that tree's code in the same run, and the table gives new / base per program.

    python -m benchmarks.bench_step_cost [--base DIR] [--sizes 1000,5000] [--only for,while] [--out DIR]

Writes DIR/step_cost.json and DIR/step_cost.md (DIR = benchmarks/results). `print_for` (the `for`
program with a print per iteration) is measured too: a program that prints pays for its print
token, which orders output behind every operation that can fail.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_core import PURE
from benchmarks.report import machine, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROGRAMS = {**PURE, "print_for": "acc = 0\nfor i in range(N):\n    acc = acc + i\n    print(i, end='')\nacc\n"}

_SCRIPT = """
import contextlib, io, json, sys
from epic_kernel import run
src = sys.argv[1]
n = int(sys.argv[2])
with contextlib.redirect_stdout(io.StringIO()):
    res = run(src, namespace={"N": n}, trace=False)
print(json.dumps({"steps": res.steps}))
"""


def instructions(tree: Path, src: str, n: int) -> tuple[int, int]:
    """(instructions, steps) of one run of `src` at size `n` with `tree`'s epic_kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               sys.executable, "-c", _SCRIPT, src, str(n)],
                              capture_output=True, text=True, env=env, cwd=tmp, check=True)
        steps = json.loads(proc.stdout.strip().splitlines()[-1])["steps"]
        text = out.read_text()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if m is None:
        raise RuntimeError("no instruction total in the callgrind output")
    return int(m.group(1)), steps


def per_step(tree: Path, src: str, sizes: tuple[int, int]) -> dict:
    (i1, s1), (i2, s2) = (instructions(tree, src, n) for n in sizes)
    return {"sizes": list(sizes), "steps": [s1, s2], "instructions": [i1, i2],
            "per_step": (i2 - i1) / (s2 - s1)}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_step_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None, help="another checkout to compare with")
    ap.add_argument("--sizes", default="1000,5000", help="the two program sizes N (default 1000,5000)")
    ap.add_argument("--only", default="", help="comma-separated programs (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    lo, hi = (int(x) for x in args.sizes.split(","))
    names = [n for n in PROGRAMS if not args.only or n in args.only.split(",")]
    trees = {"this": ROOT, **({"base": args.base.resolve()} if args.base else {})}
    rows: dict[str, dict] = {}
    for name in names:
        rows[name] = {label: per_step(tree, PROGRAMS[name], (lo, hi)) for label, tree in trees.items()}
        got = rows[name]
        line = f"{name}: {got['this']['per_step']:.0f} instructions/step"
        if "base" in got:
            got["ratio"] = got["this"]["per_step"] / got["base"]["per_step"]
            line += f" (base {got['base']['per_step']:.0f}, {100 * (got['ratio'] - 1):+.1f} %)"
        print(line, flush=True)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = ["program", "instructions / step"] + (["base", "change"] if args.base else [])
    md = ["# Instructions per reduction step (callgrind)\n",
          f"{machine()['cpu']}, {os.cpu_count()} CPUs, CPython {platform.python_version()}; {when}. "
          f"`python -m benchmarks.bench_step_cost{' --base ' + str(args.base) if args.base else ''} "
          f"--sizes {lo},{hi}`: (instructions at N={hi} - at N={lo}) / (steps at N={hi} - at N={lo}), "
          "the programs of bench_core part 1 (`print_for`: the same `for` printing each iteration).\n",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, got in rows.items():
        cells = [name, f"{got['this']['per_step']:.0f}"]
        if "base" in got:
            cells += [f"{got['base']['per_step']:.0f}", f"{100 * (got['ratio'] - 1):+.1f} %"]
        md.append("| " + " | ".join(cells) + " |")
    write_results(args.out, "step_cost", {"when": when, "python": platform.python_version(), "sizes": [lo, hi],
                                          "base": str(args.base) if args.base else None, "programs": rows},
                  "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
