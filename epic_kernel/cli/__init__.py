"""The `epic` command: `epic run | serve | demo | bench | install` (also `python -m epic_kernel`).

    epic run FILE.py [--strategy S] [--backend B] [--model M] [--max-calls N] [--json] [--trace-out PATH]
             [--quiet]
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
import os
import subprocess  # noqa: F401  (tests patch `epic_kernel.cli.subprocess.call`)
import sys

from ..runtime.evaluator import STRATEGIES
from ..runtime.options import MAX_CALLS
from ..runtime.options import parse_budget as _budget
from .bench import cmd_bench
from .demo import DEMO_PROGRAM, cmd_demo
from .jsonout import jsonable as _jsonable  # noqa: F401  (the name tests and older callers import)
from .output import err as _err
from .run import cmd_run
from .serve import cmd_serve

__all__ = ["DEMO_PROGRAM", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
    r.add_argument("--max-calls", type=_budget, default=MAX_CALLS, metavar="N",
                   help=f"the run's call budget (default {MAX_CALLS:,}; 'none': no budget): the call that "
                        "would go over it fails, which stops the run")
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
        from ..install import main as install_main
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
