"""The live widget: an anywidget whose synced traits are one `RunModel.snapshot()`, drawn by
`live.js` (header, calls table, timeline, reduction trace, Skeleton-of-Thought panel).

Traits hold only what is on screen (the model caps rows and bars), so each update stays small;
the full record of the run stays in Python (`_epic_last`). The front end sends one custom
message, `{"type": "cancel"}`, when the Cancel button is clicked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from epic_kernel.runtime.calltable import WIDGET_COLUMNS, column_specs

from ._snapshot import snapshot_html, snapshot_text
from ._tokens import tokens_panel_html

__all__ = ["LiveWidget"]

_HERE = Path(__file__).parent


class LiveWidget(anywidget.AnyWidget):
    # the file *contents*, not the Path: a Path makes anywidget start a file-watcher thread
    _esm = (_HERE / "live.js").read_text(encoding="utf-8")
    _css = (_HERE / "live.css").read_text(encoding="utf-8")

    columns = traitlets.List(column_specs(WIDGET_COLUMNS)).tag(sync=True)   # the calls table's, from calltable.py
    header = traitlets.Dict().tag(sync=True)        # state, elapsed, steps, counts, tokens, parallelism
    rows = traitlets.List().tag(sync=True)          # calls table rows (in-flight, failed, latest finished)
    bars = traitlets.List().tag(sync=True)          # timeline: [id, lane, start, end, state, batch, fn, line, tok in, tok out, prompt, cached]
    trace = traitlets.Dict().tag(sync=True)         # steps, rules, full, recent steps
    sot = traitlets.Dict().tag(sync=True)           # question, points [{index, text, expansion, done}], answer
    cancellable = traitlets.Bool(False).tag(sync=True)
    tokens_html = traitlets.Unicode("").tag(sync=True)   # the token view (widgets/_tokens.py), escaped HTML

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.static: tuple[str, str] | None = None  # final (html, text), set when the run ends
        self._cancel_callbacks: list[Callable[[], None]] = []
        self.on_msg(self._on_custom_msg)

    def set_snapshot(self, snap: dict[str, Any]) -> None:
        """Sync a snapshot in one comm message (unchanged traits are not re-sent)."""
        with self.hold_sync():
            self.header = snap["header"]
            self.rows = snap["rows"]
            self.bars = snap["bars"]
            self.trace = snap["trace"]
            self.sot = snap["sot"]
            self._tokens = snap.get("tokens") or []
            self.tokens_html = tokens_panel_html(self._tokens) if self._tokens else ""

    def snapshot(self) -> dict[str, Any]:
        return {"header": dict(self.header), "rows": list(self.rows), "bars": list(self.bars),
                "trace": dict(self.trace), "sot": dict(self.sot), "tokens": list(getattr(self, "_tokens", []))}

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._cancel_callbacks.append(callback)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "cancel":
            for cb in self._cancel_callbacks:
                cb()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        if self.static is not None:
            html, text = self.static
        elif self.header:
            snap = self.snapshot()
            html, text = snapshot_html(snap), snapshot_text(snap)
        else:
            html, text = '<div class="epic-live epic-snapshot">epic run</div>', "epic run"
        data["text/html"] = html
        data["text/plain"] = text
        return data, metadata
