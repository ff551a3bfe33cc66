"""epic_kernel.widgets: the live view of a running epic program (installed from the top-level
`widgets/` folder; see docs/views.md).

    model = RunModel(title="cell 3")              # plain data, fed by runtime events
    view = make_view("widget", model)            # or "html", "text", "none"
    view.show(); await run_async(src, observers=[view.on_event]); view.finish(result)

Nothing here is imported by the core; ipywidgets and anywidget are imported only when a widget
view is made (`LiveWidget` is loaded on first access).
"""

from __future__ import annotations

from typing import Any

from ._coalesce import Coalescer
from ._compare import CompareView, compare_html, compare_snapshot, compare_text
from ._decoding import DecodeView, decode_html, decode_text
from ._model import RunModel
from ._snapshot import snapshot_html, snapshot_text
from ._stepper import Stepper, stepper_html, stepper_text
from ._tokens import TokenView
from ._views import (
    VIEW_KINDS,
    HTMLView,
    NullView,
    RunView,
    TextView,
    WidgetView,
    make_view,
    resolve_view_kind,
)

__all__ = [
    "VIEW_KINDS", "Coalescer", "CompareView", "DecodeView", "HTMLView", "LiveWidget", "NullView", "RunModel", "RunView",
    "Stepper", "TextView", "TokenView", "WidgetView", "compare_html", "compare_snapshot", "compare_text", "decode_html",
    "decode_text", "make_view",
    "resolve_view_kind", "snapshot_html", "snapshot_text", "stepper_html", "stepper_text",
]


def __getattr__(name: str) -> Any:
    if name == "LiveWidget":                   # imports anywidget + ipywidgets: only on demand
        from ._live import LiveWidget
        return LiveWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
