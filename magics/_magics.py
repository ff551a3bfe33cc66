"""`%%epic` (run a cell as an epic program) and `%epic` (session config, the last run's trace).

Two paths run a cell, with one set of flags (`parse_argstring(self.epic_cell, line)`):

- async (ipykernel, terminal IPython with autoawait): the input transformer turns the cell into
  `await ...epic_async(line, body)`, so the program runs on the shell's loop. A heartbeat task
  wakes the loop every 0.1 s while it runs, so an interrupt's cancel lands at once (ipykernel#881).
- sync (`%autoawait off`, `ip.run_cell_magic`): `epic_cell` calls `epic_kernel.run`, which uses a
  private loop thread when the calling thread already runs a loop.

Either way the cell's names go into `user_ns`, `_epic_last` (and `--out VAR`) hold the RunResult
(the partial one after an error or an interrupt), and the last expression's value is returned,
so IPython shows it as `Out[n]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from epic_kernel.widgets import VIEW_KINDS as _VIEWS
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from epic_kernel.errors import EpicError, EpicInterrupted, EpicSyntaxError
from epic_kernel.runtime.api import RunHandle
from epic_kernel.runtime.options import STRATEGIES, parse_budget

from ._config import SessionConfig
from ._decoding import DecodeMixin, wants_decode
from ._errors import short, short_syntax_error
from ._teaching import TeachingMixin, cell_number, ends_with_semicolon, wants_compare

__all__ = ["EpicMagics"]

_HEARTBEAT_S = 0.1
_LAST = "_epic_last"


def _comms_during_cells() -> bool:
    """ipykernel >= 7.4 handles comm messages while an async cell awaits (ipykernel#1565)."""
    try:
        import ipykernel
    except ImportError:
        return False
    return tuple(ipykernel.version_info[:2]) >= (7, 4)


@dataclass
class _Job:
    """One `%%epic` cell being run."""

    args: Any
    source: str
    kwargs: dict[str, Any]                 # for run/run_async
    view: Any
    explicit: dict[str, Any]               # backend/model/strategy given on the cell's line
    suppress: bool                         # body ends with ';': show no Out[n]
    handle: RunHandle = field(default_factory=RunHandle)   # run_async puts its Evaluator here
    task: asyncio.Task | None = None
    recorder: Any = None                   # `--step`: records every reduction step
    title: str = ""


def _named(name: str) -> Any:
    """Give a magic's argument parser its real name (IPython uses the function's name)."""
    def deco(func: Any) -> Any:
        func.argcmd_name = name
        return func
    return deco


@magics_class
class EpicMagics(DecodeMixin, TeachingMixin, Magics):
    """The `%%epic` cell magic and the `%epic` line magic (register one instance per shell)."""

    def __init__(self, shell: Any = None):
        super().__init__(shell)
        self.settings = SessionConfig.from_env()
        self.last: Any = None               # RunResult of the latest cell (also user_ns["_epic_last"])
        self.last_view: Any = None
        self.last_recording: dict[str, Any] | None = None   # the latest `--step` run (`%epic step`)
        self.runs = 0

    # ----------------------------------------------------------------------------------- %%epic
    @magic_arguments()
    @_named("%epic")                          # usage line: `%%epic [--backend B] ...`, not `%epic_cell`
    @argument("--backend", metavar="B",
              help="sim | transformers | openai | replay:FILE, or the name of a variable holding a Backend "
                   "(default: %%epic config, else EPIC_BACKEND, else the local model)")
    @argument("--model", metavar="M", help="model name or path for the backend")
    @argument("--strategy", metavar="S", choices=STRATEGIES,
              help=f"evaluation strategy: {', '.join(STRATEGIES)} (default opportunistic)")
    @argument("--no-cache", action="store_true", help="do not use the on-disk answer cache for this cell")
    @argument("--cache", action="store_true",
              help="with --step: take answers from the cache (off by default there, so the stepper shows "
                   "the reduction as the run really goes; --compare never uses it)")
    @argument("--view", choices=_VIEWS,
              help="auto (widget in Jupyter, text in a terminal), widget, html, text or none")
    @argument("--out", metavar="VAR", help="also store the RunResult in VAR (it is always in _epic_last)")
    @argument("--max-calls", metavar="N", default=None,
              help="this cell's call budget (default 10,000; 'none': no budget): the call that would go over "
                   "it fails, which stops the cell")
    @argument("--trace", choices=["full"], help="full: record every reduction step (small programs)")
    @argument("--step", action="store_true",
              help="record the reduction and open the stepper: step forward and back through it "
                   "(small programs: the first few thousand steps are recorded)")
    @argument("--compare", action="store_true",
              help="run the cell under every strategy (same answers) and show their timelines side by side")
    @argument("--decode", metavar="PROGRAMS", nargs="?", const="normal,sot,sot-r,sot-stream",
              help="the cell is a question: answer it with each decoding program (comma-separated: normal, sot, "
                   "sot-r, sot-stream, self-consistency, best-of-n; default the first four), each timed alone, "
                   "side by side")
    @argument("--judge", metavar="B",
              help="with --decode: judge each answer against normal decoding's on backend B (or `self`)")
    @no_var_expand
    @cell_magic("epic")
    def epic_cell(self, line: str, cell: str) -> Any:
        """Run the cell as an epic program: every independent LLM/tool call runs in parallel.

        Names the cell assigns (and functions it defines) become notebook variables; notebook
        variables are visible to the program. The value of the last expression is the cell's
        output. `_epic_last` holds the RunResult (calls, steps, trace). Interrupt cancels every
        in-flight call and keeps finished results.

        Session defaults: `%epic config backend=sim strategy=opportunistic view=auto cache=on`.
        The last run's trace: `%epic trace` (`%epic trace FILE.json` writes a Perfetto trace).
        `--step` opens the reduction stepper (`%epic step` shows it again); `--compare` runs the
        cell under sequential, opportunistic, opportunistic-dfs and random and compares them;
        `--decode` answers the cell's question with several decoding programs side by side.
        """
        from epic_kernel import run

        if wants_decode(line):
            return self._decode_sync(line, cell)
        if wants_compare(line):
            return self._compare_sync(line, cell)

        in_loop_thread = _loop_running() or threading.current_thread() is not threading.main_thread()
        # observers run on this thread unless run() has to use its private loop thread
        job = self._prepare(line, cell, lazy_show=not in_loop_thread, cancellable=False, progress=not in_loop_thread)
        try:
            res = run(job.source, **job.kwargs)
        except EpicSyntaxError as e:
            raise self._syntax_error(job, e) from None
        except EpicInterrupted as e:
            _wait_for_end(job.view.model)
            raise self._interrupted(job, e.result) from None
        except EpicError as e:
            raise self._failed(job, e) from None
        except BaseException:
            job.view.finish(state="failed")
            raise
        return self._done(job, res)

    async def epic_async(self, line: str, cell: str) -> Any:
        """The async path (what the input transformer calls): run on the current loop."""
        from epic_kernel import run_async

        if wants_decode(line):
            return await self._decode_async(line, cell)
        if wants_compare(line):
            return await self._compare_async(line, cell)
        job = self._prepare(line, cell, lazy_show=True, cancellable=_comms_during_cells(), progress=True)
        task = asyncio.ensure_future(run_async(job.source, handle=job.handle, **job.kwargs))
        job.task = task
        heartbeat = asyncio.ensure_future(_heartbeat())
        try:
            res = await task
        except asyncio.CancelledError:               # interrupt (our task) or Cancel (the run's task)
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                me.uncancel()                        # we handle it: keep cancelling() consistent
            raise self._interrupted(job, await _settle(task, job.handle)) from None
        except KeyboardInterrupt:
            raise self._interrupted(job, await _settle(task, job.handle)) from None
        except EpicSyntaxError as e:
            raise self._syntax_error(job, e) from None
        except EpicError as e:
            raise self._failed(job, e) from None
        except BaseException:
            job.view.finish(state="failed")
            raise
        finally:
            heartbeat.cancel()
        return self._done(job, res)

    # ------------------------------------------------------------------------------------ %epic
    @line_magic("epic")
    def epic_line(self, line: str) -> Any:
        """Session settings and the last run's trace.

            %epic config                       show the session defaults
            %epic config key=value ...         set them: backend, model, strategy, view, cache
            %epic trace                        the last %%epic run: header, calls, steps per rule
            %epic trace FILE.json              write the last run as a Chrome/Perfetto trace
            %epic step                         the stepper of the last `%%epic --step` run

        Run a program with the `%%epic` cell magic (`%%epic?` lists its flags).
        """
        words = line.split()
        if not words or words[0] in ("help", "-h", "--help"):
            print(self.epic_line.__doc__)
            return None
        cmd, rest = words[0], words[1:]
        if cmd == "config":
            return self._config(rest)
        if cmd == "trace":
            return self._trace(rest)
        if cmd == "step":
            return self._step()
        raise UsageError(f"%epic: unknown command {cmd!r}; use `%epic config ...`, `%epic trace` or "
                         "`%epic step` (run programs with the %%epic cell magic)")

    def _config(self, pairs: list[str]) -> None:
        if pairs:
            changes = self.settings.updated(pairs, strategies=STRATEGIES, views=_VIEWS)
            if "backend" in changes and changes["backend"] is not None:
                self._backend_spec(changes["backend"])      # validate before changing anything
            for k, v in changes.items():
                setattr(self.settings, k, v)
            if "backend" in changes or "model" in changes:
                from epic_kernel.llm.registry import set_default_backend
                spec = self._backend_spec(self.settings.backend) if self.settings.backend else None
                set_default_backend(spec, self.settings.model)
        print(f"epic config: {self.settings.describe()}")

    def _trace(self, rest: list[str]) -> Any:
        if self.last is None:
            raise UsageError("%epic trace: no %%epic cell has run yet in this session")
        if rest:
            path = rest[0]
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.last.trace_json())
            print(f"wrote {path} (open it in https://ui.perfetto.dev)")
            return None
        return TraceReport(self.last)

    # ---------------------------------------------------------------------------------- helpers
    def _prepare(self, line: str, cell: str, *, lazy_show: bool, cancellable: bool, progress: bool) -> _Job:
        """Parse the flags, merge the session defaults, make the view. `lazy_show`: display the view
        on the run's first event (the observers run on this thread); `cancellable`: the front end
        can deliver a Cancel click while the cell runs; `progress`: the text view may print while
        the run goes on (not from another thread: the output could land in another cell)."""
        from epic_kernel.widgets import RunModel, make_view, resolve_view_kind

        args = parse_argstring(self.epic_cell, line)
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"--out {args.out}: not a Python variable name")
        cfg = self.settings
        backend_name = args.backend or cfg.backend
        backend = self._backend_spec(backend_name) if backend_name else None
        strategy = args.strategy or cfg.strategy
        model_name = args.model or cfg.model
        self.runs += 1
        count = cell_number(self.shell)
        title = f"In [{count}]" if count else f"run {self.runs}"
        filename = f"<epic cell {count}>" if count else "<epic cell>"
        # a --step cell shows the live view while it records; the stepper then takes its place
        view_kind = resolve_view_kind(args.view or cfg.view, self.shell)
        model = RunModel(title=title, strategy=strategy, backend=_backend_label(backend, model_name))
        job_box: dict[str, Any] = {}
        view = make_view(view_kind, model, on_cancel=lambda: _cancel(job_box.get("job")),
                         cancellable=cancellable and type(self.shell).__name__ == "ZMQInteractiveShell",
                         progress=progress)
        if lazy_show:
            view.show_on_start()
        else:
            view.show()
        kwargs = {"strategy": strategy, "backend": backend, "model": model_name, "namespace": self.shell.user_ns,
                  "trace": "full" if args.trace == "full" else True, "filename": filename, "first_line": 2,
                  "observers": [view.on_event], "cache": _use_cache(args, cfg.cache)}
        if args.max_calls is not None:
            try:
                kwargs["max_calls"] = parse_budget(args.max_calls)
            except ValueError as e:
                raise UsageError(str(e)) from None
        recorder = None
        if args.step:
            from epic_kernel.runtime.recorder import Recorder
            recorder = kwargs["recorder"] = Recorder()
        explicit = {k: v for k, v in (("backend", backend if args.backend else None),
                                      ("model", args.model), ("strategy", args.strategy)) if v is not None}
        suppress = ends_with_semicolon(cell)
        job = _Job(args=args, source=cell, kwargs=kwargs, view=view, explicit=explicit, suppress=suppress,
                   recorder=recorder, title=title)
        job_box["job"] = job
        self.last_view = view
        return job

    def _backend_spec(self, name: str) -> Any:
        """A backend name for the registry, or the Backend a notebook variable of that name holds."""
        from epic_kernel.llm.base import Backend
        from epic_kernel.llm.registry import parse_backend

        value = self.shell.user_ns.get(name)
        if isinstance(value, Backend):
            return value
        try:
            parse_backend(name)
        except ValueError as e:
            raise UsageError(f"--backend {name}: {e}, or name a variable holding a Backend") from None
        return name

    def _publish(self, job: _Job, result: Any) -> None:
        """Names into user_ns; the RunResult into _epic_last and --out."""
        ns = self.shell.user_ns
        if result is not None:
            ns.update(self._exports(job, result.namespace))
        ns[_LAST] = result
        if job.args.out:
            ns[job.args.out] = result
        self.last = result

    def _exports(self, job: _Job, names: dict[str, Any]) -> dict[str, Any]:
        """A function defined in a cell with explicit --backend/--model/--strategy keeps them when
        Python calls it later; epic code calling it inlines it either way."""
        if not job.explicit:
            return names
        from epic_kernel.runtime.interop import EpicFunction

        out = dict(names)
        for k, v in names.items():
            if isinstance(v, EpicFunction):
                out[k] = EpicFunction(v.closure, v.__name__, **{**v.run_options, **job.explicit})
        return out

    def _done(self, job: _Job, res: Any) -> Any:
        job.view.finish(res)
        self._publish(job, res)
        self._show_stepper(job, res)
        return None if job.suppress else res.value

    def _failed(self, job: _Job, err: EpicError) -> BaseException:
        res = err.result
        # one authoritative message: the cell's error output (below the view); the view points at it
        failed = sum(c.state == "failed" for c in res.calls) if res is not None else 0
        job.view.finish(res, state="failed",
                        error=f"{failed} call{'s' * (failed != 1)} failed: the error is below" if failed
                        else "the program failed: the error is below")
        self._publish(job, res)
        self._show_stepper(job, res)
        return short(err, note=f"\n(the partial RunResult is in {job.args.out or _LAST})")

    def _interrupted(self, job: _Job, res: Any) -> BaseException:
        if res is not None:
            done = sum(c.state == "done" for c in res.calls)
            cancelled = sum(c.state == "cancelled" for c in res.calls)
            msg = (f"interrupted: {done} call{'s' * (done != 1)} finished, {cancelled} cancelled; "
                   f"finished results are in {job.args.out or _LAST}")
        else:
            msg = "interrupted before the program started"
        job.view.finish(res, state="cancelled")          # the message is the cell's error output
        self._publish(job, res)
        self._show_stepper(job, res)
        return short(EpicInterrupted(msg, [], res))

    def _syntax_error(self, job: _Job, err: EpicSyntaxError) -> BaseException:
        job.view.finish(state="failed", error="not run: the syntax error is below")
        return short_syntax_error(err)


class TraceReport:
    """What `%epic trace` shows: the last run's header, every call (up to 500), steps per rule and,
    for runs with `--trace full`, the reduction steps."""

    def __init__(self, result: Any):
        from epic_kernel.widgets import RunModel

        self.result = result
        self.model = RunModel(title="last %%epic run", strategy=result.strategy, max_steps=2000)
        for ev in result.trace:
            self.model.on_event(ev)
        self.model.finish(result, state=result.state)

    def snapshot(self) -> dict[str, Any]:
        return self.model.snapshot(max_rows=500, max_bars=2000)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from epic_kernel.widgets import snapshot_html, snapshot_text

        snap = self.snapshot()
        return {"text/html": snapshot_html(snap), "text/plain": self._text(snap, snapshot_text)}

    def _text(self, snap: dict[str, Any], snapshot_text: Any) -> str:
        text = snapshot_text(snap, max_rows=500, width=140)
        steps = snap["trace"]["recent"]
        if steps:
            text += "\n  steps:\n" + "\n".join(f"  {n:>6} {rule:<8} {what}" for n, rule, what in steps)
        return text

    def __repr__(self) -> str:
        from epic_kernel.widgets import snapshot_text

        return self._text(self.snapshot(), snapshot_text)


# ------------------------------------------------------------------------------------- helpers
def _plain_help(func: Any) -> None:
    """IPython's help starts the usage with a reST `::` line, printed as is by `%%epic?`: drop it."""
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("::\n\n  %", "  %", 1)


_plain_help(EpicMagics.epic_cell)


async def _heartbeat() -> None:
    """Wake the loop every 0.1 s: ipykernel's SIGINT handler only schedules the cancel, which
    otherwise waits for the loop's next wake-up (ipykernel#881)."""
    while True:
        await asyncio.sleep(_HEARTBEAT_S)


async def _settle(task: asyncio.Task, handle: RunHandle) -> Any:
    """After an interrupt: make sure the run's task has cancelled its calls; return what it finished."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait([task], timeout=3.0)
    ev = handle.ev
    if ev is None:
        return None
    from epic_kernel.runtime.api import partial_result

    if ev.state in ("running", "created"):
        ev.state = "cancelled"
    return partial_result(ev)


def _wait_for_end(model: Any, timeout: float = 3.0) -> None:
    """After an interrupt on the sync path: `run()` may return before its loop thread has finished
    cancelling the calls; wait (briefly) for the run.end event so the view and _epic_last show
    the final call states rather than "running"."""
    deadline = time.monotonic() + timeout
    while model.t0 is not None and model.t_end is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _use_cache(args: Any, session: bool) -> bool:
    """The answer cache: the session's setting (--no-cache: off), except under --step, where a cached
    answer would change the order of the steps the lesson explains: there only --cache turns it on."""
    if args.no_cache:
        return False
    return bool(args.cache) if args.step else bool(session or args.cache)


def _backend_label(backend: Any, model: str | None) -> str:
    """The header's "backend · model" (e.g. "transformers · SmolLM2-135M-Instruct")."""
    from epic_kernel.llm.registry import describe_spec

    try:
        return describe_spec(backend, model)
    except Exception:                          # a label must never stop a cell
        return str(backend or "default backend")


def _cancel(job: _Job | None) -> None:
    if job is not None and job.task is not None and not job.task.done():
        job.task.cancel()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
