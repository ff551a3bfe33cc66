"""Decoding programs on Vicuna-80, the SoT paper's table shape: speed-up over normal decoding and net
win rate from an LLM judge, per question category, for an answer model and a judge you choose.

Parts (`--part`, default all):

    answer   every question under every program (`epic_kernel.programs.decoding`: normal, sot, sot-r,
             sot-stream, self-consistency, best-of-n), each run alone on the answer backend, the
             order rotated from one question to the next; greedy except the sampled programs, whose
             sample k uses seed `--seed` + k (recorded). Each question is written to the results as
             soon as it is done: a stopped run resumes where it stopped (`--rerun` answers again).
    judge    every program's answer vs normal decoding's, under `--protocols` (FastChat's pairwise
             scores and/or LLMZoo's ranking on `--metrics`), both orders, all of a question's judge
             calls at once. Verdicts are cached in the results under the judge's name: a rerun, or a
             resumed run, judges only what has no verdict from that judge yet.
    reliability  the judge on control pairs (benchmarks/data/judge_controls.jsonl: a complete answer
             vs the same cut in half, both orders): accuracy, order-consistency, unparsed replies.
    samples  self-consistency and best-of-n run sample by sample (strategy="sequential") and as
             written (opportunistic: the n samples in parallel) on `--sample-questions` questions:
             the speed-up of parallel sampling.
    report   the tables, from the results file (nothing is run).

Judges: `--judge none`, `self` (the answer backend, after each question's timed runs), `llama-server`
(the built llama-server serving the default model on 127.0.0.1, started and stopped here), or an
OpenAI-compatible base URL (`--judge-model` names the model). The judge part runs after the answer
part, so no judge call ever competes with a timed run. Answer backends: `--backend transformers --model smollm2`
(default), `sim` (a smoke test), or a URL.

The speed-up of a category is the mean of its questions' speed-ups (the paper's); the table also
gives answer lengths next to every speed-up, and splits SoT's speed-up by whether normal decoding hit
`--max-tokens` (a capped normal answer is a cut one: SoT's speed-up there is partly a longer answer
in the same time, partly not).

    python -m benchmarks.bench_decoding [--part answer,judge,reliability,samples,report|all]
        [--questions subset|all|1,2,3] [--per-category 2] [--programs normal,sot,...]
        [--backend transformers] [--model smollm2] [--judge llama-server] [--protocols fastchat,llmzoo]
        [--metrics general] [--max-tokens 512] [--n 5] [--temperature 0.7] [--seed 0]
        [--expand-with point] [--quick] [--name decoding] [--out DIR]

`--quick`: 2 questions, max_tokens 48, n 3, the judge's reliability on 4 control pairs, 1 sample
question (minutes, to prove the script works). Writes DIR/NAME.json and DIR/NAME.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks import bench_core
from benchmarks.bench_sot import CATEGORIES, QUESTIONS, SUITABLE, load_questions, pick
from benchmarks.report import write_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONTROLS = HERE / "data" / "judge_controls.jsonl"
PARTS = ("answer", "judge", "reliability", "samples", "report")
ALL_PROGRAMS = ("normal", "sot", "sot-r", "sot-stream", "self-consistency", "best-of-n")


# ------------------------------------------------------------------------------------- backends
def answer_backend(spec: str, model: str, threads: int) -> Any:
    from epic_kernel.llm.registry import resolve_backend

    if spec.startswith("http"):
        from epic_kernel.llm.openai_backend import OpenAIBackend
        return OpenAIBackend(base_url=spec, api_key=os.environ.get("OPENAI_API_KEY", "none"), model=model,
                             timeout=600.0)
    if spec == "sim":
        from epic_kernel.llm.sim import SimBackend
        from epic_kernel.programs.sot import sim_script
        return SimBackend(scripts=[sim_script])
    if threads:
        import torch
        torch.set_num_threads(threads)
    return resolve_backend(spec, {"model": model})


def judge_backend(spec: str, model: str, answers: Any, stack: ExitStack, out: Path) -> tuple[Any, str]:
    """The judge backend and its name (the key its cached verdicts are stored under)."""
    from epic_kernel.llm.openai_backend import OpenAIBackend

    if spec == "none":
        return None, ""
    if spec == "self":
        from epic_kernel.llm.registry import describe_spec
        return answers, describe_spec(answers)
    if spec == "llama-server":
        from epic_kernel.testing.engines import EngineServer, free_port, llama_server_cmd
        port = free_port()
        # 4 slots of 4,096 tokens: two 512-token answers, the prompt and the reply fit in one slot
        srv = stack.enter_context(EngineServer(llama_server_cmd(port, parallel=4, ctx=16384), port,
                                               Path(tempfile.gettempdir()) / "epic-bench-llama-server-judge.log"))
        return (OpenAIBackend(base_url=srv.base_url, api_key="none", model="smollm2", timeout=600.0),
                "llama-server · SmolLM2-135M-Instruct Q4_1")
    return (OpenAIBackend(base_url=spec, api_key=os.environ.get("OPENAI_API_KEY", "none"), model=model,
                          timeout=600.0), f"openai · {model} @ {spec}")


# ------------------------------------------------------------------------------------------ parts
async def answer(questions: list[dict], programs: list[str], backend: Any, settings: Any, results: dict,
                 save: Any, rerun: bool) -> None:
    from epic_kernel.programs.decoding import DECODING_PROGRAMS, QuestionRun, _warm_up, rotated, run_program

    await _warm_up(backend)
    done = results.setdefault("questions", {})
    for k, q in enumerate(questions):
        key = str(q["question_id"])
        have = done.get(key, {}).get("runs", {})
        if not rerun and all(p in have for p in programs):
            continue
        qr = QuestionRun(q["text"], q["category"], q["question_id"], order=rotated(programs, k))
        t0 = time.perf_counter()
        for pos, name in enumerate(qr.order):
            qr.runs[name] = await run_program(DECODING_PROGRAMS[name], qr.question, backend, settings, pos)
        record = qr.to_dict()
        record["verdicts"] = done.get(key, {}).get("verdicts", {}) if not rerun else {}
        record["load_avg"] = os.getloadavg()[0]
        done[key] = record
        print(f"[{k + 1}/{len(questions)}] q{key} {q['category']}: "
              + ", ".join(f"{n} {r.elapsed:.1f}s" for n, r in qr.runs.items())
              + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
        save()


async def judge(results: dict, judge_b: Any, judge_name: str, protocols: tuple, metrics: tuple, save: Any) -> None:
    from epic_kernel.programs.decoding import ProgramRun, QuestionRun, judge_question

    async def one(key: str, rec: dict) -> None:
        cached = rec.setdefault("verdicts_by_judge", {}).setdefault(judge_name, {})
        want = (["fastchat"] if "fastchat" in protocols else []) + \
               ([f"llmzoo-{m}" for m in metrics] if "llmzoo" in protocols else [])
        todo = [n for n, r in rec["runs"].items() if n != "normal" and r["ok"]
                and not all(w in cached.get(n, {}) for w in want)]
        if not todo or "normal" not in rec["runs"]:
            rec["verdicts"] = cached
            return
        runs = {n: ProgramRun(**rec["runs"][n]) for n in ["normal", *todo]}
        q = QuestionRun(rec["question"], rec["category"], rec["question_id"], runs=runs)
        await judge_question(q, judge_b, protocols, metrics)
        for n, v in q.verdicts.items():
            cached.setdefault(n, {}).update(v)
        rec["verdicts"] = cached
        if q.judge_error:
            rec["judge_error"] = q.judge_error
        save()

    await asyncio.gather(*(one(k, r) for k, r in results.get("questions", {}).items()))


async def check_judge(judge_b: Any, judge_name: str, pairs: int, results: dict) -> None:
    from epic_kernel.programs.judge import cut_in_half, judge_answers, reliability
    from epic_kernel.runtime.api import call_function_async

    controls = [json.loads(x) for x in CONTROLS.read_text(encoding="utf-8").splitlines() if x.strip()][:pairs]

    async def one(c: dict) -> dict:
        res = await call_function_async(judge_answers, (c["question"], [c["answer"]], cut_in_half(c["answer"]),
                                                        ("fastchat",), ("general",), 128), {}, backend=judge_b)
        return res.value[0]["fastchat"]

    verdicts = await asyncio.gather(*(one(c) for c in controls))
    rel = reliability(verdicts)
    rel["replies"] = [[v["forward"]["reply"], v["backward"]["reply"]] for v in verdicts]
    results.setdefault("reliability", {})[judge_name] = rel


async def samples(questions: list[dict], backend: Any, settings: Any, results: dict) -> None:
    from epic_kernel.programs.decoding import DECODING_PROGRAMS, run_program

    rows = []
    for q in questions:
        for name in ("self-consistency", "best-of-n"):
            for strategy in ("sequential", "opportunistic"):
                r = await run_program(DECODING_PROGRAMS[name], q["text"], backend, settings, strategy=strategy)
                rows.append({"question_id": q["question_id"], "program": name, "strategy": strategy, "ok": r.ok,
                             "elapsed": r.elapsed, "tokens_out": r.tokens_out, "max_batch": r.max_batch,
                             "load_avg": os.getloadavg()[0]})
                print(f"samples q{q['question_id']} {name} {strategy}: {r.elapsed:.2f} s", flush=True)
    results["samples"] = rows


# ----------------------------------------------------------------------------------------- tables
def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def summarize(results: dict, judge_name: str) -> dict:
    """Per category and overall: per program the mean speed-up over normal, answer length, tokens,
    capped runs, and net win rate per verdict key."""
    from epic_kernel.programs.judge import net_win_rate

    qs = list(results.get("questions", {}).values())
    programs = results.get("meta", {}).get("programs", list(ALL_PROGRAMS))
    out: dict[str, Any] = {}
    for cat in [*CATEGORIES, "suitable", "overall"]:
        group = [q for q in qs if cat == "overall" or q["category"] == cat
                 or (cat == "suitable" and q["category"] in SUITABLE)]
        if not group:
            continue
        row: dict[str, Any] = {"questions": len(group)}
        for name in programs:
            speedups, chars, toks, capped, verdicts = [], [], [], 0, {}
            for q in group:
                r, base = q["runs"].get(name), q["runs"].get("normal")
                if r is None or not r["ok"]:
                    continue
                chars.append(len(r["answer"]))
                toks.append(r["tokens_out"])
                capped += r["capped"] > 0
                if base is not None and base["ok"] and r["elapsed"] > 0:
                    speedups.append(base["elapsed"] / r["elapsed"])
                for key, v in (q.get("verdicts_by_judge", {}).get(judge_name, {}).get(name) or {}).items():
                    verdicts.setdefault(key, []).append(v["verdict"])
            row[name] = {"speedup": _mean(speedups), "answer_chars": _mean(chars), "tokens_out": _mean(toks),
                         "capped": capped, "net_win": {k: net_win_rate(v) for k, v in verdicts.items()}}
        out[cat] = row
    # SoT's speed-up split by whether normal decoding was capped (a cut answer)
    split: dict[str, Any] = {}
    for cut in (True, False):
        ss = [q["runs"]["normal"]["elapsed"] / q["runs"]["sot"]["elapsed"] for q in qs
              if "sot" in q["runs"] and "normal" in q["runs"] and q["runs"]["sot"]["ok"] and q["runs"]["normal"]["ok"]
              and (q["runs"]["normal"]["capped"] > 0) == cut]
        split["normal capped" if cut else "normal uncapped"] = {"questions": len(ss), "sot_speedup": _mean(ss)}
    out["_sot_by_normal_cap"] = split
    return out


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def _nw(v: dict | None) -> str:
    if not v or v.get("net_win_rate") is None:
        return "-"
    return f"{v['net_win_rate']:+.2f}" + (f" ({v['unparsed']}?)" if v["unparsed"] else "")


def markdown(results: dict, judge_name: str) -> str:
    meta = results.get("meta", {})
    s = results.get("summary", {})
    programs = [p for p in meta.get("programs", ALL_PROGRAMS) if p != "normal"]
    lines = ["# Decoding programs on Vicuna-80: speed-up and net win rate", "",
             f"Answer model: {meta.get('backend', '?')}; judge: {judge_name or 'none'}; machine: "
             f"{meta.get('machine', '?')}; when: {meta.get('when', '?')}; load average at start "
             f"{_f(meta.get('load_avg'))}; settings: {json.dumps(meta.get('settings', {}))}.", "",
             "Speed-up = normal decoding's wall time / the program's, mean over the category's questions (the "
             "paper's); chars = mean answer length; net win = (wins - losses) / questions vs normal decoding "
             "((n?) = n unparsed verdicts, counted as questions, never as wins).", ""]
    keys = sorted({k for row in s.values() if isinstance(row, dict) for p in programs
                   for k in (row.get(p) or {}).get("net_win", {})})
    cats = [c for c in s if not c.startswith("_")]
    head = "| category | n | normal chars | " + " | ".join(programs) + " |"
    lines += ["Speed-up over normal decoding (mean answer chars):", "", head, "|" + "---|" * (len(programs) + 3)]
    for cat in cats:
        row = s[cat]
        cells = [cat, str(row["questions"]), _f((row.get("normal") or {}).get("answer_chars"), ".0f")]
        for p in programs:
            r = row.get(p) or {}
            cells.append(f"{_f(r.get('speedup'))}x ({_f(r.get('answer_chars'), '.0f')})")
        lines.append("| " + " | ".join(cells) + " |")
    if keys:
        lines += ["", f"Net win rate vs normal decoding ({' / '.join(keys)}):", "",
                  "| category | n | " + " | ".join(programs) + " |", "|" + "---|" * (len(programs) + 2)]
        for cat in cats:
            row = s[cat]
            cells = [cat, str(row["questions"])]
            for p in programs:
                nw = (row.get(p) or {}).get("net_win") or {}
                cells.append(" / ".join(_nw(nw.get(k)) for k in keys))
            lines.append("| " + " | ".join(cells) + " |")
    split = s.get("_sot_by_normal_cap", {})
    if split:
        lines += ["", "SoT's speed-up by whether normal decoding used its whole max_tokens (a cut answer): "
                  + "; ".join(f"{k}: {_f(v['sot_speedup'])}x over {v['questions']} questions" for k, v in split.items())]
    for name, rel in results.get("reliability", {}).items():
        lines += ["", f"Judge reliability ({name}, {rel['pairs']} control pairs: a complete answer vs the same cut "
                  f"in half, both orders): accuracy {_f(rel['accuracy'])}, order-consistency "
                  f"{_f(rel['order_consistency'])}, unparsed pairs {rel['unparsed']}, unreadable replies "
                  f"{_f(rel['sides_unparsed'])}, W/T/L {rel['win']}/{rel['tie']}/{rel['loss']}."]
    if results.get("samples"):
        lines += ["", "| question | program | one by one (s) | parallel (s) | speed-up | largest batch |", "|---|---|---|---|---|---|"]
        rows = results["samples"]
        for r in rows:
            if r["strategy"] != "opportunistic":
                continue
            seq = next((x for x in rows if x["question_id"] == r["question_id"] and x["program"] == r["program"]
                        and x["strategy"] == "sequential"), None)
            sp = seq["elapsed"] / r["elapsed"] if seq and r["elapsed"] > 0 else None
            lines.append(f"| {r['question_id']} | {r['program']} | {_f(seq['elapsed'] if seq else None)} | "
                         f"{_f(r['elapsed'])} | {_f(sp)}x | {r['max_batch']} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    from epic_kernel.programs.decoding import DECODING_PROGRAMS, DecodeSettings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", help=f"comma-separated: {', '.join(PARTS)}, or all")
    ap.add_argument("--questions", default="subset", help="subset (the first --per-category of each), all, or ids")
    ap.add_argument("--per-category", type=int, default=2)
    ap.add_argument("--programs", default=",".join(ALL_PROGRAMS))
    ap.add_argument("--backend", default="transformers", help="transformers, sim, or an OpenAI-compatible base URL")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--judge", default="llama-server", help="none, self, llama-server, or a base URL")
    ap.add_argument("--judge-model", default="smollm2")
    ap.add_argument("--protocols", default="fastchat,llmzoo")
    ap.add_argument("--metrics", default="general")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--expand-with", default="point", help="SoT's expansion prompt (point suits SmolLM2)")
    ap.add_argument("--control-pairs", type=int, default=12)
    ap.add_argument("--sample-questions", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few minutes: 2 questions, short answers")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("--name", default="decoding")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    parts = PARTS if args.part == "all" else tuple(p for p in args.part.split(",") if p)
    if bad := [p for p in parts if p not in PARTS]:
        ap.error(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    programs = [p for p in args.programs.split(",") if p]
    if bad := [p for p in programs if p not in DECODING_PROGRAMS]:
        ap.error(f"unknown program(s) {', '.join(bad)}; choose from {', '.join(DECODING_PROGRAMS)}")
    if "normal" not in programs:
        programs.insert(0, "normal")
    if args.quick:
        args.questions = args.questions if args.questions != "subset" else "1,11"
        args.max_tokens, args.n = min(args.max_tokens, 48), min(args.n, 3)
        args.control_pairs, args.sample_questions = min(args.control_pairs, 4), min(args.sample_questions, 1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    path = out / f"{args.name}.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    settings = DecodeSettings(max_tokens=args.max_tokens, n=args.n, temperature=args.temperature, seed=args.seed,
                              expand_with=args.expand_with)
    questions = pick(load_questions(QUESTIONS), args.questions, args.per_category)
    protocols = tuple(p for p in args.protocols.split(",") if p)
    metrics = tuple(m for m in args.metrics.split(",") if m)
    m = bench_core.machine()
    with ExitStack() as stack:
        backend = answer_backend(args.backend, args.model, args.threads) if set(parts) - {"report"} else None
        from epic_kernel.llm.registry import describe_spec
        results["meta"] = {**results.get("meta", {}), "programs": programs, "settings": settings.__dict__,
                           "backend": describe_spec(backend, None if args.backend == "sim" else args.model)
                           if backend is not None
                           else results.get("meta", {}).get("backend", "?"),
                           "machine": f"{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}",
                           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg": os.getloadavg()[0],
                           "argv": sys.argv[1:] if argv is None else argv,
                           "seeds": f"sample k of a sampled program uses seed {args.seed} + k"}
        needs_judge = {"judge", "reliability"} & set(parts) and args.judge != "none"
        judge_b, judge_name = (judge_backend(args.judge, args.judge_model, backend, stack, out) if needs_judge
                               else (None, results.get("meta", {}).get("judge", "")))
        if judge_name:
            results["meta"]["judge"] = judge_name

        def save() -> None:
            write_results(out, args.name, results)

        async def go() -> None:
            if "answer" in parts:
                await answer(questions, programs, backend, settings, results, save, args.rerun)
            if "judge" in parts and judge_b is not None:
                await judge(results, judge_b, judge_name, protocols, metrics, save)
            if "reliability" in parts and judge_b is not None:
                await check_judge(judge_b, judge_name, args.control_pairs, results)
            if "samples" in parts:
                await samples(questions[: args.sample_questions], backend, settings, results)

        asyncio.run(go())
    results["summary"] = summarize(results, judge_name)
    md = markdown(results, judge_name)
    write_results(out, args.name, results, md)
    print(md)
    return results


if __name__ == "__main__":
    main()
