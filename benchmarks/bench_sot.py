"""Skeleton-of-Thought on Vicuna-80 with SmolLM2 on this CPU: normal decoding vs SoT (sequential and
opportunistic) vs streaming SoT, per question category, like the paper's figure 2.

Part 1, live. SmolLM2-135M-Instruct through `TransformersBackend` (the shared batcher), greedy. For
each question four modes run one after another, their order rotated from one question to the next so
that drift on this noisy 2-core machine spreads over all of them:

    normal      the question as it is, one call                  sot's `normal` program
    sot-seq     SoT under strategy="sequential"                  one call at a time: the paper's ablation
    sot         SoT, opportunistic                               the expansions decode as one batch
    sot-stream  streaming SoT, opportunistic                     each expansion starts when its skeleton
                                                                 line is complete, mid-skeleton

Settings (the paper's for open models where it has one): max_tokens 512 for every part (its
max_new_tokens); the skeleton stops at a blank line; an expansion stops at its first blank line;
`expand_with="point"`, because SmolLM2-135M shown the whole skeleton copies it out instead of
expanding its point (see `epic_kernel.programs.sot`). Latency is the wall time of the program's run,
end to end (SoT's: skeleton, parsing, expansions, assembly).

The subset is the first `--per-category` questions of each category in file order (default 2: 18
questions). Every call is recorded (`RecordingBackend`) to benchmarks/recordings/sot/q<ID>.jsonl, and
each question's row is merged into results/sot.json as soon as it finishes, so a long run can be
stopped and resumed (questions already recorded are skipped unless --rerun). `--questions all
--modes normal,sot,sot-stream` records the rest of Vicuna-80 without the slow sequential ablation.

Part 2, replay. Every recorded question is replayed (`ReplayBackend`: each call sleeps its recorded
latency and streams its chunks at their recorded offsets) in the order its modes were recorded, so
each mode gets back its own calls. This covers every recorded question (all 80 once recorded) and
measures the evaluator's end-to-end overhead against the recorded times.

Targets (reported, never adjusted): SoT >= 2.0x over normal decoding on each SoT-suitable category
(generic, knowledge, common-sense, counterfactual, roleplay); streaming SoT faster than plain SoT.
The speed-up of a category is the mean of its questions' speed-ups, as in the paper; the tables also
give the ratio of total times (normal s / sot s), which weighs long answers more.

    python -m benchmarks.bench_sot [--part live|replay|report|all] [--per-category 2]
        [--questions subset|all|1,2,3] [--modes normal,sot-seq,sot,sot-stream] [--model smollm2]
        [--max-tokens 512] [--rerun] [--speed 1] [--out DIR]

Writes DIR/sot.json, DIR/sot.md and DIR/sot.png (DIR = benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import bench_core
from benchmarks.report import write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECORDINGS = HERE / "recordings" / "sot"
QUESTIONS = HERE / "data" / "vicuna80.jsonl"      # Vicuna-80 (FastChat's question.jsonl), as the SoT paper used it

MODES = ("normal", "sot-seq", "sot", "sot-stream")
SUITABLE = ("generic", "knowledge", "common-sense", "counterfactual", "roleplay")
CATEGORIES = ("generic", "knowledge", "roleplay", "common-sense", "fermi", "counterfactual", "coding", "math",
              "writing")
TARGET_SPEEDUP = 2.0


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pick(questions: list[dict], which: str, per_category: int) -> list[dict]:
    if which == "all":
        return questions
    if which == "subset":
        seen: dict[str, int] = {}
        out = []
        for q in questions:
            if seen.get(q["category"], 0) < per_category:
                seen[q["category"]] = seen.get(q["category"], 0) + 1
                out.append(q)
        return out
    ids = {int(x) for x in which.split(",") if x.strip()}
    return [q for q in questions if q["question_id"] in ids]


def rotated(modes: list[str], k: int) -> list[str]:
    k %= len(modes)
    return modes[k:] + modes[:k]


# ------------------------------------------------------------------------------------- one question


def run_mode(mode: str, question: str, backend: Any, max_tokens: int) -> dict:
    """One mode on one question: wall time, tokens, calls, and (streaming) how early expansions began."""
    from epic_kernel.programs.sot import normal, sot

    t0 = time.perf_counter()
    if mode == "normal":
        res = normal.run(question, max_tokens, backend=backend)
    else:
        res = sot.run(question, stream=mode == "sot-stream", max_tokens=max_tokens, expand_with="point",
                      backend=backend, strategy="sequential" if mode == "sot-seq" else "opportunistic")
    wall = time.perf_counter() - t0
    out = res.value
    calls = sorted(res.calls, key=lambda c: c.start)
    row = {"latency_s": wall, "calls": len(calls), "tokens_out": sum(c.tokens_out for c in calls),
           "used_sot": bool(out["used_sot"]), "points": len(out["points"]), "answer_chars": len(out["answer"]),
           "answer": out["answer"]}
    if mode != "normal" and out["used_sot"] and len(calls) > 1:
        skeleton, expansions = calls[0], calls[1:1 + len(out["points"])]
        row["skeleton_s"] = skeleton.end - skeleton.start
        row["skeleton_tokens"] = skeleton.tokens_out
        row["expansion_tokens_max"] = max(c.tokens_out for c in expansions)
        # > 0: the first expansion was dispatched that many seconds before the skeleton finished
        row["first_expansion_lead_s"] = skeleton.end - min(c.start for c in expansions)
        # when a reader has the first finished point: what streaming SoT improves most on a CPU
        row["first_point_s"] = min(c.end for c in expansions) - skeleton.start
    return row


def run_question(q: dict, modes: list[str], backend: Any, max_tokens: int) -> dict:
    rows = {}
    for mode in modes:
        rows[mode] = run_mode(mode, q["text"], backend, max_tokens)
        r = rows[mode]
        print(f"  {mode:<10} {r['latency_s']:6.2f} s  {r['tokens_out']:4d} tok  {r['calls']:2d} calls"
              + (f"  {r['points']} points" if r["used_sot"] else ""), flush=True)
    return rows


# ------------------------------------------------------------------------------------- the parts


def make_backend(model: str) -> Any:
    """`sim` is the simulated model, scripted by SoT to answer its skeleton prompts with numbered
    lists: a smoke test of the benchmark itself, not a measurement. Anything else is a model for
    `TransformersBackend`."""
    if model == "sim":
        from epic_kernel.llm.sim import SimBackend
        from epic_kernel.programs.sot import sim_script
        return SimBackend(scripts=[sim_script])
    from epic_kernel.llm import TransformersBackend
    return TransformersBackend(model)


def live(questions: list[dict], modes: list[str], model: str, max_tokens: int, rerun: bool, rec_dir: Path,
         results: dict, out: Path, threads: int = 0) -> None:
    from epic_kernel.llm.replay import RecordingBackend

    todo = [q for q in questions if rerun or not (rec_dir / f"q{q['question_id']:02d}.jsonl").exists()]
    if not todo:
        print("live: every chosen question is recorded already (--rerun to run them again)")
        return
    if threads:
        import torch
        torch.set_num_threads(threads)
    inner = make_backend(model)
    print(f"live: {len(todo)} questions x {len(modes)} modes on {model}; warming up", flush=True)
    from epic_kernel import run
    run("x = llm('Say hello.', max_tokens=8)", backend=inner)
    for n, q in enumerate(todo):
        qid = q["question_id"]
        path = rec_dir / f"q{qid:02d}.jsonl"
        if path.exists():
            path.unlink()
        recorder = RecordingBackend(inner, path)
        order = rotated(list(modes), qid)
        print(f"[{n + 1}/{len(todo)}] q{qid} ({q['category']}): {q['text'][:70]}", flush=True)
        rows = run_question(q, order, recorder, max_tokens)
        results["live"][str(qid)] = {"id": qid, "category": q["category"], "question": q["text"], "order": order,
                                     "model": model, "max_tokens": max_tokens, "modes": rows,
                                     "torch_threads": torch_threads(),
                                     "load_avg": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M")}
        save(results, out)


def torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def replay(results: dict, speed: float, rec_dir: Path) -> None:
    from epic_kernel.llm.replay import ReplayBackend

    done = {}
    for qid, row in sorted(results["live"].items(), key=lambda kv: int(kv[0])):
        path = rec_dir / f"q{int(qid):02d}.jsonl"
        if not path.exists():
            continue
        backend = ReplayBackend(path, speed=speed)
        print(f"replay q{qid} ({row['category']})", flush=True)
        rows = run_question({"text": row["question"]}, row["order"], backend, row["max_tokens"])
        for mode, r in rows.items():
            if r["answer"] != row["modes"][mode]["answer"]:
                raise SystemExit(f"replay of q{qid} {mode} gave another answer than the live run: "
                                 "the recording does not match the program")
            r["recorded_s"] = row["modes"][mode]["latency_s"] / speed
        done[qid] = {"id": row["id"], "category": row["category"], "max_tokens": row["max_tokens"], "modes": rows}
    results["replay"] = {"speed": speed, "questions": done, "when": time.strftime("%Y-%m-%d %H:%M")}


# ------------------------------------------------------------------------------------- summary


def speedups(rows: dict) -> dict:
    """Per-question ratios. SoT that fell back to normal decoding counts as it ran (about 1x)."""
    lat = {m: r["latency_s"] for m, r in rows.items()}
    out = {}
    for m in ("sot-seq", "sot", "sot-stream"):
        if "normal" in lat and m in lat:
            out[f"{m} vs normal"] = lat["normal"] / lat[m]
    if "sot" in lat and "sot-seq" in lat:
        out["sot vs sot-seq"] = lat["sot-seq"] / lat["sot"]
    if "sot" in lat and "sot-stream" in lat:
        out["sot-stream vs sot"] = lat["sot"] / lat["sot-stream"]
    return out


def summarize(questions: dict) -> dict:
    """Per category and overall: mean latency per mode, mean of the questions' speed-ups."""
    groups: dict[str, list[dict]] = {}
    for row in questions.values():
        groups.setdefault(row["category"], []).append(row)
    groups = {c: groups[c] for c in CATEGORIES if c in groups}
    groups["SoT-suitable (5)"] = [r for c in SUITABLE for r in groups.get(c, [])]
    groups["all"] = list(questions.values())
    out = {}
    for name, rows in groups.items():
        if not rows:
            continue
        modes = [m for m in MODES if all(m in r["modes"] for r in rows)]
        ratios = [speedups(r["modes"]) for r in rows]
        keys = sorted({k for s in ratios for k in s if all(k in t for t in ratios)})
        out[name] = {
            "questions": len(rows),
            "latency_s": {m: statistics.mean(r["modes"][m]["latency_s"] for r in rows) for m in modes},
            "tokens_out": {m: statistics.mean(r["modes"][m]["tokens_out"] for r in rows) for m in modes},
            "speedup": {k: statistics.mean(s[k] for s in ratios) for k in keys},
            "used_sot": sum(r["modes"]["sot"]["used_sot"] for r in rows if "sot" in r["modes"]),
        }
    return out


def targets(summary: dict) -> dict:
    per_cat = {c: summary[c]["speedup"].get("sot vs normal", 0.0) >= TARGET_SPEEDUP for c in SUITABLE if c in summary}
    allq = summary.get("all", {}).get("speedup", {})
    return {"sot_2x_on_each_suitable_category": bool(per_cat) and all(per_cat.values()),
            "per_category": per_cat,
            "streaming_faster_than_plain": allq.get("sot-stream vs sot", 0.0) > 1.0}


# ------------------------------------------------------------------------------------- report


def yes(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def table(summary: dict, modes: tuple[str, ...] = MODES) -> list[str]:
    cols = [m for m in modes if any(m in s["latency_s"] for s in summary.values())]
    ratio_cols = [k for k in ("sot-seq vs normal", "sot vs normal", "sot-stream vs normal", "sot vs sot-seq",
                              "sot-stream vs sot") if any(k in s["speedup"] for s in summary.values())]
    lines = ["| category | questions | " + " | ".join(f"{m} s" for m in cols) + " | "
             + " | ".join(ratio_cols) + " | normal s / sot s | SoT used |",
             "|---|---|" + "---|" * (len(cols) + len(ratio_cols)) + "---|---|"]
    for name, s in summary.items():
        bold = name in ("SoT-suitable (5)", "all")
        cells = [f"{s['latency_s'][m]:.1f}" if m in s["latency_s"] else "" for m in cols]
        cells += [(f"**{s['speedup'][k]:.2f}x**" if k == "sot vs normal" else f"{s['speedup'][k]:.2f}x")
                  if k in s["speedup"] else "" for k in ratio_cols]
        label = f"**{name}**" if bold else name
        lat = s["latency_s"]
        total = f"{lat['normal'] / lat['sot']:.2f}x" if "normal" in lat and "sot" in lat else ""
        lines.append(f"| {label} | {s['questions']} | " + " | ".join(cells) + f" | {total} | {s['used_sot']}/{s['questions']} |")
    return lines


def markdown(results: dict) -> str:
    live_q = results["live"]
    meta = results["meta"]
    models = sorted({r["model"] for r in live_q.values()}) or ["-"]
    caps = sorted({r["max_tokens"] for r in live_q.values()}) or [0]
    lines = [f"# Skeleton-of-Thought on Vicuna-80: {', '.join(models)} on this CPU", "",
             f"{meta['machine']}. Generated by `python -m benchmarks.bench_sot`; latencies are means per category, "
             "speed-ups the mean of each question's ratio (the paper's convention; 'normal s / sot s' is the ratio of total times), all modes of a question measured "
             f"one after another (order rotated). Greedy decoding, max_tokens {'/'.join(map(str, caps))} for every "
             "part, `expand_with=\"point\"`.", ""]
    full = {k: r for k, r in live_q.items() if set(MODES) <= set(r["modes"])}
    if full:
        s = summarize(full)
        t = targets(s)
        loads = [r["load_avg"] for r in full.values()]
        lines += [f"## Live, the fixed subset: {', '.join(models)} through `TransformersBackend` (the shared batcher)", "",
                  f"{len(full)} questions, all four modes; 1-minute load average during the run: median "
                  f"{statistics.median(loads):.2f}, max {max(loads):.2f}.", ""]
        lines += table(s)
        per = ", ".join(f"{c} {s[c]['speedup'].get('sot vs normal', 0):.2f}x" for c in SUITABLE if c in s)
        lines += ["", f"Targets: SoT >= {TARGET_SPEEDUP}x on each SoT-suitable category ({per}): "
                  f"{yes(t['sot_2x_on_each_suitable_category'])}; streaming SoT faster than plain SoT "
                  f"(mean ratio {s['all']['speedup'].get('sot-stream vs sot', 0):.2f}x): "
                  f"{yes(t['streaming_faster_than_plain'])}.", ""]
        lines += details(full, s)
        results["live_summary"] = s
        results["targets"] = t
    if len(live_q) > len(full):
        s = summarize(live_q)
        lines += ["## Live, every recorded question", "",
                  f"{len(live_q)} questions: the subset above plus the rest of Vicuna-80 recorded with normal, SoT and "
                  "streaming SoT (the sequential ablation only on the subset).", ""]
        lines += table(s)
        lines += [""] + details(live_q, s)
        results["live_all_summary"] = s
    rep = results.get("replay") or {}
    if rep.get("questions"):
        s = summarize(rep["questions"])
        over = [r["latency_s"] / r["recorded_s"] for q in rep["questions"].values() for r in q["modes"].values()]
        lines += ["## Replay: the recorded calls, every recorded question", "",
                  f"{len(rep['questions'])} questions replayed by `ReplayBackend` (speed {rep['speed']:g}: each call "
                  "sleeps its recorded latency and streams at its recorded offsets), modes in their recorded order. "
                  f"Replayed / live latency: median {statistics.median(over):.3f} (max {max(over):.3f}): the "
                  "evaluator's end-to-end overhead is what the live run shows beyond the model's own time.", ""]
        lines += table(s)
        lines += [""] + details(rep["questions"], s)
        results["replay_summary"] = s
    return "\n".join(lines) + "\n"


def details(rows: dict, s: dict) -> list[str]:
    """Tokens, capped answers, skeleton sizes and the streaming timings behind a table."""
    tok = s["all"]["tokens_out"]
    capped = [r["modes"]["normal"]["tokens_out"] >= r["max_tokens"] for r in rows.values() if "normal" in r["modes"]]
    points = [r["modes"]["sot"]["points"] for r in rows.values() if "sot" in r["modes"] and r["modes"]["sot"]["used_sot"]]
    out = ["Mean tokens generated per question: " + ", ".join(f"{m} {v:.0f}" for m, v in tok.items()) + ". "
           f"{sum(capped)} of {len(capped)} normal answers ran to the token cap"
           + (f"; SoT skeletons had {statistics.mean(points):.1f} points on average." if points else "."), ""]
    both = [r["modes"] for r in rows.values() if "sot-stream" in r["modes"] and "sot" in r["modes"]]
    leads = [m["sot-stream"]["first_expansion_lead_s"] for m in both if "first_expansion_lead_s" in m["sot-stream"]]
    if leads:
        out.append(f"Streaming SoT dispatched its first expansion a median {statistics.median(leads):.1f} s before "
                   f"its skeleton finished ({len(leads)} questions).")
    firsts = [(m["sot"]["first_point_s"], m["sot-stream"]["first_point_s"]) for m in both
              if "first_point_s" in m["sot"] and "first_point_s" in m["sot-stream"]]
    if firsts:
        out.append(f"The first point's expansion was complete after a median {statistics.median(a for a, _ in firsts):.1f} s "
                   f"with plain SoT and {statistics.median(b for _, b in firsts):.1f} s with streaming SoT "
                   f"({statistics.median(a / b for a, b in firsts):.2f}x sooner, median of {len(firsts)} questions).")
    return [*out, ""] if len(out) > 2 else out


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in [*CATEGORIES, "SoT-suitable (5)", "all"] if c in summary]
    series = [("sot-seq vs normal", "SoT, sequential", "#bbbbbb"), ("sot vs normal", "SoT, opportunistic", "#4c72b0"),
              ("sot-stream vs normal", "streaming SoT", "#dd8452")]
    series = [s for s in series if any(s[0] in summary[n]["speedup"] for n in names)]
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=120)
    width = 0.8 / max(1, len(series))
    for i, (key, label, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [summary[n]["speedup"].get(key, 0) for n in names], width, label=label, color=color)
    top = max(summary[n]["speedup"].get(k, 0) for n in names for k, _, _ in series)
    ax.set_ylim(0, max(TARGET_SPEEDUP, top) * 1.25)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(TARGET_SPEEDUP, color="#c44e52", lw=0.8, ls="--", label=f"target {TARGET_SPEEDUP:g}x")
    ax.set_xticks(range(len(names)), [n.replace(" (5)", "") for n in names], rotation=20, ha="right")
    ax.set_ylabel("speed-up over normal decoding")
    ax.set_title("Skeleton-of-Thought on Vicuna-80 questions, SmolLM2-135M on 2 CPU cores")
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------------------- main

def save(results: dict, out: Path) -> None:
    """Written after every question, so a stopped run keeps what it measured."""
    write_results(out, "sot", results)


def machine() -> str:
    m = bench_core.machine()
    return f"{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("live", "replay", "report", "all"), default="all")
    ap.add_argument("--questions", default="subset", help="subset (the first --per-category of each), all, or ids")
    ap.add_argument("--per-category", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--model", default="smollm2", help="a TransformersBackend model, or sim (a smoke test)")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: torch's own). 1 keeps timings steady when another process "
                         "shares this 2-core machine: two processes with 2 threads each slow each other many times over")
    ap.add_argument("--rerun", action="store_true", help="run questions that are recorded already again")
    ap.add_argument("--speed", type=float, default=1.0, help="replay: divide recorded latencies by this")
    ap.add_argument("--question-file", default=str(QUESTIONS))
    ap.add_argument("--recordings", default=str(RECORDINGS))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    rec_dir = Path(args.recordings)
    path = out / "sot.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("live", {})
    results["meta"] = {"machine": machine(), "argv": sys.argv[1:] if argv is None else argv}
    if args.part in ("live", "all"):
        live(pick(load_questions(Path(args.question_file)), args.questions, args.per_category), modes, args.model,
             args.max_tokens, args.rerun, rec_dir, results, out, args.threads)
    if args.part in ("replay", "all"):
        replay(results, args.speed, rec_dir)
    md = markdown(results)
    write_results(out, "sot", results, md)
    if results.get("live_summary"):
        plot(results["live_summary"], out / "sot.png")
    if results.get("live_all_summary"):
        plot(results["live_all_summary"], out / "sot_all.png")
    print(md)
    return results


if __name__ == "__main__":
    main()
