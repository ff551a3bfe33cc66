"""The program library: epic programs to call from epic code or from Python.

    from epic_kernel.programs import sot
    sot("How do I fall asleep faster?", backend="sim")["answer"]

Epic code sees these names without importing them (`import epic_kernel` registers them).
"""

from ._program import emit_event, program
from .decoding import (
    DECODING_PROGRAMS,
    decode_compare,
    decode_compare_async,
    judge_comparison,
    register_decoding_program,
)
from .judge import judge_answers, judge_pair, judge_rank, net_win_rate
from .sampling import best_of_n, self_consistency
from .sot import sot
from .tools import answer_all, answer_with_tools
from .tot import tot24

__all__ = ["DECODING_PROGRAMS", "answer_all", "answer_with_tools", "best_of_n", "decode_compare",
           "decode_compare_async", "emit_event", "judge_answers", "judge_comparison", "judge_pair", "judge_rank", "net_win_rate",
           "program", "register_decoding_program", "self_consistency", "sot", "tot24"]

from ..runtime.context import register_builtin  # noqa: E402

register_builtin("sot", sot)
register_builtin("tot24", tot24)
register_builtin("self_consistency", self_consistency)
register_builtin("best_of_n", best_of_n)
register_builtin("judge_pair", judge_pair)
register_builtin("answer_with_tools", answer_with_tools)
register_builtin("answer_all", answer_all)
