"""Per-token records of a call (`llm(..., logprobs=k)`): what each generated token was, when it
arrived, how likely the model found it, its best k alternatives, and on a constrained call how many
tokens the constraint allowed at that step and which of the model's favourites it masked.

One record type, `TokenLog`, whatever produced it:

* the shared batcher fills a `TokenTrace` on its decode thread (token ids and floats only; text is
  looked up once, when the request finishes) from the logits it already has, only for rows that
  asked (`record_step`); a step where no row asks runs no extra tensor operation;
* the OpenAI backend reads what the server returned, in either of OpenAI's two shapes
  (`extend_from_openai`): chat's `logprobs.content[i] = {token, logprob, top_logprobs}` and the
  legacy completions' `{tokens, token_logprobs, top_logprobs: [{token: logprob}]}`;
* `epic serve` writes a TokenLog back out in those shapes (`to_openai_chat`, `to_openai_completion`).

Log-probabilities are the model's own distribution at that step (softmax of the raw logits, as vLLM's
default `raw_logprobs` and OpenAI report them): before temperature, top-p and any constraint mask,
so greedy and sampled calls of one prompt are comparable token for token. A constraint's effect is
recorded next to them (`allowed`, `masked`), not folded in.

Times are on the runtime's one clock (`time.perf_counter`, the CallRecord's clock). A record that
was stored (answer cache, replay) keeps the times it was made with: the views show them relative to
the call's first token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_TOP", "TokenLog", "TokenTrace", "check_k", "extend_from_openai", "record_step"]

MAX_TOP = 20             # OpenAI's limit on top_logprobs; vLLM and llama-server accept it too
MASK_TOP = 5             # a constrained row's masked favourites are looked for among this many


def check_k(k: Any) -> int | None:
    """`logprobs=` as the user gave it -> the number of alternatives (None: not asked). `True`
    means the chosen token's probability only, as OpenAI's chat `logprobs=true`."""
    if k is None or k is False:
        return None
    if k is True:
        return 0
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_TOP:
        raise ValueError(f"logprobs= must be an integer from 0 to {MAX_TOP} (alternatives per token), "
                         f"or True; got {k!r}")
    return k


@dataclass(slots=True)
class TokenLog:
    """The generated tokens of one call, column by column (index i is the i-th token).

    tokens: each token's text (bytes that are not UTF-8 on their own are written as `\\xNN`).
    logprobs: the model's log-probability of each chosen token.
    times: arrival (runtime clock, seconds) of each token.
    top: the k best alternatives per token, best first, as (text, logprob); None when k == 0.
    rows: how many rows the batch decoded at that step (local batcher; None from a server).
    allowed: tokens the constraint allowed at that step (constrained local calls, else None).
    masked: per step, the texts among the model's best alternatives that the constraint forbade.
    """

    k: int = 0
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    top: list[list[tuple[str, float]]] | None = None
    rows: list[int] | None = None
    allowed: list[int] | None = None
    masked: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenLog:
        """The inverse of `dataclasses.asdict` after a JSON round trip (answer cache, replay)."""
        def pairs(col: Any) -> Any:
            return None if col is None else [[(str(a), float(b)) for a, b in step] for step in col]
        return cls(k=int(d.get("k", 0)), tokens=list(d.get("tokens", ())), logprobs=list(d.get("logprobs", ())),
                   times=list(d.get("times", ())), top=pairs(d.get("top")), rows=d.get("rows"),
                   allowed=d.get("allowed"), masked=d.get("masked"))

    def sliced(self, start: int, stop: int | None = None) -> TokenLog:
        """Tokens start..stop (a streamed chunk's share)."""
        s = slice(start, stop)

        def cut(col: list | None) -> list | None:
            return None if col is None else col[s]
        return TokenLog(self.k, self.tokens[s], self.logprobs[s], self.times[s], cut(self.top), cut(self.rows),
                        cut(self.allowed), cut(self.masked))

    def compact(self, t0: float | None = None) -> dict[str, Any]:
        """A small JSON form for views and saved notebooks: logprobs to 3 decimals, times in ms since
        `t0` (default: the first token), top-k only when it was asked, constraint columns only on a
        constrained call. About 20 bytes a token without alternatives, +12 per alternative."""
        base = t0 if t0 is not None else (self.times[0] if self.times else 0.0)
        out: dict[str, Any] = {"k": self.k, "tok": self.tokens, "lp": [_r3(x) for x in self.logprobs],
                               "ms": [round((t - base) * 1000) for t in self.times]}
        if self.top is not None and self.k > 0:
            out["top"] = [[[a, _r3(b)] for a, b in step] for step in self.top]
        if self.rows is not None:
            out["rows"] = self.rows
        if self.allowed is not None:
            out["allowed"] = self.allowed
            out["masked"] = self.masked or [[] for _ in self.tokens]
        return out

    # ---------------------------------------------------------------------------- OpenAI shapes
    def to_openai_chat(self) -> dict[str, Any]:
        """`choices[i].logprobs` of a chat completion (or of one streamed chunk)."""
        def entry(tok: str, lp: float) -> dict[str, Any]:
            return {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8"))}
        content = []
        for i, (tok, lp) in enumerate(zip(self.tokens, self.logprobs, strict=True)):
            e = entry(tok, lp)
            e["top_logprobs"] = [entry(a, b) for a, b in (self.top[i] if self.top is not None else ())]
            content.append(e)
        return {"content": content}

    def to_openai_completion(self, offset: int = 0) -> dict[str, Any]:
        """`choices[i].logprobs` of a legacy completion: parallel lists; `offset` is where this piece's
        text starts in the whole answer (for streamed chunks)."""
        offsets, pos = [], offset
        for tok in self.tokens:
            offsets.append(pos)
            pos += len(tok)
        return {"tokens": list(self.tokens), "token_logprobs": list(self.logprobs),
                "top_logprobs": None if self.top is None else [dict(step) for step in self.top],
                "text_offset": offsets}


def _r3(x: float) -> float:
    return round(x, 3) if math.isfinite(x) else -1e9


def extend_from_openai(log: TokenLog, logprobs: Any, now: float) -> None:
    """Append the tokens of one server response or streamed chunk (`choice.logprobs`, an object or a
    dict, in the chat or the completions shape) to `log`, all arriving at `now`."""
    if logprobs is None:
        return
    get = logprobs.get if isinstance(logprobs, dict) else (lambda name, d=None: getattr(logprobs, name, d))
    content = get("content")
    if content is not None:                                   # chat shape (llama-server uses it everywhere)
        for e in content:
            eg = e.get if isinstance(e, dict) else (lambda name, d=None, e=e: getattr(e, name, d))
            alts = [((a.get("token") if isinstance(a, dict) else a.token),
                     (a.get("logprob") if isinstance(a, dict) else a.logprob)) for a in (eg("top_logprobs") or ())]
            _append(log, eg("token") or "", eg("logprob"), alts, now)
        return
    tokens = get("tokens") or []                              # completions shape
    lps = get("token_logprobs") or [None] * len(tokens)
    tops = get("top_logprobs") or [None] * len(tokens)
    for tok, lp, top in zip(tokens, lps, tops, strict=False):
        alts = sorted((top or {}).items(), key=lambda kv: -kv[1])
        _append(log, tok, lp, alts, now)


def _append(log: TokenLog, tok: str, lp: float | None, alts: list[tuple[Any, Any]], now: float) -> None:
    log.tokens.append(str(tok))
    log.logprobs.append(float(lp) if lp is not None else float("nan"))
    log.times.append(now)
    if log.k > 0:
        if log.top is None:
            log.top = [[] for _ in range(len(log.tokens) - 1)]
        log.top.append([(str(a), float(b)) for a, b in alts[:log.k]])


# ------------------------------------------------------------------------- the batcher's side
class TokenTrace:
    """What the decode thread records for one row that asked (ids and floats; no text yet).
    Worker-only, like the rest of a Ticket's decode state."""

    __slots__ = ("k", "ids", "lps", "times", "top_ids", "top_lps", "rows", "allowed", "masked", "sent")

    def __init__(self, k: int, constrained: bool):
        self.k = k
        self.ids: list[int] = []
        self.lps: list[float] = []
        self.times: list[float] = []
        self.top_ids: list[list[int]] = []
        self.top_lps: list[list[float]] = []
        self.rows: list[int] = []
        self.allowed: list[int] | None = [] if constrained else None
        self.masked: list[list[int]] | None = [] if constrained else None
        self.sent = 0                     # tokens already handed out with a streamed chunk

    def log(self, text_of: Callable[[int], str], start: int = 0, stop: int | None = None) -> TokenLog:
        """Tokens start..stop as a TokenLog, their text looked up through `text_of`."""
        s = slice(start, stop)
        top = ([[(text_of(i), lp) for i, lp in zip(ids, lps, strict=True)]
                for ids, lps in zip(self.top_ids[s], self.top_lps[s], strict=True)] if self.k > 0 else None)
        masked = None if self.masked is None else [[text_of(i) for i in m] for m in self.masked[s]]
        return TokenLog(self.k, [text_of(i) for i in self.ids[s]], self.lps[s], self.times[s], top,
                        self.rows[s], None if self.allowed is None else self.allowed[s], masked)


def before_masks(logits: Any, asking: Sequence[int], kmax: int) -> tuple[Any, Any, Any]:
    """From the raw logits of the rows that ask, before any constraint masks them in place: each
    row's log-normaliser and its best `kmax` tokens. logsumexp + topk read the logits without
    writing a full log-softmax, which is what keeps the cost small at 16 rows."""
    import torch

    sub = logits if len(asking) == logits.shape[0] else logits[torch.tensor(asking, device=logits.device)]
    lse = torch.logsumexp(sub, dim=-1)
    top = sub.topk(kmax, dim=-1) if kmax > 0 else None
    # `sub` may be `logits` itself, which a constraint then masks in place: that leaves every value
    # record_step reads from it intact (a chosen token is never masked; top and lse are copies)
    return sub, lse, top


def record_step(rows: Sequence[Any], asking: Sequence[int], pre: tuple[Any, Any, Any], masked_logits: Any,
                chosen: Sequence[int], batch_rows: int, now: float) -> None:
    """Append one step to each asking row's TokenTrace: the chosen token's log-probability (under the
    raw logits captured in `pre`), the top k, and for a constrained row how many tokens its mask
    allowed and which of the model's best `MASK_TOP` it forbade. One small batched tensor op per
    column, then Python lists."""
    import torch

    raw, lse, top = pre
    dev = raw.device
    pick = torch.tensor([[chosen[i]] for i in asking], device=dev)
    chosen_lp = (raw.gather(1, pick).squeeze(1) - lse).tolist()
    top_ids = top.indices.tolist() if top is not None else None
    top_lps = (top.values - lse.unsqueeze(1)).tolist() if top is not None else None
    cons = [j for j, i in enumerate(asking) if rows[i].tokens.allowed is not None]
    allowed: list[int] = []
    forbidden: list[list[bool]] = []
    if cons:
        ci = torch.tensor([asking[j] for j in cons], device=dev)
        m = masked_logits[ci]
        allowed = torch.isfinite(m).sum(-1).tolist()
        forbidden = torch.isneginf(m.gather(1, top.indices[torch.tensor(cons, device=dev)])).tolist()
    where = {j: n for n, j in enumerate(cons)}
    for j, i in enumerate(asking):
        tr = rows[i].tokens
        tr.ids.append(chosen[i])
        tr.lps.append(chosen_lp[j])
        tr.times.append(now)
        tr.rows.append(batch_rows)
        if tr.k > 0:
            tr.top_ids.append(top_ids[j][:tr.k])
            tr.top_lps.append(top_lps[j][:tr.k])
        if j in where:
            n = where[j]
            tr.allowed.append(allowed[n])
            tr.masked.append([t for t, f in zip(top_ids[j], forbidden[n], strict=True) if f][:MASK_TOP])


def kmax_for(rows: Sequence[Any], asking: Sequence[int]) -> int:
    """How many top tokens one step must find: the largest k asked, and MASK_TOP for a constrained row."""
    k = 0
    for i in asking:
        tr = rows[i].tokens
        k = max(k, tr.k, MASK_TOP if tr.allowed is not None else 0)
    return k


class TokenTexts:
    """Token id -> its text, cached per tokenizer. A byte-level token that is not UTF-8 on its own
    (half of an emoji) is written as `\\xNN` escapes rather than U+FFFD, so no view shows a
    replacement character and two such halves stay distinguishable."""

    def __init__(self, tokenizer: Any, lock: Any):
        self.tokenizer = tokenizer
        self.lock = lock
        self.cache: dict[int, str] = {}
        self._bytes: dict[str, int] | None = None

    def __call__(self, i: int) -> str:
        text = self.cache.get(i)
        if text is None:
            with self.lock:
                text = self.tokenizer.decode([i], skip_special_tokens=False)
                if "\ufffd" in text:
                    try:
                        text = self._escaped(i, text)
                    except Exception:          # never fail a decode batch over a token's label
                        text = text.replace("\ufffd", "\\ufffd")
            self.cache[i] = text
        return text

    def _escaped(self, i: int, text: str) -> str:
        if self._bytes is None:
            self._bytes = {c: b for b, c in _byte_chars().items()}
        piece = self.tokenizer.convert_ids_to_tokens(i)
        if isinstance(piece, str) and all(c in self._bytes for c in piece):
            raw = bytes(self._bytes[c] for c in piece)
            return raw.decode("utf-8", errors="backslashreplace")
        return text.replace("\ufffd", "\\ufffd")


def _byte_chars() -> dict[int, str]:
    """GPT-2's byte-level BPE alphabet: byte -> the printable character that stands for it."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out
