"""`epic demo`: a small program run sequentially then opportunistically, live, with the speedup."""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import EpicError, ModelNotAvailable
from .output import INSTALL_LOCAL, calls_table, err, model_hint, rich_console
from .run import check_backend

__all__ = ["DEMO_PROGRAM", "cmd_demo"]

# The program `epic demo` shows when examples/demo.py is not at hand (an installed wheel).
# Keep it identical to examples/demo.py (tests/test_cli.py checks).
DEMO_PROGRAM = '''\
# What `epic demo` runs: a small trip planner, written as plain sequential Python.
#
#     epic run examples/demo.py --backend sim
#
# Three independent questions, a follow-up for each answer, and a final call that needs them all.
# Opportunistic evaluation dispatches every call as soon as its prompt is known: the three
# questions run together, each follow-up starts as soon as its own answer is in, and only the
# final plan waits for everything.
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905

city = "Lisbon"
questions = [
    f"Name one famous sight in {city}. Answer in one sentence.",
    f"Name one typical dish of {city}. Answer in one sentence.",
    f"Which month is best for visiting {city}? Answer in one sentence.",
]

answers = [llm(q, max_tokens=32) for q in questions]
details = [llm(f"{a.strip()}\\nAdd one practical tip about this, in one sentence.", max_tokens=32)
           for a in answers]

notes = "\\n".join([f"- {a.strip()} {d.strip()}" for a, d in zip(answers, details)])
plan = llm(f"Notes about {city}:\\n{notes}\\nWrite a two-sentence plan for one day in {city}.", max_tokens=96)
plan
'''


def _demo_source() -> tuple[str, str]:
    """examples/demo.py in a source checkout, else the embedded copy; minus the linter's pragma line."""
    source, name = DEMO_PROGRAM, "demo.py"
    path = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    if path.is_file():
        with contextlib.suppress(OSError):
            source, name = path.read_text(encoding="utf-8"), "examples/demo.py"
    return "".join(line for line in source.splitlines(keepends=True) if not line.startswith("# ruff:")), name


def _demo_backend(args: argparse.Namespace, console: Any) -> tuple[Any, str]:
    """The backend for the demo: the one asked for, else local SmolLM2, else the sim (with a note)."""
    from ..llm.registry import resolve_backend

    if args.backend is not None:
        return resolve_backend(args.backend, {"model": args.model}), args.backend
    what = args.model or "SmolLM2-135M-Instruct"
    try:
        if console is not None:
            from rich.markup import escape

            with console.status(f"loading {escape(what)} (local transformers backend)..."):
                backend = resolve_backend("transformers", {"model": args.model})
        else:
            err(f"loading {what} (local transformers backend)...")
            backend = resolve_backend("transformers", {"model": args.model})
        return backend, "transformers"
    except (ModelNotAvailable, ImportError, OSError) as e:
        note = (f"The local model could not be loaded: {e}\n\nTo run the demo on a real model, install:\n    "
                f"{INSTALL_LOCAL}\n\nFalling back to the simulated model (--backend sim): deterministic "
                "made-up text with a GPU-like latency model, so the timings are still meaningful.")
        if console is not None:
            from rich.panel import Panel
            from rich.text import Text

            console.print(Panel(Text(note), title="note: using the simulated model", border_style="yellow"))
        else:
            err("NOTE: " + note)
        return resolve_backend("sim"), "sim"


class _LiveCalls:
    """Observer for one run: collects CallRecords; the Live display polls `render` ~10 times a second."""

    def __init__(self, strategy: str):
        self.strategy = strategy
        self.calls: list = []
        self.t0 = time.perf_counter()
        self.steps = 0
        self.state = "starting"
        self.lock = threading.Lock()

    def __call__(self, ev: Any) -> None:
        kind = ev.kind
        if kind == "call.dispatch" and ev.call is not None:
            with self.lock:
                self.calls.append(ev.call)
        elif kind == "steps":
            self.steps = ev.data.get("steps", self.steps)
        elif kind == "run.start":
            self.t0 = ev.t
            self.state = "running"
        elif kind == "run.end":
            self.steps = ev.data.get("steps", self.steps)
            self.state = "done" if ev.data.get("ok") else "failed"

    def render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        with self.lock:
            calls = list(self.calls)
        states = [c.state for c in calls]
        busy = sum(s in ("queued", "running") for s in states)
        head = Text.assemble(
            (f"{self.strategy:<14}", "bold"), f" {self.state:<8} ",
            f"{time.perf_counter() - self.t0 if self.state == 'running' else self._elapsed():6.2f} s  ",
            f"{self.steps} steps  calls: ", (f"{busy} in flight", "cyan"), ", ",
            (f"{states.count('done')} done", "green"),
            *([", ", (f"{states.count('failed')} failed", "red")] if "failed" in states else []),
        )
        return Group(head, calls_table(calls, self.t0))

    def _elapsed(self) -> float:
        ends = [c.end for c in self.calls if c.end is not None]
        return (max(ends) - self.t0) if ends else 0.0


def _demo_run(source: str, strategy: str, backend: Any, console: Any) -> Any:
    from ..runtime.api import run

    obs = _LiveCalls(strategy)
    if console is None:
        err(f"running under {strategy}...")
        return run(source, strategy=strategy, backend=backend, observers=[obs], filename="demo.py")
    from rich.live import Live

    with Live(console=console, get_renderable=obs.render, refresh_per_second=10, transient=False):
        res = run(source, strategy=strategy, backend=backend, observers=[obs], filename="demo.py")
    if not console.is_terminal:        # off a terminal Live prints its last frame without a newline
        console.line()
    return res


def _show_program(console: Any, source: str, shown_name: str) -> None:
    if console is not None:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.syntax import Syntax

        console.rule("[bold]epic demo: opportunistic evaluation of a sequential-looking LLM program")
        console.print("The program below is plain Python. We run it twice on the same model: first "
                      "[bold]sequential[/bold] (each call awaited in turn, like plain Python), then "
                      "[bold]opportunistic[/bold] (every call dispatched as soon as its inputs are known).")
        console.print(Panel(Syntax(source, "python", line_numbers=True, word_wrap=True), title=escape(shown_name)))
    else:
        print(source)


def cmd_demo(args: argparse.Namespace) -> int:
    """Show the program, run it sequentially then opportunistically (live), print the speedup."""
    from ..runtime.api import run

    if not check_backend("epic demo", args.backend):
        return 2
    console = rich_console()
    source, shown_name = _demo_source()
    _show_program(console, source, shown_name)
    try:
        backend, label = _demo_backend(args, console)
    except (ValueError, TypeError) as e:
        err(f"epic demo: {e}")
        return 2
    desc = backend.describe() if hasattr(backend, "describe") else label
    if label != "sim":
        # one tiny call first, so neither timed run pays for warm-up (kernels, allocator, caches)
        with contextlib.suppress(EpicError):
            run('llm("Hi", max_tokens=2)', backend=backend)

    results = {}
    try:
        for strategy in ("sequential", "opportunistic"):
            if console is not None:
                from rich.markup import escape

                console.rule(f"[bold]{strategy}[/bold] on {escape(desc)}")
            results[strategy] = _demo_run(source, strategy, backend, console)
    except EpicError as e:
        err(f"epic demo: the {strategy} run failed:\n{e}")
        hint = model_hint(e)
        if hint:
            err(hint)
        return 1

    _show_speedup(console, results["sequential"], results["opportunistic"], desc, label)
    return 0


def _show_speedup(console: Any, seq: Any, opp: Any, desc: str, label: str) -> None:
    """The answer, the two runs side by side and the speedup (with a word on what it means here)."""
    speedup = seq.elapsed / opp.elapsed if opp.elapsed > 0 else float("inf")
    if console is not None:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        console.rule("[bold]result")
        console.print(Panel(Text(str(opp.value).strip()), title="the answer", border_style="green"))
        t = Table(title="sequential vs opportunistic", title_justify="left")
        for col in ("strategy", "wall time", "calls", "steps", "parallelism"):
            t.add_column(col, justify="right" if col != "strategy" else "left")
        for r in (seq, opp):
            t.add_row(r.strategy, f"{r.elapsed:.2f} s", str(len(r.calls)), str(r.steps), f"{r.parallelism:.1f}x")
        console.print(t)
        same = "the same answer" if seq.value == opp.value else (
            "different answers (this model is not batch-invariant: batched decoding can flip a near-tie)"
            if "not batch-invariant" in desc else "different answers")
        console.print(f"[bold green]speedup: {speedup:.2f}x[/bold green] (opportunistic over sequential, "
                      f"{seq.elapsed:.2f} s -> {opp.elapsed:.2f} s; both runs gave {same}) on {escape(desc)}")
        if label == "sim":
            console.print("[dim]simulated model: try `epic demo` with the local model installed for real text[/dim]")
        elif speedup < 1.5:
            console.print("[dim]a small gain: on this CPU a batch decodes hardly faster than one request "
                          "(fp32 weights are compute-bound on few cores; bf16, the default where the CPU has "
                          "native bf16, is where batching is nearly free). On a GPU, or with --backend openai "
                          "against a server, independent calls overlap far better.[/dim]")
    else:
        print("answer:", str(opp.value).strip())
        print(seq.summary())
        print(opp.summary())
        print(f"speedup: {speedup:.2f}x (opportunistic over sequential) on {desc}")
