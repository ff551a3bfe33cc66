"""The program library: epic programs to call from epic code or from Python.

    from epic_kernel.programs import sot
    sot("How do I fall asleep faster?", backend="sim")["answer"]

Epic code sees these names without importing them (`import epic_kernel` registers them).
"""

from ._program import emit_event, program
from .sot import sot
from .tools import answer_all, answer_with_tools
from .tot import tot24

__all__ = ["answer_all", "answer_with_tools", "emit_event", "program", "sot", "tot24"]

from ..runtime.context import register_builtin  # noqa: E402

register_builtin("sot", sot)
register_builtin("tot24", tot24)
register_builtin("answer_with_tools", answer_with_tools)
register_builtin("answer_all", answer_all)
