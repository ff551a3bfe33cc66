"""epic-kernel: write plain, sequential-looking LLM programs; every independent call runs in parallel.

    from epic_kernel import run
    res = run('''
    answers = [llm(f"Name a {kind} animal") for kind in ["big", "small", "fast"]]
    answers
    ''', backend="sim")

tests/test_public_api.py pins the public API.
"""

from . import programs  # noqa: E402,F401  (registers `sot` and `emit_event` as builtins of epic code)
from .errors import EpicError, EpicException, EpicInterrupted, EpicSyntaxError
from .llm.builtin import llm
from .programs.decoding import decode_compare, decode_compare_async
from .runtime.api import run, run_async
from .runtime.events import CallRecord
from .runtime.interop import EpicFunction, epic, tool
from .runtime.result import RunResult

__version__ = "0.1.0"

__all__ = [
    "CallRecord", "EpicError", "EpicException", "EpicFunction", "EpicInterrupted", "EpicSyntaxError",
    "RunResult", "decode_compare", "decode_compare_async", "epic", "llm", "run", "run_async", "tool",
]


def load_ipython_extension(ip) -> None:
    """`%load_ext epic_kernel`: the %%epic magics (IPython is imported here, never by the core)."""
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)
