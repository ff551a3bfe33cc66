"""Self-consistency and best-of-n: the simplest decoding programs that parallelize, as epic programs.

Both sample `n` answers to one question. The samples do not depend on each other, so the evaluator
dispatches them together (one decode batch on a local model); the program costs about one sample's
time instead of n. `benchmarks/bench_decoding.py --part samples` measures that against the same
program run one sample at a time (strategy="sequential").

    from epic_kernel.programs import self_consistency, best_of_n
    out = self_consistency("What is 17 * 3?", n=5, backend="sim")
    out["answer"], out["votes"], out["samples"]
    out = best_of_n("Name a fast animal.", n=4, score=len, backend="sim")      # the longest answer
    out["answer"], out["scores"], out["best"]

self_consistency (Wang et al., 2023): sample n answers at `temperature`, `extract` a short final
answer from each (default `extract_answer`: the last number in the text, else its first line,
normalised), and return the sample whose extracted answer got the most votes (ties: the earliest
sample). It suits questions with one short right answer (arithmetic, a name, a letter).

best_of_n: sample n answers, score each, return the best (ties: the earliest). `score` is either a
plain function `(answer) -> number` (called inline, e.g. a length or a regex check), or "judge":
the model rates each sample 1-10 with a one-line prompt (`RATE_PROMPT`, one more parallel call
per sample; a rating that cannot be read scores 0).

Seeds are explicit: sample k uses `seed + k`, so a run is repeatable and the samples differ. With
`temperature=0` every sample is the greedy answer (the view shows n equal samples: sampling is
what makes these programs work).

Both emit `program.samples.*` events (the question, each sample as it finishes, the choice) for
the views.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..llm.builtin import llm
from ._program import emit_event, program

__all__ = ["RATE_PROMPT", "best_of_n", "extract_answer", "majority", "parse_rating", "self_consistency"]

RATE_PROMPT = (
    "Rate how well the answer below answers the question, on a scale of 1 to 10 (10 is best). "
    "Reply with the number only.\n\n[Question]\n{question}\n\n[Answer]\n{answer}\n\nRating:"
)


# ----------------------------------------------------------------------------------- the programs
@program
def self_consistency(question, n=5, temperature=0.7, top_p=1.0, max_tokens=256, seed=0, extract=None):
    """Sample `n` answers, extract a short answer from each, return the majority's first sample.

    Returns {"answer": str, "samples": [str], "extracted": [str], "votes": {str: int},
    "chosen": int (index of the returned sample), "program": "self-consistency"}."""
    emit_event("program.samples.question", text=question, program="self-consistency", n=n)
    samples = [sample(question, k, temperature, top_p, max_tokens, seed) for k in range(n)]
    keys = [extract_answer(s) if extract is None else str(extract(s)) for s in samples]
    winner, votes = majority(keys)
    chosen = keys.index(winner)
    emit_event("program.samples.choice", index=chosen, reason=f"{votes[winner]} of {n} votes for {winner!r}")
    return {"answer": samples[chosen], "samples": samples, "extracted": keys, "votes": votes, "chosen": chosen,
            "program": "self-consistency"}


@program
def best_of_n(question, n=4, temperature=0.7, top_p=1.0, max_tokens=256, seed=0, score="judge"):
    """Sample `n` answers, score each (a function, or "judge": the model rates it), keep the best.

    Returns {"answer": str, "samples": [str], "scores": [float], "chosen": int,
    "ratings": [str] (the judge's raw replies; empty with a scoring function), "program": "best-of-n"}."""
    emit_event("program.samples.question", text=question, program="best-of-n", n=n)
    samples = [sample(question, k, temperature, top_p, max_tokens, seed) for k in range(n)]
    if score == "judge":
        ratings = [llm(RATE_PROMPT.format(question=question, answer=s), max_tokens=8) for s in samples]
        scores = [parse_rating(r) for r in ratings]
    else:
        ratings = []
        scores = [float(score(s)) for s in samples]
    chosen = scores.index(max(scores))
    emit_event("program.samples.choice", index=chosen, reason=f"score {scores[chosen]:g}, the highest of {n}")
    return {"answer": samples[chosen], "samples": samples, "scores": scores, "chosen": chosen, "ratings": ratings,
            "program": "best-of-n"}


@program
def sample(question, k, temperature, top_p, max_tokens, seed):
    """Sample `k` (seed `seed + k`); the views get it as soon as it is back."""
    text = llm(question, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed + k)
    emit_event("program.samples.sample", index=k, text=text)
    return text


# --------------------------------------------------------- plain Python helpers (called inline)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def extract_answer(text: str) -> str:
    """The short answer a sample gives: its last number ("1,000" -> "1000"), else its first
    non-empty line, lower-cased, without punctuation at the ends and with spaces collapsed."""
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "").rstrip(".")
    for line in text.splitlines():
        key = " ".join(line.lower().strip().strip(".!?*:;\"'").split())
        if key:
            return key
    return ""


def majority(keys: list[str]) -> tuple[str, dict[str, int]]:
    """The most frequent key (ties: the one seen first) and the vote count of every key, in the
    order first seen."""
    if not keys:
        raise ValueError("self_consistency needs n >= 1 samples")
    counts = Counter(keys)
    votes = {k: counts[k] for k in dict.fromkeys(keys)}
    best = max(votes.values())
    return next(k for k, v in votes.items() if v == best), votes


_RATING = re.compile(r"\b(10|[1-9])(?:\s*/\s*10)?\b")


def parse_rating(reply: str) -> float:
    """The first rating 1-10 in a judge's reply ("7", "7/10", "Rating: 8"); 0 when there is none."""
    m = _RATING.search(reply)
    return float(m.group(1)) if m else 0.0


def samples_of(value: Any) -> list[str]:
    """The samples of a sampling program's result (empty for anything else)."""
    return list(value.get("samples", [])) if isinstance(value, dict) else []
