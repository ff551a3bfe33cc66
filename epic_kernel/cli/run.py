"""`epic run FILE.py`: compile and run a file; value on stdout, calls and summary on stderr."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

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
    """Run the file; exit 0, 1 (calls failed), 2 (syntax error, bad usage) or 130 (interrupted)."""
    from ..runtime.api import run

    try:
        source = Path(args.file).read_text(encoding="utf-8")
    except OSError as e:
        err(f"epic run: cannot read {args.file}: {e.strerror or e}")
        return 2
    if not check_backend("epic run", args.backend):
        return 2
    filename = str(args.file)
    res, error, failures, code = None, None, [], 0
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with redirect:
            res = run(source, strategy=args.strategy, backend=args.backend, model=args.model,
                      namespace={}, filename=filename, max_calls=args.max_calls)
    except EpicSyntaxError as e:
        message = syntax_message(e, filename)
        err(message)
        if args.json:
            print(json.dumps(syntax_error_json(message, args.strategy, e)))
        return 2
    except EpicInterrupted as e:
        res, error, code = e.result, str(e) or "interrupted", 130
        err(f"epic run: {error}")
    except EpicError as e:
        res, error, failures, code = e.result, str(e), list(e.failures or []), 1
        _tell_failures(e, filename, source.splitlines())
    if args.trace_out and res is not None:
        try:
            Path(args.trace_out).write_text(res.trace_json(), encoding="utf-8")
        except OSError as e:
            err(f"epic run: cannot write the trace to {args.trace_out}: {e.strerror or e}")
            code = code or 1
    if args.json:
        print(json.dumps(result_json(res, args.strategy, error, failures), ensure_ascii=False))
    elif res is not None:
        _show(res, args, ok=code == 0)
    return code


def _tell_failures(e: EpicError, filename: str, source_lines: list[str]) -> None:
    """On stderr: the error's first line, then each distinct failure with its source line, then a hint."""
    error = str(e)
    err(f"epic run: {filename}: {error.splitlines()[0] if error else 'the program failed'}")
    for line in failure_lines(e.failures or [], filename, source_lines):
        err("  " + line)
    hint = model_hint(e)
    if hint:
        err("  " + hint)


def _show(res: Any, args: argparse.Namespace, *, ok: bool) -> None:
    """The value on stdout (when the run succeeded); the calls and the summary on stderr."""
    if ok:
        print_value(res.value, rich_console(stderr=False))
    if args.quiet:
        return
    console = rich_console(stderr=True)
    if console is None:
        if res.calls:
            err(res.calls_table())
        err(res.summary())
        return
    from rich.markup import escape

    if res.calls:
        console.print(calls_table(res.calls, res.start, title="calls"))
    console.print(f"[bold]{escape(res.summary())}[/bold]"
                  + (f"  (trace: {escape(args.trace_out)})" if args.trace_out else ""))
