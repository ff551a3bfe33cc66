"""`%%epic --decode`: one question under several decoding programs, side by side (a mixin of
`EpicMagics`, kept apart like `--step` and `--compare`; the view is widgets/_decoding.py).

    %%epic --decode normal,sot,sot-r,sot-stream --backend sim --judge sim
    How do I fall asleep faster?

The cell's text is the question. `--decode` alone runs the default set (normal, SoT, SoT-R,
streaming SoT); `--judge B` judges every answer against normal decoding's on backend B (a name, a
variable holding a Backend, or `self` for the answer backend). `--out VAR` keeps the
DecodingComparison (also in `_epic_decode`). Sets of questions, sampling settings and LLMZoo's
metrics: `epic_kernel.decode_compare(...)` from Python, which shows the same view.
"""

from __future__ import annotations

import asyncio
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from epic_kernel.errors import EpicInterrupted

from ._errors import short
from ._teaching import cell_number

__all__ = ["DecodeMixin", "wants_decode"]

_LAST_DECODE = "_epic_decode"


class DecodeMixin:
    """`--decode` for EpicMagics (which provides shell, settings, epic_cell, runs, _backend_spec)."""

    shell: Any
    settings: Any
    runs: int

    def _decode_sync(self, line: str, cell: str) -> Any:
        from epic_kernel.programs.decoding import decode_compare

        args, question, kwargs, title = self._decode_args(line, cell)
        return self._decode_done(args, decode_compare(question, **kwargs), title, shown=None)

    async def _decode_async(self, line: str, cell: str) -> Any:
        from epic_kernel.programs.decoding import decode_compare_async

        args, question, kwargs, title = self._decode_args(line, cell)
        live = self._decode_live(args, title)
        try:
            cmp = await decode_compare_async(question, on_update=live.update if live else None, **kwargs)
        except (asyncio.CancelledError, KeyboardInterrupt):
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                me.uncancel()
            raise short(EpicInterrupted("interrupted: the decoding comparison stopped", [], None)) from None
        return self._decode_done(args, cmp, title, shown=live)

    def _decode_args(self, line: str, cell: str) -> tuple[Any, str, dict[str, Any], str]:
        from epic_kernel.programs.decoding import DECODING_PROGRAMS

        args = parse_argstring(self.epic_cell, line)
        for flag, given in (("--strategy", args.strategy), ("--step", args.step), ("--trace", args.trace),
                            ("--compare", args.compare)):
            if given:
                raise UsageError(f"%%epic --decode runs each decoding program on its own: drop {flag}")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out {args.out}: not a Python variable name")
        programs = [p.strip() for p in args.decode.split(",") if p.strip()]
        unknown = [p for p in programs if p not in DECODING_PROGRAMS]
        if unknown or not programs:
            raise UsageError(f"--decode {args.decode}: unknown decoding program {', '.join(unknown) or '(none)'}; "
                             f"choose from {', '.join(DECODING_PROGRAMS)}, comma-separated")
        question = cell.strip()
        if not question:
            raise UsageError("%%epic --decode: the cell holds the question to answer; it is empty")
        backend_name = args.backend or self.settings.backend
        judge = None
        if args.judge:
            judge = "self" if args.judge == "self" else self._backend_spec(args.judge)
        self.runs += 1
        count = cell_number(self.shell)
        kwargs = {"programs": programs, "backend": self._backend_spec(backend_name) if backend_name else None,
                  "model": args.model or self.settings.model, "judge": judge}
        return args, question, kwargs, f"In [{count}]" if count else f"run {self.runs}"

    def _decode_live(self, args: Any, title: str) -> _LiveDecode | None:
        kind = (args.view or self.settings.view or "auto").lower()
        if kind in ("none", "text") or type(self.shell).__name__ != "ZMQInteractiveShell":
            return None
        return _LiveDecode(title)

    def _decode_done(self, args: Any, cmp: Any, title: str, shown: _LiveDecode | None) -> Any:
        from epic_kernel.widgets import DecodeView
        from IPython.display import display

        view = DecodeView(cmp, title=title)
        kind = (args.view or self.settings.view or "auto").lower()
        if shown is not None:
            shown.update(cmp)                          # the final state replaces the live one
        elif kind == "text" or (kind == "auto" and type(self.shell).__name__ != "ZMQInteractiveShell"):
            print(repr(view))
        elif kind != "none":
            display(view)
        self.shell.user_ns[_LAST_DECODE] = cmp
        if args.out:
            self.shell.user_ns[args.out] = cmp
        return None


class _LiveDecode:
    """The view redrawn through a display handle after every run and verdict (the comparison's
    `on_update`, on the kernel's loop)."""

    def __init__(self, title: str):
        self.title = title
        self.handle: Any = None

    def update(self, cmp: Any) -> None:
        from epic_kernel.widgets import decode_html, decode_text
        from IPython.display import display

        bundle = {"text/html": decode_html(cmp, title=self.title), "text/plain": decode_text(cmp)}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


def wants_decode(line: str) -> bool:
    return any(w == "--decode" or w.startswith("--decode=") for w in line.split())
