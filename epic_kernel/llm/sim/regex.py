"""A string that matches a regex, for `regex=` requests the script does not answer: walk the
`re._parser` tree and build one."""

from __future__ import annotations

import random
import re
import re._constants as _c  # private but stable since 3.11, where the public sre_parse is deprecated
import re._parser as _p
import string
from collections.abc import Iterable
from typing import Any

from .script import SimScriptError

__all__ = ["regex_match"]

_MAX_REPEAT = 8                     # an unbounded repeat (`*`, `+`, `{m,}`) emits at most m+8 copies
_POOL = string.ascii_letters + string.digits + " _-.,:;!?/()'\"@#$%&*+=<>[]{}|~^`\\"
_CATEGORY = {
    _c.CATEGORY_DIGIT: string.digits, _c.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _c.CATEGORY_SPACE: " ",
}


class _RegexSampler:
    """Produce a string matching a simple regex: literals, classes, `. ? * + {m,n}`, alternation,
    groups and backreferences. Anchors and lookarounds emit nothing and are checked afterwards by
    `re.fullmatch`; the caller retries with fresh randomness and gives up with a clear error."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.groups: dict[int, str] = {}

    def sample(self, pattern: str) -> str:
        self.groups = {}
        return self._seq(_p.parse(pattern))

    def _seq(self, items: Iterable[tuple[Any, Any]]) -> str:
        return "".join(self._one(op, av) for op, av in items)

    def _one(self, op: Any, av: Any) -> str:
        rng = self.rng
        if op is _c.LITERAL:
            return chr(av)
        if op is _c.NOT_LITERAL:
            return rng.choice([ch for ch in _POOL if ord(ch) != av])
        if op is _c.ANY:
            return rng.choice(string.ascii_lowercase)
        if op is _c.IN:
            return self._in(av)
        if op is _c.BRANCH:
            return self._seq(rng.choice(av[1]))
        if op is _c.SUBPATTERN:
            gid, _add, _del, sub = av
            text = self._seq(sub)
            if gid is not None:
                self.groups[gid] = text
            return text
        if op is _c.ATOMIC_GROUP:
            return self._seq(av)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            hi = max(lo, min(hi, lo + _MAX_REPEAT))
            return "".join(self._seq(sub) for _ in range(rng.randint(lo, hi)))
        if op is _c.GROUPREF:
            return self.groups.get(av, "")
        if op is _c.GROUPREF_EXISTS:
            gid, yes, no = av
            return self._seq(yes if gid in self.groups else (no or []))
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            return ""
        raise SimScriptError(f"the sim cannot generate text for regex construct {op}")

    def _in(self, items: list[tuple[Any, Any]]) -> str:
        if items and items[0][0] is _c.NEGATE:
            banned = self._members(items[1:], exhaustive=True)
            allowed = [ch for ch in _POOL if ch not in banned]
            if not allowed:
                raise SimScriptError("the sim cannot find a character outside this negated class")
            return self.rng.choice(allowed)
        return self.rng.choice(self._members(items, exhaustive=False))

    def _members(self, items: list[tuple[Any, Any]], *, exhaustive: bool) -> list[str]:
        """Characters of a positive class. A large range is sampled (not listed) unless we need the
        exact set to exclude it; categories use the ASCII members (`\\w` of 'é' never matters here)."""
        out: list[str] = []
        for op, av in items:
            if op is _c.LITERAL:
                out.append(chr(av))
            elif op is _c.RANGE:
                lo, hi = av
                if exhaustive:
                    out.extend(chr(i) for i in range(lo, hi + 1) if chr(i) in _POOL)
                else:
                    out.append(chr(self.rng.randint(lo, hi)))
            elif op is _c.CATEGORY and av in _CATEGORY:
                out.extend(_CATEGORY[av])
            elif op is _c.CATEGORY:      # \D \W \S: members of the pool outside the base category
                base = {_c.CATEGORY_NOT_DIGIT: _c.CATEGORY_DIGIT, _c.CATEGORY_NOT_WORD: _c.CATEGORY_WORD,
                        _c.CATEGORY_NOT_SPACE: _c.CATEGORY_SPACE}.get(av)
                if base is None:
                    raise SimScriptError(f"the sim cannot generate text for regex category {av}")
                out.extend(ch for ch in _POOL if ch not in _CATEGORY[base] and not ch.isspace())
            else:
                raise SimScriptError(f"the sim cannot generate text for regex class item {op}")
        return out


def regex_match(pattern: str, rng: random.Random, attempts: int = 32) -> str:
    sampler = _RegexSampler(rng)
    for _ in range(attempts):
        text = sampler.sample(pattern)
        if re.fullmatch(pattern, text):
            return text
    raise SimScriptError(
        f"the sim could not generate a string matching regex={pattern!r} (anchors, lookarounds and "
        f"word boundaries are only checked, not planned for); script an answer for this prompt instead")


# ---------------------------------------------------------------------------------------------
# The backend
