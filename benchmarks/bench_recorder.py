"""What recording a run for the stepper (`%%epic --step`) costs, side by side in one process:

    plain     run(src)                        the default trace (events, no per-step records)
    full      run(src, trace="full")          a `step` event per reduction step (the traced loop)
    recorder  run(src, recorder=Recorder())   the traced loop + the recorder's state diff per step

for a pure loop of ~300, ~3,000 (the recorder's cap) and ~30,000 steps (past the cap the recorder
only counts), plus the size of the recording (JSON) and of the stepper's HTML. Medians of several
runs, ratios against `plain` measured in the same run. Writes results/recorder.{json,md}.

    python -m benchmarks.bench_recorder [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from epic_kernel.widgets import stepper_html

from epic_kernel import run
from epic_kernel.runtime.recorder import Recorder

RESULTS = Path(__file__).resolve().parent / "results"
PROGRAM = """total = 0
for i in range({n}):
    if i % 3 == 0:
        total += i
total
"""
SIZES = {"for over range(30)": 30, "range(350): about the cap": 350, "range(3500): 10x past the cap": 3500}


def timed(src: str, mode: str) -> tuple[float, int, dict | None]:
    rec = Recorder() if mode == "recorder" else None
    kw = {"trace": "full"} if mode == "full" else {"recorder": rec} if rec is not None else {}
    t0 = time.perf_counter()
    res = run(src, backend="sim", **kw)
    took = time.perf_counter() - t0
    return took, res.steps, rec.recording(source=src) if rec is not None else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one size, three repetitions")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    sizes = dict(list(SIZES.items())[:1]) if args.quick else SIZES
    reps = 3 if args.quick else args.reps
    rows = []
    for label, n in sizes.items():
        src = PROGRAM.format(n=n)
        times: dict[str, list[float]] = {"plain": [], "full": [], "recorder": []}
        steps, recording = 0, None
        for _ in range(reps):                      # interleaved, so load drifts hit every mode alike
            for mode in times:
                took, steps, r = timed(src, mode)
                times[mode].append(took)
                recording = r or recording
        med = {m: statistics.median(v) for m, v in times.items()}
        assert recording is not None
        rows.append({"program": label, "steps": steps, "recorded": len(recording["steps"]),
                     "truncated": recording["truncated"], **{f"{m}_s": round(v, 5) for m, v in med.items()},
                     "full_x": round(med["full"] / med["plain"], 2),
                     "recorder_x": round(med["recorder"] / med["plain"], 2),
                     "recording_kb": round(len(json.dumps(recording)) / 1024, 1),
                     "html_kb": round(len(stepper_html(recording)) / 1024, 1), "reps": reps})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "time": time.time()}
    (out / "recorder.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Recording a run for the stepper", "",
             f"Medians of {reps} interleaved runs; ratios against `plain` from the same runs.", "",
             "| program | evaluator steps | recorded | plain | trace=full | recorder | full / plain "
             "| recorder / plain | recording | stepper HTML |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['program']} | {r['steps']} | {r['recorded']}{' (capped)' if r['truncated'] else ''} "
                     f"| {r['plain_s'] * 1000:.1f} ms | {r['full_s'] * 1000:.1f} ms | {r['recorder_s'] * 1000:.1f} ms "
                     f"| {r['full_x']:.2f}x | {r['recorder_x']:.2f}x | {r['recording_kb']} KB | {r['html_kb']} KB |")
    (out / "recorder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
