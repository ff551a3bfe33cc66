"""Failures of a run: the one place a failure record is built and the one place failures are told.

A failure is a `CallRecord` in state "failed": a dispatched call that raised, or an operation of the
program itself (`id == 0`: a missing name, a bad unpack, `1/0`). `failure_record` builds or completes
one; `group_failures` folds failures that share a line, a callee and an error (one bad loop body
fails once per iteration, but is one mistake); the renderings below all start from those groups:

- `failure_message`: the text of the EpicError a run raises (what `run()` and the magics show): the
  failure the run stopped at (the first in program order, as Python raises it), what became of the
  calls, then the other failures found before the run stopped;
- `failure_lines`: `file:line: fn(args) -> Error: message` with the source line (what `epic run` prints);
- `error_lines`: `Name: first line` and the rest, as a notebook's error output shows an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..text import clip
from .events import CallRecord, clock

__all__ = ["FailureGroup", "error_lines", "failure_lines", "failure_message", "failure_record", "group_failures"]

LIMIT = 20                   # distinct failures told; the rest are counted (all are on EpicError.failures)

# operations of the program named in messages ("ZeroDivisionError: ... (in /)")
_OPS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
        "getitem": "subscript", "getattr": "attribute access", "contains": "in", "not_contains": "not in", "lt": "<",
        "le": "<=", "gt": ">", "ge": ">=", "neg": "unary -", "assert_": "assert", "format": "f-string"}


def failure_record(error: BaseException, *, fn: str, line: int | None, filename: str,
                   rec: CallRecord | None = None) -> CallRecord:
    """`rec` (a dispatched call), or a new record of an operation of the program (id 0), marked as
    failed with `error` at `filename:line`. The caller decides which list it joins."""
    if rec is None:
        now = clock()
        rec = CallRecord(id=0, fn=fn, site_line=line, start=now, end=now)
    rec.error = error
    rec.state = "failed"
    rec.site = f"{filename}:{line}" if line else filename
    rec.result_preview = f"{type(error).__name__}: {error}"[:200]
    return rec


@dataclass(slots=True)
class FailureGroup:
    """Failures that are one mistake: the same line, callee and error."""

    line: int | None
    fn: str
    error_type: str
    message: str
    external: bool                       # a dispatched call (llm, a tool), not an operation of the program
    records: list[CallRecord] = field(default_factory=list)

    @property
    def what(self) -> str:
        return f"{self.error_type}: {self.message}" if self.error_type else self.message

    @property
    def args(self) -> str:
        return self.records[0].args_preview or ""


def group_failures(failures: list[CallRecord]) -> list[FailureGroup]:
    """Failures folded by (line, callee, error), in the order they first happened."""
    groups: dict[tuple, FailureGroup] = {}
    for rec in failures:
        e = rec.error
        etype, msg = (type(e).__name__, str(e)) if e is not None else ("", rec.result_preview or "failed")
        key = (rec.site_line, rec.fn, etype, msg, bool(rec.id))
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(rec.site_line, rec.fn, etype, msg, bool(rec.id))
        group.records.append(rec)
    return list(groups.values())


class _Run(Protocol):
    failures: list[CallRecord]
    calls: list[CallRecord]
    first_line: int


def failure_message(ev: _Run, source: str = "", failures: list[CallRecord] | None = None) -> str:
    """The EpicError's text. First the failure the run stopped at (`failures[0]`: the first in
    program order, the error Python raises), where (line and its code), what was called, what went
    wrong; then what became of the calls (finished ones are kept, later ones cancelled); then the
    other failures found before the run stopped, one line per distinct failure."""
    failures = ev.failures if failures is None else failures
    code = source.splitlines()
    groups = group_failures(failures[:1]) + group_failures(failures[1:])
    lines = [_told(groups[0], ev.first_line, code)]
    done = sum(1 for c in ev.calls if c.state == "done")
    cancelled = sum(1 for c in ev.calls if c.state == "cancelled")
    status = f": {done} call{'s' * (done != 1)} finished and kept" if ev.calls else ""
    if cancelled:
        status += f", {cancelled} cancelled (work after the error, which Python never reaches)"
    lines.append(f"  the run stopped there{status}")
    rest = groups[1:]
    if rest:
        lines.append("  also failed before the run stopped:")
    for g in rest[:LIMIT]:
        lines.append("    " + _told(g, ev.first_line, code))
    if len(rest) > LIMIT:
        lines.append(f"    ... and {len(rest) - LIMIT} more (see EpicError.failures)")
    return "\n".join(lines)


def _told(g: FailureGroup, first_line: int, code: list[str]) -> str:
    """`line 3: `z = x / 0` ZeroDivisionError: division by zero (in /)`: one distinct failure."""
    call = f" {g.fn}({g.args[:60]}) ->" if g.external else ""
    text = ""
    if g.line and 0 < g.line - first_line + 1 <= len(code):
        text = f" `{code[g.line - first_line].strip()}`"
    where = f"line {g.line}" if g.line else "the result"
    op = f" (in {_OPS[g.fn]})" if not g.external and g.fn in _OPS else ""
    times = f" (x{len(g.records)})" if len(g.records) > 1 else ""
    return f"{where}:{text}{call} {g.what}{op}{times}"


def failure_lines(failures: list[CallRecord], filename: str, source_lines: list[str]) -> list[str]:
    """`file:line: fn(args) -> Error: message` per distinct failure, with its source line below;
    an operation of the program (no call) is `file:line: Error: message`."""
    out = []
    groups = group_failures(failures)
    for i, g in enumerate(groups):
        if i == LIMIT:
            out.append(f"... and {len(groups) - LIMIT} more kinds of failure (see --json)")
            break
        where = f"{filename}:{g.line}" if g.line else filename
        n = len(g.records)
        more = f" (and {n - 1} more call{'s' * (n > 2)} like it)" if n > 1 else ""
        if g.records[0].id == 0 and not g.args:
            out.append(f"{where}: {g.what}{more}")
        else:
            out.append(f"{where}: {g.fn}({clip(g.args, 50)}) -> {g.what}{more}")
        if g.line and 0 < g.line <= len(source_lines) and source_lines[g.line - 1].strip():
            out.append(f"    {source_lines[g.line - 1].strip()}")
    return out


def error_lines(name: str, text: str, *, color: bool = True) -> list[str]:
    """An exception as a notebook shows it without a traceback: `Name: first line`, then the rest."""
    first, *rest = text.splitlines() or [""]
    head = f"\x1b[0;31m{name}\x1b[0m" if color else name
    return [f"{head}: {first}", *rest]

