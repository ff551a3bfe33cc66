"""The teaching views' side of `%%epic`: `--step` (the reduction stepper, `%epic step`) and
`--compare` (the cell under every strategy). A mixin of `EpicMagics`, kept apart so the magic's
run path stays readable; see widgets/_stepper.py and widgets/_compare.py for the views.
"""

from __future__ import annotations

import asyncio
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from epic_kernel.errors import EpicInterrupted, EpicSyntaxError

from ._errors import short, short_syntax_error

__all__ = ["TeachingMixin", "cell_number", "ends_with_semicolon", "wants_compare"]

_LAST = "_epic_last"


class TeachingMixin:
    """`--step` and `--compare` for EpicMagics (which provides shell, settings, epic_cell, last)."""

    shell: Any
    settings: Any
    last: Any
    runs: int
    last_recording: dict[str, Any] | None

    def _show_stepper(self, job: Any, res: Any) -> None:
        """`--step`: display the recorded reduction (also after a failure or an interrupt)."""
        if job.recorder is None or job.recorder.ev is None:
            return
        from epic_kernel.widgets import Stepper
        from IPython.display import display

        from epic_kernel.runtime.recorder import show_value

        value = "" if res is None or res.value is None else show_value(res.value)
        self.last_recording = job.recorder.recording(title=job.title, source=job.source, first_line=2,
                                                     value=value, state=getattr(res, "state", ""))
        if res is not None:       # the token views of calls that asked for logprobs=
            from epic_kernel.widgets._tokens import call_tokens

            self.last_recording["tokens"] = call_tokens(res.calls, res.start)
        stepper = Stepper(self.last_recording)
        handle = getattr(job.view, "handle", None)
        if handle is not None:                  # the live view showed the run: the stepper takes its place
            handle.update(stepper)
        else:
            display(stepper)

    # -------------------------------------------------------------------------------- %epic step
    def _step(self) -> Any:
        from epic_kernel.widgets import Stepper

        if self.last_recording is None:
            raise UsageError("%epic step: no recorded run yet; run a cell with `%%epic --step` to record "
                             "its reduction")
        return Stepper(self.last_recording)

    # -------------------------------------------------------------------------------- --compare
    def _compare_sync(self, line: str, cell: str) -> Any:
        from epic_kernel.llm.compare import compare

        args, kwargs, title = self._compare_args(line)
        try:
            cmp = compare(cell, **kwargs)
        except EpicSyntaxError as e:
            raise short_syntax_error(e) from None
        return self._compare_done(args, cmp, title, cell)

    async def _compare_async(self, line: str, cell: str) -> Any:
        from epic_kernel.llm.compare import compare_async

        args, kwargs, title = self._compare_args(line)
        progress = _ProgressLine(title) if self._compare_kind(args) in ("widget", "html", "auto") else None
        if progress is not None:
            kwargs["on_progress"] = progress.update
        try:
            cmp = await compare_async(cell, **kwargs)
        except EpicSyntaxError as e:
            raise short_syntax_error(e) from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                me.uncancel()
            if progress is not None:
                progress.stopped("interrupted: the comparison stopped")
            raise short(EpicInterrupted("interrupted: the comparison stopped", [], None)) from None
        return self._compare_done(args, cmp, title, cell, progress)

    def _compare_kind(self, args: Any) -> str:
        kind = (args.view or self.settings.view or "auto").lower()
        if kind == "auto" and type(self.shell).__name__ != "ZMQInteractiveShell":
            return "text"
        return kind

    def _compare_args(self, line: str) -> tuple[Any, dict[str, Any], str]:
        args = parse_argstring(self.epic_cell, line)
        for flag, given in (("--strategy", args.strategy), ("--step", args.step), ("--trace", args.trace),
                            ("--cache", args.cache)):
            if given:
                raise UsageError(f"%%epic --compare runs the cell under every strategy: drop {flag}")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out {args.out}: not a Python variable name")
        backend_name = args.backend or self.settings.backend
        self.runs += 1
        count = cell_number(self.shell)
        kwargs = {"backend": self._backend_spec(backend_name) if backend_name else None,
                  "model": args.model or self.settings.model, "namespace": self.shell.user_ns,
                  "filename": f"<epic cell {count}>" if count else "<epic cell>", "first_line": 2}
        return args, kwargs, f"In [{count}]" if count else f"run {self.runs}"

    def _compare_done(self, args: Any, cmp: Any, title: str, cell: str, progress: Any = None) -> Any:
        """Show the comparison (in place of the progress line); names and `_epic_last` from the
        runs; a disagreement fails the cell."""
        from epic_kernel.widgets import CompareView
        from IPython.display import display

        from epic_kernel.llm.compare import CompareMismatch

        view = CompareView(cmp, title=title)
        kind = self._compare_kind(args)
        if kind == "text":
            print(repr(view))
        elif kind != "none":
            if progress is not None and progress.handle is not None:
                progress.handle.update(view)
            else:
                display(view)
        ref, opp = cmp.run("sequential"), cmp.run("opportunistic")
        ns = self.shell.user_ns
        if ref is not None and ref.result is not None:
            ns.update(ref.result.namespace)
        last = opp.result if opp is not None and opp.result is not None else (ref.result if ref else None)
        ns[_LAST] = last
        self.last = last
        if args.out:
            ns[args.out] = cmp
        if not cmp.ok:
            raise short(CompareMismatch("the strategies do not agree:\n  " + "\n  ".join(cmp.problems())))
        return None if ends_with_semicolon(cell) else cmp.value



class _ProgressLine:
    """`--compare`'s progress while it runs: which run is going and its calls done/total, in one
    display that the finished view then replaces (updates at most ~8 a second)."""

    def __init__(self, title: str):
        self.title = title
        self.handle: Any = None
        self.last = 0.0

    def update(self, p: Any) -> None:
        import time

        from IPython.display import HTML, display

        now = time.monotonic()
        if self.handle is not None and now - self.last < 0.12 and p.done not in (0, p.total):
            return
        self.last = now
        bar = (f'<progress value="{p.done}" max="{p.total}"></progress>' if p.total else "")
        html = (f'<div class="epic-compare-progress" data-run="{p.index}" data-strategy="{_escape(p.strategy)}">'
                f"<b>strategy comparison</b> {_escape(self.title)} · {_escape(p.text())}{bar}</div>")
        bundle = HTML(html)
        if self.handle is None:
            self.handle = display(bundle, display_id=True)
        else:
            self.handle.update(bundle)

    def stopped(self, text: str) -> None:
        from IPython.display import HTML

        if self.handle is not None:
            self.handle.update(HTML(f'<div class="epic-compare-progress" data-run="stopped">{_escape(text)}</div>'))


def _escape(text: Any) -> str:
    import html

    return html.escape(str(text), quote=True)


def wants_compare(line: str) -> bool:
    return "--compare" in line.split()


def cell_number(shell: Any) -> int | None:
    """The running cell's In[n]: IPython counts the cell before running it (prompt_count is n)."""
    try:
        n = shell.displayhook.prompt_count
    except AttributeError:
        return None
    return n if isinstance(n, int) and n > 0 else None


def ends_with_semicolon(cell: str) -> bool:
    lines = [ln for ln in cell.rstrip().splitlines() if ln.strip()]
    return bool(lines) and lines[-1].split("#", 1)[0].rstrip().endswith(";")
