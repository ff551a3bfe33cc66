"""The host side of a differential run: the functions a generated program may call, once for epic
(async ones, so their values are pending while the program is reduced) and once for CPython (their
synchronous twins, with the same answers, every call logged).

Why twins: the comparator asks that epic computes what CPython computes and makes the calls CPython
makes; both sides must therefore see the same functions, and `llm()` must answer in CPython exactly
as the sim backend answers in epic.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...llm.base import LLMRequest, SamplingParams
from ...llm.sim import SimBackend

__all__ = ["cpython_namespace", "epic_namespace", "sim_chunks", "sim_text"]

_SIM = SimBackend(latency=0)


def sim_text(prompt: str, max_tokens: int = 256) -> str:
    """What `llm(prompt, max_tokens=...)` returns on the sim backend (greedy): its pure answer."""
    req = LLMRequest.build(prompt, params=SamplingParams(max_tokens=int(max_tokens)))
    return _SIM.answer(req).text


def sim_chunks(prompt: str, max_tokens: int = 256) -> list[str]:
    """What `llm(prompt, stream=True, ...)` is once finished: the sim's word pieces, the last with the tail."""
    from ...llm.sim.answers import split_words
    words, tail = split_words(sim_text(prompt, max_tokens))
    chunks = words[:-1] + [words[-1] + tail] if words else ([tail] if tail else [])
    return [c for c in chunks if c]


def _aint(x: int) -> int:
    return (x * 7 + 3) % 23


def _astr(s: str) -> str:
    return s[::-1][:6] + "!"


def _alist(n: int) -> list[int]:
    return list(range(n % 4))


def _acheck(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"acheck refuses {x}")
    return x + 1


def _hint(x: int) -> int:
    return x * 3 - 1


def epic_namespace(log: list) -> dict[str, Any]:
    """Host functions for the epic run: async ones are dispatched (pending values), sync ones inline."""
    async def aint(x):
        log.append(("aint", x))
        await asyncio.sleep(0)
        return _aint(x)

    async def astr(s):
        log.append(("astr", s))
        await asyncio.sleep(0)
        return _astr(s)

    async def alist(n):
        log.append(("alist", n))
        await asyncio.sleep(0)
        return _alist(n)

    async def acheck(x):
        log.append(("acheck", x))
        await asyncio.sleep(0)
        return _acheck(x)

    def hint(x):
        return _hint(x)

    def happly(f, x):
        return f(x)

    return {"aint": aint, "astr": astr, "alist": alist, "acheck": acheck, "hint": hint, "happly": happly}


def cpython_namespace(log: list) -> dict[str, Any]:
    """The synchronous twins: the same answers, computed at once, with every call logged."""
    def llm(prompt, max_tokens=256, stream=False, **_sampling):
        log.append(("llm", prompt))
        return sim_chunks(prompt, max_tokens) if stream else sim_text(prompt, max_tokens)

    def aint(x):
        log.append(("aint", x))
        return _aint(x)

    def astr(s):
        log.append(("astr", s))
        return _astr(s)

    def alist(n):
        log.append(("alist", n))
        return _alist(n)

    def acheck(x):
        log.append(("acheck", x))
        return _acheck(x)

    def lines(s):
        return ("".join(s) if isinstance(s, list) else s).splitlines()

    return {"llm": llm, "aint": aint, "astr": astr, "alist": alist, "acheck": acheck, "hint": _hint,
            "happly": lambda f, x: f(x), "lines": lines}

