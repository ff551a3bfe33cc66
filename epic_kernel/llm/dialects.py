"""How `regex=`, `choices=` and `prefill=` travel to each kind of OpenAI-compatible server.

The OpenAI API has no field for any of the three, and every server that adds one spells it its own
way. Worse, servers *ignore* fields they do not know and answer 200: vLLM >= 0.12 dropped
`guided_regex`/`guided_choice` and returns unconstrained prose for them; llama-server ignores
`continue_final_message` and both. So a constraint is only as good as the dialect it is sent in,
and the OpenAI backend also checks every constrained answer on the client (`check_answer`).

    dialect        regex= / choices=                                  prefill=
    "vllm"         structured_outputs {"regex"} / {"choice"}          continue_final_message (vLLM >= 0.12,
                                                                      and `epic serve`)
    "vllm-legacy"  guided_regex / guided_choice (vLLM < 0.12)          continue_final_message
    "sglang"       regex (choices as an escaped alternation)          no
    "llama.cpp"    choices as a GBNF grammar; regex= refused          the server renders the chat template
                                                                      (/apply-template), the prefill is
                                                                      appended, a raw completion continues it
    None           refused (plain OpenAI)                             refused

`detect()` maps the `owned_by` of a server's `/v1/models` entry to a dialect: "vllm", "sglang",
"llamacpp" (llama-server) and "epic-kernel" (`epic serve`, which speaks vLLM's fields); anything
else is treated as plain OpenAI, so a constraint is refused up front rather than dropped.
"""

from __future__ import annotations

import re
from typing import Any

from .base import SamplingParams, UnsupportedFeature
from .constrained import ConstraintIncomplete, InvalidConstraint, constraint_regex
from .errors import ConstraintViolation

__all__ = ["DIALECTS", "capabilities", "check_answer", "check_regex", "constraint_fields", "detect",
           "gbnf_choices"]

DIALECTS = ("vllm", "vllm-legacy", "sglang", "llama.cpp", None)
_CAPS: dict[str | None, frozenset[str]] = {
    "vllm": frozenset({"regex", "choices", "prefill"}),
    "vllm-legacy": frozenset({"regex", "choices", "prefill"}),
    "sglang": frozenset({"regex", "choices"}),
    "llama.cpp": frozenset({"choices", "prefill"}),
    None: frozenset(),
}
_OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "llamacpp": "llama.cpp", "llama.cpp": "llama.cpp",
             "epic-kernel": "vllm"}


def capabilities(dialect: str | None) -> frozenset[str]:
    """The constraint/prefill features a dialect can carry."""
    return _CAPS[dialect]


def detect(owned_by: str | None) -> str | None:
    """The dialect of a server from the `owned_by` of its first model (None: plain OpenAI)."""
    return _OWNED_BY.get((owned_by or "").lower())


def check_regex(params: SamplingParams) -> str | None:
    """The regex a constrained answer must fully match, compiled once here so a pattern Python cannot
    check is refused before dispatch (InvalidConstraint) instead of failing after the call."""
    rx = constraint_regex(params)
    if rx is not None:
        try:
            re.compile(rx)
        except re.error as e:
            raise InvalidConstraint(f"invalid regex={rx!r}: {e}") from e
    return rx


def constraint_fields(dialect: str | None, params: SamplingParams) -> dict[str, Any]:
    """The extra request fields that carry `params`' constraint in `dialect` ({} when unconstrained)."""
    if params.regex is None and params.choices is None:
        return {}
    rx = check_regex(params)
    if dialect == "vllm":
        if params.regex is None:
            return {"structured_outputs": {"choice": list(dict.fromkeys(params.choices or ()))}}
        return {"structured_outputs": {"regex": rx}}
    if dialect == "vllm-legacy":
        if params.regex is None:
            return {"guided_choice": list(dict.fromkeys(params.choices or ()))}
        return {"guided_regex": rx}
    if dialect == "sglang":
        return {"regex": rx}
    if dialect == "llama.cpp" and params.regex is None:
        return {"grammar": gbnf_choices(list(dict.fromkeys(params.choices or ())))}
    what = "regex=" if params.regex is not None else "choices="
    raise UnsupportedFeature(f"{what} cannot be sent to this server ({dialect or 'plain OpenAI'} dialect); "
                             "use a vLLM/SGLang server, backend='vllm' or the local backend")


def gbnf_choices(choices: list[str]) -> str:
    """A llama.cpp GBNF grammar whose language is exactly `choices`."""
    def literal(s: str) -> str:
        out = []
        for ch in s:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20:
                out.append(f"\\x{ord(ch):02x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    return "root ::= " + " | ".join(literal(c) for c in choices)


def check_answer(params: SamplingParams, text: str, finish_reason: str, *, model: str | None,
                 backend: str) -> None:
    """Raise unless `text` satisfies the call's constraint: a server that ignored it must not pass
    its unconstrained answer off as a constrained one."""
    rx = constraint_regex(params)
    if rx is None or re.fullmatch(rx, text):
        return
    what = f"choices={list(params.choices)!r}" if params.regex is None else f"regex={params.regex!r}"
    if finish_reason == "length":
        raise ConstraintIncomplete(f"max_tokens={params.max_tokens} ran out before the answer matched {what} "
                                   f"(got {text[:80]!r}); raise max_tokens", model=model, backend=backend)
    raise ConstraintViolation(f"the server's answer {text[:80]!r} does not match {what}: it ignored the "
                              "constraint (check the backend's guided= dialect)", model=model, backend=backend)
