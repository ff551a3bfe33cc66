"""epic_kernel.magics: `%%epic` and `%epic` for IPython and Jupyter (installed from the top-level
`magics/` folder; see docs/views.md).

    %load_ext epic_kernel          # in any IPython shell or kernel; the EPIC kernel loads it itself
    %%epic --backend sim
    answers = [llm(f"Name a {k} animal") for k in ["big", "small"]]
    answers
"""

from __future__ import annotations

from typing import Any

from ._errors import EpicCellSyntaxError
from ._magics import EpicMagics, TraceReport
from ._transform import async_ok, epic_transform, install_transformer, remove_transformer

__all__ = ["EpicCellSyntaxError", "EpicMagics", "TraceReport", "async_ok", "epic_transform",
           "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ip: Any) -> None:
    """Register the magics and the input transformer that runs `%%epic` cells on the shell's loop."""
    ip.register_magics(EpicMagics(ip))
    install_transformer(ip)
    _register_formatters(ip)
    if type(ip).__name__ == "ZMQInteractiveShell":
        try:                                   # registers the widget comm targets before a view needs them
            import ipywidgets  # noqa: F401
        except ImportError:
            pass


def _register_formatters(ip: Any) -> None:
    """`decode_compare(...)`'s result shows as its view (the core class knows nothing of HTML)."""
    from epic_kernel.widgets import decode_html

    from epic_kernel.programs.decoding import DecodingComparison

    formatters = getattr(getattr(ip, "display_formatter", None), "formatters", {})
    if "text/html" in formatters:
        formatters["text/html"].for_type(DecodingComparison, decode_html)


def unload_ipython_extension(ip: Any) -> None:
    remove_transformer(ip)
    mm = ip.magics_manager
    for kind in ("line", "cell"):
        mm.magics[kind].pop("epic", None)
    mm.registry.pop("EpicMagics", None)
