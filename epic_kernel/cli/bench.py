"""`epic bench`: run the benchmarks of a source checkout (benchmarks/ is not in the installed package)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .output import err

__all__ = ["cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2]
    bench = root / "benchmarks"
    if (bench / "__main__.py").is_file():
        cmd = [sys.executable, "-m", "benchmarks", *(["--quick"] if args.quick else []),
               *(["--only", args.only] if args.only else []), *(["--skip", args.skip] if args.skip else [])]
        err(f"epic bench: running {' '.join(cmd[1:])} in {root}")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.call(cmd, cwd=root, env=env)
    if bench.is_dir():
        scripts = sorted(p.name for p in bench.glob("bench_*.py"))
        err("epic bench: this checkout has no benchmark runner yet (benchmarks/__main__.py);"
             + (" run a script directly, e.g.  python benchmarks/" + scripts[0] if scripts else ""))
        return 2
    err("epic bench: the benchmarks live in a source checkout of epic-kernel (the benchmarks/ folder), "
         "not in the installed package. Clone the repository and run `make bench` or "
         "`python -m benchmarks` there.")
    return 2
