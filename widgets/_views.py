"""Views of one run: widget (anywidget, live), html (display-id updates), text (progress lines and
a final table), none. All share one `RunModel` fed by runtime events and one `Coalescer`.

Life cycle, driven by the %%epic magic:

    view = make_view("auto", model, on_cancel=task.cancel)
    view.show()                                   # display the initial state (cell thread)
    run_async(..., observers=[view.on_event])     # events on the loop thread; flushes <= 10/s
    view.finish(result | state=..., error=...)    # final state, re-published with html + text snapshots

Every displayed bundle carries `text/html` and `text/plain` snapshots next to the widget view, and
`finish()` replaces the live display (through its display handle) by the final snapshot alone, so
saved notebooks, nbconvert exports, consoles and frontends without widget JS show the final state.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from epic_kernel.runtime.events import clock

from ._coalesce import Coalescer
from ._model import RunModel
from ._snapshot import snapshot_html, snapshot_text

__all__ = ["VIEW_KINDS", "HTMLView", "NullView", "RunView", "TextView", "WidgetView", "make_view",
           "resolve_view_kind"]

VIEW_KINDS = ("auto", "widget", "html", "text", "none")
FINAL_ROWS = 1000                 # calls listed in the static snapshot at the end (scroll + filter)
FINAL_BARS = 1000                 # calls drawn in its timeline


class RunView:
    """Base view: records events into the model and flushes through a Coalescer."""

    kind = "none"
    interval = 0.1                # seconds between flushes at most (<= 10 messages/s)
    tick = 0.5                    # refresh at least this often while running (the elapsed clock)

    def __init__(self, model: RunModel, *, on_cancel: Callable[[], None] | None = None):
        self.model = model
        self.on_cancel = on_cancel
        self.coalescer = Coalescer(self._flush, interval=self.interval, tick=self.tick)
        self.finished = False
        self.shown = False
        self._show_on_start = False

    # observer: called on the loop thread for every runtime event
    def on_event(self, ev: Any) -> None:
        self.model.on_event(ev)
        if self._show_on_start and not self.shown:
            self.show()
        if ev.kind == "run.end":
            self.coalescer.stop()          # the final flush is finish()'s, on the cell's thread
            return
        if self.coalescer.loop is None:
            self.coalescer.bind(asyncio.get_running_loop())
        self.coalescer.mark()

    def show(self) -> None:
        """Display the initial state (on the cell's thread, before the run starts)."""
        self.shown = True
        self._show()

    def show_on_start(self) -> None:
        """Display on the run's first event instead (the observer runs on the cell's thread), so a
        program that never starts (a syntax error) displays nothing."""
        self._show_on_start = True

    def finish(self, result: Any = None, *, state: str | None = None, error: str = "") -> None:
        """Fold in the outcome and publish the final state (once; nothing if never shown)."""
        if self.finished:
            return
        self.finished = True
        self.model.finish(result, state=state, error=error)
        self.coalescer.stop()
        if self.shown or not self._show_on_start:
            self._final()

    def _show(self) -> None:
        """Subclasses: display the initial state."""

    def snapshot(self, *, final: bool = False) -> dict[str, Any]:
        return self.model.snapshot(clock(), max_rows=FINAL_ROWS if final else None,
                                   max_bars=FINAL_BARS if final else None)

    def _flush(self) -> None:
        """Push the current state to the front end (on the loop thread, <= 1/interval per second)."""

    def _final(self) -> None:
        self._flush()

    # the static renderings every view offers (also `%epic trace`)
    def _repr_html_(self) -> str:
        return snapshot_html(self.snapshot(final=self.finished))

    def __repr__(self) -> str:
        return snapshot_text(self.snapshot(final=self.finished))


class NullView(RunView):
    """`--view none`: records the run in its model, shows nothing."""

    tick = None

    def on_event(self, ev: Any) -> None:
        self.model.on_event(ev)


class TextView(RunView):
    """Consoles and `--view text`: a progress line every few seconds, the table at the end."""

    kind = "text"
    interval = 2.0
    tick = 2.0

    def __init__(self, model: RunModel, *, progress: bool = True, **kw: Any):
        super().__init__(model, **kw)
        self.progress = progress

    def on_event(self, ev: Any) -> None:
        self.model.on_event(ev)             # no mark: progress lines come from the tick only
        if self._show_on_start and not self.shown:
            self.show()
        if ev.kind == "run.end":
            self.coalescer.stop()
        elif self.progress and self.coalescer.loop is None:
            self.coalescer.bind(asyncio.get_running_loop())

    def _flush(self) -> None:
        if self.finished or self.model.finished:
            return
        h = self.snapshot()["header"]
        print(f"epic: {h['elapsed']:.1f} s · {h['steps']} steps · {h['calls']} calls "
              f"({h['running']} running, {h['done']} done, {h['failed']} failed)", flush=True)

    def _final(self) -> None:
        print(snapshot_text(self.snapshot(final=True)), flush=True)


class HTMLView(RunView):
    """`--view html`: an HTML snapshot re-published through a display handle (no widget JS needed).
    Each update re-sends the whole HTML, so it flushes less often than the widget."""

    kind = "html"
    interval = 0.25
    tick = 1.0

    def __init__(self, model: RunModel, **kw: Any):
        super().__init__(model, **kw)
        self.handle: Any = None

    def _bundle(self, final: bool = False) -> dict[str, str]:
        snap = self.snapshot(final=final)
        return {"text/html": snapshot_html(snap), "text/plain": snapshot_text(snap)}

    def _show(self) -> None:
        from IPython.display import display
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def _flush(self) -> None:
        if self.handle is not None:
            self.handle.update(self._bundle(), raw=True)

    def _final(self) -> None:
        if self.handle is not None:
            self.handle.update(self._bundle(final=True), raw=True)


class WidgetView(RunView):
    """The live widget (anywidget): header, calls table, timeline, reduction trace, SoT panel and,
    where the kernel processes comm messages during a running cell, a Cancel button.

    The widget (and its comm) is created on first use, so a cell that never starts (a syntax
    error) opens no comm."""

    kind = "widget"

    def __init__(self, model: RunModel, *, cancellable: bool = False, **kw: Any):
        super().__init__(model, **kw)
        self.cancellable = cancellable and self.on_cancel is not None
        self._widget: Any = None
        self.handle: Any = None
        self.cancel_clicks = 0

    @property
    def widget(self) -> Any:
        if self._widget is None:
            from ._live import LiveWidget
            self._widget = LiveWidget(cancellable=self.cancellable)
            self._widget.on_cancel(self._cancel_clicked)
        return self._widget

    def _cancel_clicked(self) -> None:
        self.cancel_clicks += 1
        if self.on_cancel is not None and not self.model.finished:
            self.on_cancel()

    def _show(self) -> None:
        from IPython.display import display
        self.widget.set_snapshot(self.snapshot())
        self.handle = display(self.widget, display_id=True)

    def _flush(self) -> None:
        if self._widget is not None:
            self._widget.set_snapshot(self.snapshot())

    def _final(self) -> None:
        """Replace the live widget by its final snapshot: the stored output then has no widget
        mimetype whose model dies with the kernel, so a saved notebook reopens, and exports (HTML,
        PDF) render, with the final table, timeline and SoT panel, offline. The widget is closed
        (its comm and memory freed) once the replacement has been sent."""
        if self._widget is None:
            return
        final = self.snapshot(final=True)
        html, text = snapshot_html(final), snapshot_text(final)
        with self._widget.hold_sync():
            self._widget.set_snapshot(self.snapshot())
            self._widget.cancellable = False
        self._widget.static = (html, text)
        if self.handle is not None:
            self.handle.update({"text/html": html, "text/plain": text}, raw=True)
            self._widget.close()


def resolve_view_kind(kind: str | None, shell: Any = None) -> str:
    """`auto` (or unset: EPIC_VIEW, else auto) -> widget in a Jupyter kernel with anywidget installed,
    text in a terminal or without IPython."""
    kind = (kind or os.environ.get("EPIC_VIEW") or "auto").lower()
    if kind not in VIEW_KINDS:
        raise ValueError(f"unknown view {kind!r}; choose one of {', '.join(VIEW_KINDS)}")
    if kind in ("auto", "widget"):
        in_kernel = shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
        if kind == "auto" and not in_kernel:
            return "text"
        if not _widgets_available():
            return "html" if in_kernel or kind == "widget" else "text"
        return "widget"
    return kind


def _widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def make_view(kind: str, model: RunModel, *, on_cancel: Callable[[], None] | None = None,
              cancellable: bool = False, progress: bool = True) -> RunView:
    """A view of `kind` (already resolved: widget, html, text or none)."""
    if kind == "widget":
        return WidgetView(model, on_cancel=on_cancel, cancellable=cancellable)
    if kind == "html":
        return HTMLView(model, on_cancel=on_cancel)
    if kind == "text":
        return TextView(model, on_cancel=on_cancel, progress=progress and sys.stdout is not None)
    return NullView(model, on_cancel=on_cancel)
