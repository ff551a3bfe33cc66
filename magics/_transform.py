"""The input transformer that runs `%%epic` cells on the shell's own event loop.

A `%%epic` cell is rewritten, before IPython's own `%%` handling, into one top-level await:

    %%epic --backend sim          ->   await get_ipython().magics_manager.registry['EpicMagics'] \\
    x = llm("hi")                          .epic_async('--backend sim', 'x = llm("hi")\\n')

so ipykernel runs it as a coroutine on the kernel's asyncio loop (notes/jupyter.md section 2.2):
widget updates stream out while it runs, an interrupt arrives as CancelledError, and on
ipykernel >= 7.4 comm messages (the Cancel button) are handled while the cell awaits. Elsewhere
(`%autoawait off`, a trio runner, a terminal: see `async_ok`) the cell is left alone and the
ordinary cell magic runs it through `epic_kernel.run` (a private loop thread where a loop runs).

Transformers also run for is_complete/inspect requests: this one is pure and cheap.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["async_ok", "epic_transform", "install_transformer", "remove_transformer"]

_HEAD = re.compile(r"%%epic(?=\s|$)")


def async_ok(ip: Any) -> bool:
    """True in a Jupyter kernel that awaits top-level code on its asyncio loop.

    Only there does an interrupt become a cancel of the cell's task (ipykernel's
    `_cancel_on_sigint`). A terminal shell's runner is `loop.run_until_complete`, where Ctrl-C
    raises KeyboardInterrupt out of the loop and leaves the cell's task (and its calls) pending, so
    terminals take the sync path: `asyncio.run` turns Ctrl-C into a cancel and waits for it."""
    try:
        from IPython.core.interactiveshell import _asyncio_runner
    except ImportError:  # pragma: no cover - very old IPython
        return False
    return (bool(getattr(ip, "autoawait", False)) and getattr(ip, "loop_runner", None) is _asyncio_runner
            and getattr(ip, "kernel", None) is not None)


def epic_transform(lines: list[str]) -> list[str]:
    if not lines or not _HEAD.match(lines[0]):
        return lines
    head = lines[0].rstrip()
    if head.endswith("?"):                          # %%epic? / %%epic?? : IPython's help
        return lines
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None or not async_ok(ip) or "EpicMagics" not in ip.magics_manager.registry:
        return lines
    line = head[len("%%epic"):].strip()
    body = "".join(lines[1:])
    return [f"await get_ipython().magics_manager.registry['EpicMagics'].epic_async({line!r}, {body!r})\n"]


def install_transformer(ip: Any) -> None:
    if epic_transform not in ip.input_transformers_cleanup:
        ip.input_transformers_cleanup.append(epic_transform)


def remove_transformer(ip: Any) -> None:
    while epic_transform in ip.input_transformers_cleanup:
        ip.input_transformers_cleanup.remove(epic_transform)
