"""`epic run FILE.py`: compile and run a file; value on stdout, calls and summary on stderr."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..errors import EpicError, EpicInterrupted, EpicSyntaxError
from ..llm.registry import parse_backend
from ..runtime.failures import failure_lines
from .jsonout import result_json, syntax_error_json
from .output import calls_table, err, model_hint, print_value, rich_console, syntax_message

__all__ = ["check_backend", "cmd_run"]


def check_backend(command: str, name: str | None) -> bool:
    """True when `name` is a backend name the registry accepts (or no name); else says why on stderr."""
    if name is None:
        return True
    try:
        parse_backend(name)
    except ValueError as e:
        err(f"{command}: {e}")
        return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    from ..runtime.api import run

    path = Path(args.file)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as e:
        err(f"epic run: cannot read {args.file}: {e.strerror or e}")
        return 2
    if not check_backend("epic run", args.backend):
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
        message = syntax_message(e, filename)
        err(message)
        if args.json:
            print(json.dumps(syntax_error_json(message, args.strategy, e)))
        return 2
    except EpicInterrupted as e:
        res = e.result
        error = str(e) or "interrupted"
        err(f"epic run: {error}")
        code = 130
    except EpicError as e:
        res = e.result
        error = str(e)
        failures = list(e.failures or [])
        err(f"epic run: {filename}: {error.splitlines()[0] if error else 'the program failed'}")
        for line in failure_lines(e.failures or [], filename, source_lines):
            err("  " + line)
        hint = model_hint(e)
        if hint:
            err("  " + hint)
        code = 1

    if args.trace_out and res is not None:
        try:
            Path(args.trace_out).write_text(res.trace_json(), encoding="utf-8")
        except OSError as e:
            err(f"epic run: cannot write the trace to {args.trace_out}: {e.strerror or e}")
            code = code or 1

    if args.json:
        print(json.dumps(result_json(res, args.strategy, error, failures), ensure_ascii=False))
        return code

    if res is None:
        return code
    out = rich_console(stderr=False)
    if code == 0:
        print_value(res.value, out)
    if args.quiet:
        return code
    console = rich_console(stderr=True)
    if console is not None:
        if res.calls:
            console.print(calls_table(res.calls, res.start, title="calls"))
        from rich.markup import escape

        console.print(f"[bold]{escape(res.summary())}[/bold]"
                      + (f"  (trace: {escape(args.trace_out)})" if args.trace_out else ""))
    else:
        if res.calls:
            err(res.calls_table())
        err(res.summary())
    return code
