"""`python -m epic_kernel.testing.fuzz --n N --seed S`: the long differential run (issue 10).

Writes program `seed`, `seed+1`, ... `seed+N-1` with `progen.generate`, compares each with CPython
and across every strategy (`progen.compare`), shows progress and the findings so far, and ends with a
summary: one line per mechanism (finding key) with its count and the smallest program shrunk from its
first example. Exit status 1 when anything was found, so `make fuzz` fails loudly.

Why a separate runner: the fixed slice in `tests/test_differential.py` must stay well under a minute,
while the issue asks for tens of thousands of programs; this spreads them over `--jobs` processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .progen import Finding, compare, generate, sampled_variant, shrink

__all__ = ["main"]

_SIZE = 0
SAMPLED_EVERY = 8


def _one(seed: int) -> tuple[int, list[tuple[str, str, str, str, str]]]:
    """Compare program `seed`; findings as plain tuples so they cross the process boundary."""
    src = generate(seed, _SIZE)
    try:
        found = compare(src)
        if seed % SAMPLED_EVERY == 0:          # every 8th program also with sampled llm() calls
            found += [Finding("sampled-" + f.kind, f.strategy, f.expected, f.got, f.gist)
                      for f in compare(sampled_variant(src), cpython=False)]
    except Exception as e:           # the tester itself must never stop a long run
        found = [Finding("tester", "-", "", f"{type(e).__name__}: {e}")]
    return seed, [(f.kind, f.strategy, f.expected, f.got, f.gist) for f in found]


def _init(size: int) -> None:
    global _SIZE
    _SIZE = size


def _worker_init(size: int) -> None:
    """Workers leave Ctrl-C and `kill` to the parent, which stops the pool and prints the summary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init(size)


def _results(seeds: range, jobs: int, size: int) -> Iterator[tuple[int, list[tuple[str, str, str, str, str]]]]:
    if jobs <= 1:
        _init(size)
        yield from map(_one, seeds)
        return
    with mp.get_context("fork").Pool(jobs, initializer=_worker_init, initargs=(size,)) as pool:
        yield from pool.imap_unordered(_one, seeds, chunksize=16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m epic_kernel.testing.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="how many programs (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="first program seed (default 0)")
    ap.add_argument("--size", type=int, default=0,
                    help="program size: statements and nesting depth (default 0: sizes 2-4 mixed by seed)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--no-shrink", action="store_true", help="report first examples as generated")
    ap.add_argument("--out", type=Path, default=None, help="write every finding as JSON lines here")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _stop)      # `kill PID` ends the run early with its summary
    console = Console(stderr=False)
    counts: Counter = Counter()
    first: dict[tuple[str, str], tuple[int, Finding]] = {}
    programs_with_findings = 0
    out = args.out.open("w") if args.out else None
    start = time.perf_counter()
    seeds = range(args.seed, args.seed + args.n)
    done = 0
    stopped = False
    with Progress(TextColumn("[bold]fuzz"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[found]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task("fuzz", total=args.n, found="0 findings")
        try:
            for seed, found in _results(seeds, args.jobs, args.size):
                done += 1
                programs_with_findings += _record(seed, found, counts, first, out)
                progress.update(task, advance=1,
                                found=f"{programs_with_findings} programs with findings, {len(counts)} kinds")
        except KeyboardInterrupt:
            stopped = True
    elapsed = time.perf_counter() - start
    if out:
        out.close()

    console.print(f"\n[bold]{done}[/] programs{' (stopped early)' if stopped else ''} (from seed {args.seed}, "
                  f"size {args.size or '2-4'}) x 6 epic runs + CPython in {elapsed:.0f} s: "
                  f"[bold]{programs_with_findings}[/] with findings, {len(counts)} distinct kinds")
    if not counts:
        return 130 if stopped else 0
    table = Table(show_lines=True)
    table.add_column("count", justify="right")
    table.add_column("finding")
    table.add_column("seed", justify="right")
    table.add_column("smallest program")
    for key, n in counts.most_common():
        seed, f = first[key]
        src = generate(seed, args.size)
        if f.kind.startswith("sampled-"):
            src = sampled_variant(src)
        small = src if args.no_shrink else shrink(src, f, budget=200)
        table.add_row(str(n), f"{key[0]} {key[1]}\n{f}", str(seed), small.strip())
    console.print(table)
    return 1


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _record(seed: int, found: list[tuple[str, str, str, str, str]], counts: Counter,
            first: dict[tuple[str, str], tuple[int, Finding]], out: Any) -> int:
    """Count one program's findings (and log them); 1 if it had any."""
    for kind, strategy, expected, got, gist in found:
        f = Finding(kind, strategy, expected, got, gist)
        counts[f.key] += 1
        first.setdefault(f.key, (seed, f))
        if out:
            out.write(json.dumps({"seed": seed, "kind": kind, "strategy": strategy,
                                  "expected": expected, "got": got, "gist": gist}) + "\n")
            out.flush()
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
