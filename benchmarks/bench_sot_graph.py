"""Skeleton graphs on Vicuna-80: `sot(graph=True)` against plain SoT and normal decoding.

For each question, one after another (order rotated per question so drift spreads over all modes):

    router      SoT-R's prompting router alone: the class (A/B/C) the model gives the question
    normal      the question as it is, one call                       sot's `normal` program
    sot         plain SoT, opportunistic                             expansions all at once
    graph       the skeleton graph, opportunistic                     each point after its dependencies
    graph-seq   the same graph program under strategy="sequential"    one call at a time

Per mode: wall time (the run, end to end), tokens generated, calls; for the graph, its points, edges,
edges dropped (a point naming a missing or later point), and its critical path in points (the
longest chain of dependencies: the fewest rounds of expansions any schedule needs). `critical/points`
near 1/points means the points are independent (plain SoT's shape); 1 means a chain (no
parallelism left).

Models: `sim` is the simulated model scripted to write graph skeletons with random dependencies
(`graph_sim_script`) and plain SoT skeletons (`sim_script`), with `--per-token-s` seconds per token: a
measure of the program and the evaluator's schedule under a cost model, not of a language model.
Any other name is a `TransformersBackend` model (`smollm2`, the default local model), greedy, with
the graph skeleton constrained by its regex (the local backend supports `regex=`).

Targets (reported, never adjusted): on class-B questions the graph is faster than normal decoding;
the graph is never slower than graph-seq by more than noise. Quality is not measured here: a quality
result needs a judge backend comparing each graph answer with the normal and the plain SoT answer of
the same question (net win rate), which this benchmark does not have.

    python -m benchmarks.bench_sot_graph [--model sim|smollm2] [--questions subset|all|1,2,3]
        [--per-category 2] [--max-tokens 256] [--modes router,normal,sot,graph,graph-seq] [--out DIR]

Writes DIR/sot_graph-<model>.json and .md (DIR = benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_sot import CATEGORIES, QUESTIONS, load_questions, machine, pick, rotated
from benchmarks.report import write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODES = ("router", "normal", "sot", "graph", "graph-seq")


def make_backend(model: str, per_token_s: float) -> Any:
    if model == "sim":
        from epic_kernel.llm.sim import SimBackend
        from epic_kernel.programs.skeleton_graph import graph_sim_script
        from epic_kernel.programs.sot import sim_script
        return SimBackend(scripts=[graph_sim_script, sim_script], per_token_s=per_token_s)
    from epic_kernel.llm import TransformersBackend
    return TransformersBackend(model)


def run_mode(mode: str, question: str, backend: Any, max_tokens: int) -> dict:
    """One mode on one question."""
    from epic_kernel.programs.sot import normal, route, sot

    t0 = time.perf_counter()
    if mode == "router":
        res = route.run(question, backend=backend)
    elif mode == "normal":
        res = normal.run(question, max_tokens, backend=backend)
    else:
        res = sot.run(question, graph=mode != "sot", max_tokens=max_tokens, expand_with="point", backend=backend,
                      strategy="sequential" if mode == "graph-seq" else "opportunistic")
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"latency_s": wall, "calls": len(res.calls),
                           "tokens_out": sum(c.tokens_out or 0 for c in res.calls)}
    out = res.value
    if mode == "router":
        row["class"] = out
        return row
    row.update(used_sot=bool(out["used_sot"]), points=len(out["points"]), answer=out["answer"])
    if "edges" in out:
        row.update(edges=len(out["edges"]), dropped=len(out["dropped"]), critical=len(out["critical_path"]))
    return row


def run_question(q: dict, modes: list[str], backend: Any, max_tokens: int) -> dict:
    rows = {}
    for mode in rotated(modes, q["question_id"]):
        rows[mode] = r = run_mode(mode, q["text"], backend, max_tokens)
        extra = (f"  class {r['class']}" if mode == "router" else
                 f"  {r['points']} points, {r['edges']} edges, critical {r['critical']}" if "edges" in r else "")
        print(f"  {mode:<9} {r['latency_s']:6.2f} s  {r['tokens_out']:4d} tok  {r['calls']:2d} calls{extra}", flush=True)
    return rows


def summarize(rows: list[dict], modes: list[str]) -> dict:
    timed = [m for m in modes if m != "router"]
    out: dict[str, Any] = {"questions": len(rows),
                           "latency_s": {m: statistics.mean(r["modes"][m]["latency_s"] for r in rows) for m in timed},
                           "tokens_out": {m: statistics.mean(r["modes"][m]["tokens_out"] for r in rows) for m in timed}}
    ratio = {}
    for a, b in (("normal", "graph"), ("normal", "sot"), ("graph-seq", "graph"), ("sot", "graph")):
        if a in timed and b in timed:
            ratio[f"{b} vs {a}"] = statistics.mean(r["modes"][a]["latency_s"] / r["modes"][b]["latency_s"]
                                                   for r in rows)
    out["speedup"] = ratio
    graphs = [r["modes"]["graph"] for r in rows if "graph" in r["modes"] and r["modes"]["graph"].get("edges") is not None]
    if graphs:
        out["graph"] = {"used": len(graphs), "points": statistics.mean(g["points"] for g in graphs),
                        "edges": statistics.mean(g["edges"] for g in graphs),
                        "dropped": statistics.mean(g["dropped"] for g in graphs),
                        "critical": statistics.mean(g["critical"] for g in graphs),
                        "critical_over_points": statistics.mean(g["critical"] / g["points"] for g in graphs)}
    return out


def markdown(results: dict) -> str:
    meta, qs = results["meta"], list(results["questions"].values())
    modes = meta["modes"]
    loads = [r["load_avg"] for r in qs]
    lines = [f"# Skeleton graphs on Vicuna-80: {meta['model']}", "",
             f"{meta['machine']}. `python -m benchmarks.bench_sot_graph {' '.join(meta['argv'])}` on "
             f"{meta['when']}; {len(qs)} questions; max_tokens {meta['max_tokens']}; `expand_with=\"point\"`. "
             f"1-minute load average while it ran: median {statistics.median(loads):.2f}, max {max(loads):.2f} "
             f"(this machine is shared: re-measure on a quiet one before quoting).", ""]
    if meta["model"] == "sim":
        lines += [f"The sim is a cost model ({meta['per_token_s']} s per generated token, random dependencies), "
                  "not a language model: these times measure the program's schedule, not a model. Its normal "
                  "answer is 8-40 free words, shorter than any skeleton's expansions together, so on the sim only "
                  "graph vs graph-seq and graph vs sot compare like with like; its router reply is free text "
                  "(no class).", ""]
    groups: dict[str, list[dict]] = {}
    for r in qs:
        groups.setdefault(r["category"], []).append(r)
    groups = {c: groups[c] for c in CATEGORIES if c in groups}
    if "router" in modes:
        groups["router class B"] = [r for r in qs if r["modes"]["router"]["class"] == "B"]
    groups["all"] = qs
    timed = [m for m in modes if m != "router"]
    ratios = [k for k in ("graph vs normal", "sot vs normal", "graph vs graph-seq", "graph vs sot")
              if all(k.split(" vs ")[i] in timed for i in (0, 1))]
    lines += ["| questions | n | " + " | ".join(f"{m} s" for m in timed) + " | " + " | ".join(ratios)
              + " | points | edges | critical path | critical / points |",
              "|---|---|" + "---|" * (len(timed) + len(ratios)) + "---|---|---|---|"]
    summary = {}
    for name, rows in groups.items():
        if not rows:
            lines.append(f"| {name} | 0 |" + " |" * (len(timed) + len(ratios) + 4))
            continue
        s = summary[name] = summarize(rows, modes)
        g = s.get("graph", {})
        cells = [f"{s['latency_s'][m]:.2f}" for m in timed] + [f"{s['speedup'][k]:.2f}x" for k in ratios]
        cells += [f"{g['points']:.1f}", f"{g['edges']:.1f}", f"{g['critical']:.1f}", f"{g['critical_over_points']:.2f}"] \
            if g else ["", "", "", ""]
        label = f"**{name}**" if name in ("all", "router class B") else name
        lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
    results["summary"] = summary
    allq = summary["all"]
    lines += ["", "Mean tokens generated per question: "
              + ", ".join(f"{m} {v:.0f}" for m, v in allq["tokens_out"].items()) + "."]
    if "graph" in modes:
        fell = [r for r in qs if not r["modes"]["graph"]["used_sot"]]
        lines += ["", f"The graph fell back to normal decoding (a skeleton of fewer than two points, or a "
                  f"constrained skeleton that ran out of tokens) on {len(fell)} of {len(qs)} questions"
                  + (f" ({', '.join('q' + str(r['id']) for r in fell)}); its points, edges and critical path "
                     "columns count the others." if fell else ".")]
    if "router" in modes:
        classes = [r["modes"]["router"]["class"] for r in qs]
        lines += ["", "Router classes: " + ", ".join(f"{c or 'unclear'} {classes.count(c)}"
                                                    for c in ("A", "B", "C", None)) + f" of {len(qs)}."]
    b = summary.get("router class B")
    if b and "graph vs normal" in b["speedup"]:
        lines += ["", f"Target, graph faster than normal decoding on class-B questions: "
                  f"{b['speedup']['graph vs normal']:.2f}x ({'met' if b['speedup']['graph vs normal'] > 1 else '**MISSED**'})."]
    if "graph vs graph-seq" in allq["speedup"]:
        lines += [f"Graph vs the same graph run sequentially: {allq['speedup']['graph vs graph-seq']:.2f}x "
                  "(target: never slower by more than noise)."]
    lines += ["", "Quality is not measured here; a quality result needs a judge backend comparing each graph "
              "answer with the normal and plain SoT answers of the same question (net win rate)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sim", help="sim, or a TransformersBackend model (smollm2)")
    ap.add_argument("--questions", default="subset", help="subset (the first --per-category of each), all, or ids")
    ap.add_argument("--per-category", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--per-token-s", type=float, default=0.004, help="the sim's seconds per generated token")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    questions = pick(load_questions(QUESTIONS), args.questions, args.per_category)
    backend = make_backend(args.model, args.per_token_s)
    from epic_kernel import run
    run("x = llm('Say hello.', max_tokens=8)", backend=backend)            # load and warm up first
    results: dict[str, Any] = {"meta": {"model": args.model, "max_tokens": args.max_tokens, "modes": modes,
                                        "per_token_s": args.per_token_s, "machine": machine(),
                                        "argv": list(argv if argv is not None else os.sys.argv[1:]),
                                        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                               "questions": {}}
    name = f"sot_graph-{args.model}"
    for n, q in enumerate(questions):
        print(f"[{n + 1}/{len(questions)}] q{q['question_id']} ({q['category']}): {q['text'][:70]}", flush=True)
        rows = run_question(q, modes, backend, args.max_tokens)
        results["questions"][str(q["question_id"])] = {"id": q["question_id"], "category": q["category"],
                                                       "modes": rows, "load_avg": os.getloadavg()[0]}
        write_results(args.out, name, results, markdown(results))
    write_results(args.out, name, results, markdown(results), echo=True)
    return results


if __name__ == "__main__":
    main()
