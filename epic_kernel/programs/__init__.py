"""The program library: epic programs to call from epic code or from Python.

    from epic_kernel.programs import sot
    sot("How do I fall asleep faster?", backend="sim")["answer"]

Epic code sees these names without importing them (`import epic_kernel` registers them).
"""

from ._program import emit_event, program
from .sot import sot

__all__ = ["emit_event", "program", "sot"]

from ..runtime.context import register_builtin  # noqa: E402

register_builtin("sot", sot)
