"""Pairwise judging of two answers by a model: the two protocols of the Skeleton-of-Thought paper.

The SoT paper reports every speed-up next to a *net win rate*: an LLM judge compares the SoT answer
with normal decoding's on each question, and net win rate = (wins - losses) / questions. It uses two
protocols, both asked in both answer orders, because LLM judges favour a position:

fastchat   FastChat's pairwise review (the Vicuna evaluation): the question and "Assistant 1/2"'s
           answers, then a request to score each 1-10; the reply's first line holds the two scores.
           Parsed like the SoT repository does: the first line as two numbers, else one "(x, y)" pair
           anywhere in the reply.
llmzoo     LLMZoo's ranking: the same layout, then a request to rank the assistants under one
           metric (general, relevance, diversity, coherence, immersion, integrity), answering with
           an order such as "Assistant 2 > Assistant 1" (or "=" for a tie).

Both orders: the candidate is Assistant 1 in the first request and Assistant 2 in the second; both
requests go out at once (they are independent epic calls). A side's verdict is "win", "loss" or
"tie" for the candidate; a verdict that flips with the order becomes a tie (a judge that always
prefers Assistant 1 gives ties, never wins); a reply that cannot be parsed makes the pair
"unparsed", counted apart and never as a win or a loss. The raw replies are kept in the result.

    from epic_kernel.programs import judge_pair
    v = judge_pair(question, candidate, reference, backend=judge_backend)
    v["verdict"], v["forward"]["reply"], v["backward"]["reply"]

`judge_answers` judges many candidates against one reference under the chosen protocols in one
epic run (every judge call in parallel); `net_win_rate` folds verdicts into the paper's number.

Which judges give meaningful verdicts: see docs/decoding.md (the paper used GPT-4; the bundled
135M model is measured there and is no judge).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..llm.builtin import llm
from ._program import program

__all__ = ["FASTCHAT_PROMPT", "LLMZOO_METRICS", "PROTOCOLS", "VERDICTS", "combine", "fastchat_prompt",
           "cut_in_half", "judge_answers", "judge_pair", "judge_rank", "llmzoo_prompt", "net_win_rate", "parse_order",
           "reliability",
           "parse_score_pair", "side_verdict"]

PROTOCOLS = ("fastchat", "llmzoo")
VERDICTS = ("win", "tie", "loss", "unparsed")

# FastChat's pairwise review layout (fastchat/eval: the question, both answers, then the reviewer's
# instructions), reworded; the output format is the original's so its parser applies.
FASTCHAT_PROMPT = (
    "[Question]\n{question}\n\n"
    "[The Start of Assistant 1's Answer]\n{answer_1}\n\n[The End of Assistant 1's Answer]\n\n"
    "[The Start of Assistant 2's Answer]\n{answer_2}\n\n[The End of Assistant 2's Answer]\n\n"
    "[System]\nWe would like your feedback on the two AI assistants' answers to the question above. "
    "Rate the helpfulness, relevance, accuracy and level of detail of each answer. Each assistant gets one "
    "overall score from 1 to 10; a higher score means a better answer.\n"
    "First write one line with only the two scores, for Assistant 1 and Assistant 2, separated by a space. "
    "Then, on the next lines, explain your evaluation. Avoid any bias: the order in which the answers are "
    "shown must not affect your judgment.\n\n"
)

# LLMZoo's metrics (llmzoo/eval), one sentence each, reworded.
LLMZOO_METRICS = {
    "general": "helpfulness, relevance, accuracy and level of detail, taken together",
    "relevance": "how closely, accurately and in how much detail the answer addresses the question, "
                 "without repetition or redundancy",
    "diversity": "how comprehensive the answer is, giving several angles and details rather than one narrow view",
    "coherence": "how well the answer is organised: logical, consistent, each part following from the last",
    "immersion": "for role-play questions, how well the answer stays in the role asked for; otherwise how "
                 "engaging and natural it reads",
    "integrity": "how complete and self-contained the answer is: nothing cut off, no missing part",
}
LLMZOO_PROMPT = (
    "[Question]\n{question}\n\n{answers}\n\n"
    "[System]\nWe would like you to compare the {num_str} AI assistants' answers above on one metric: "
    "{metric} ({description}).\nRank the assistants from best to worst. Think it over, then finish "
    "with one line giving the ranking in the form \"Assistant 2 > Assistant 1\" (use \"=\" for a tie).\n\n"
)
_NUM_STR = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


# ----------------------------------------------------------------------------------- the programs
@program
def judge_pair(question, candidate, reference, max_tokens=128):
    """FastChat's pairwise scores, asked in both orders at once; the candidate's verdict against
    `reference` ("win", "tie", "loss" or "unparsed") with both raw replies."""
    forward = llm(fastchat_prompt(question, candidate, reference), max_tokens=max_tokens)
    backward = llm(fastchat_prompt(question, reference, candidate), max_tokens=max_tokens)
    return combine("fastchat", score_side(forward, 0), score_side(backward, 1))


@program
def judge_rank(question, candidate, reference, metric="general", max_tokens=256):
    """LLMZoo's ranking under `metric`, asked in both orders at once; verdict as `judge_pair`'s."""
    forward = llm(llmzoo_prompt(question, [candidate, reference], metric), max_tokens=max_tokens)
    backward = llm(llmzoo_prompt(question, [reference, candidate], metric), max_tokens=max_tokens)
    return combine("llmzoo-" + metric, rank_side(forward, 0), rank_side(backward, 1))


@program
def judge_answers(question, candidates, reference, protocols=("fastchat",), metrics=("general",),
                  max_tokens=256):
    """Every candidate against `reference` under every protocol (and LLMZoo metric), all in parallel.

    Returns one dict per candidate: {"fastchat": verdict, "llmzoo-general": verdict, ...}."""
    return [judge_one(question, c, reference, protocols, metrics, max_tokens) for c in candidates]


@program
def judge_one(question, candidate, reference, protocols, metrics, max_tokens):
    fastchat = {"fastchat": judge_pair(question, candidate, reference, min(max_tokens, 128))} \
        if "fastchat" in protocols else {}
    llmzoo = {"llmzoo-" + metric: judge_rank(question, candidate, reference, metric, max_tokens)
              for metric in metrics} if "llmzoo" in protocols else {}
    return merged(fastchat, llmzoo)


# --------------------------------------------------------- plain Python helpers (called inline)
def fastchat_prompt(question: str, answer_1: str, answer_2: str) -> str:
    return FASTCHAT_PROMPT.format(question=question, answer_1=answer_1, answer_2=answer_2)


def llmzoo_prompt(question: str, answers: list[str], metric: str) -> str:
    if metric not in LLMZOO_METRICS:
        raise ValueError(f"unknown LLMZoo metric {metric!r}; choose from {', '.join(LLMZOO_METRICS)}")
    blocks = "\n\n".join(f"[Assistant {i}]\n{a}\n\n[End of Assistant {i}]" for i, a in enumerate(answers, 1))
    return LLMZOO_PROMPT.format(question=question, answers=blocks, num_str=_NUM_STR[len(answers)], metric=metric,
                                description=LLMZOO_METRICS[metric])


_NUM = r"(\d+(?:\.\d+)?)"
_PAIR = re.compile(rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)")


def parse_score_pair(reply: str) -> tuple[float, float] | None:
    """FastChat's two scores: the reply's first line as "x y" (or "x, y"), else exactly one
    "(x, y)" anywhere in it; None when neither is there."""
    lines = reply.strip().split("\n")
    first = lines[0].replace(",", " ").split()
    if len(first) == 2:
        try:
            return float(first[0]), float(first[1])
        except ValueError:
            pass
    pairs = _PAIR.findall(reply)
    if len(pairs) == 1:
        return float(pairs[0][0]), float(pairs[0][1])
    return None


_ORDER = re.compile(r"Assistant\s*\d+(?:\s*[>=]\s*Assistant\s*\d+)+", re.IGNORECASE)


def parse_order(reply: str, n: int) -> list[int] | None:
    """LLMZoo's ranking: the first "Assistant i > Assistant j [= ...]" chain naming all `n`
    assistants, as each assistant's rank (1 = best; equal ranks for "="). None when there is none."""
    text = reply.replace(">=", ">").replace(">>", ">")
    for m in _ORDER.finditer(text):
        chain = m.group(0)
        who = [int(x) for x in re.findall(r"\d+", chain)]
        if sorted(who) != list(range(1, n + 1)):
            continue
        ops = re.findall(r"[>=]", chain)
        ranks = [0] * n
        rank, ties = 1, 0
        ranks[who[0] - 1] = rank
        for op, a in zip(ops, who[1:], strict=True):
            if op == ">":
                rank += ties + 1
                ties = 0
            else:
                ties += 1
            ranks[a - 1] = rank
        return ranks
    return None


def side_verdict(candidate: float, reference: float) -> str:
    """"win" when the candidate's value is higher (better), "loss" when lower, else "tie"."""
    return "win" if candidate > reference else "loss" if candidate < reference else "tie"


def score_side(reply: str, candidate_at: int) -> dict[str, Any]:
    """One FastChat request's reading: the scores and the candidate's verdict (candidate at
    position `candidate_at`, 0 or 1)."""
    scores = parse_score_pair(reply)
    verdict = "unparsed" if scores is None else side_verdict(scores[candidate_at], scores[1 - candidate_at])
    return {"reply": reply, "scores": None if scores is None else list(scores), "verdict": verdict,
            "candidate_is": f"Assistant {candidate_at + 1}"}


def rank_side(reply: str, candidate_at: int) -> dict[str, Any]:
    """One LLMZoo request's reading: the ranks (1 = best) and the candidate's verdict."""
    ranks = parse_order(reply, 2)
    verdict = "unparsed" if ranks is None else side_verdict(-ranks[candidate_at], -ranks[1 - candidate_at])
    return {"reply": reply, "ranks": ranks, "verdict": verdict, "candidate_is": f"Assistant {candidate_at + 1}"}


def combine(protocol: str, forward: dict[str, Any], backward: dict[str, Any]) -> dict[str, Any]:
    """Both orders into one verdict: unparsed if either side is; the common verdict if they agree;
    a tie if they differ (the order decided it). `consistent`: both sides gave the same verdict."""
    a, b = forward["verdict"], backward["verdict"]
    if "unparsed" in (a, b):
        verdict, consistent = "unparsed", None
    else:
        verdict, consistent = (a if a == b else "tie"), a == b
    return {"protocol": protocol, "verdict": verdict, "consistent": consistent, "forward": forward,
            "backward": backward}


def merged(a: dict, b: dict) -> dict:
    return {**a, **b}


def net_win_rate(verdicts: Iterable[str]) -> dict[str, Any]:
    """(wins - losses) / questions, with the counts; unparsed verdicts count as questions (neither
    a win nor a loss) and are reported. None when there are no verdicts."""
    counts = {v: 0 for v in VERDICTS}
    for v in verdicts:
        if v not in counts:
            raise ValueError(f"not a verdict: {v!r}; one of {', '.join(VERDICTS)}")
        counts[v] += 1
    n = sum(counts.values())
    rate = (counts["win"] - counts["loss"]) / n if n else None
    return {"net_win_rate": rate, "questions": n, **counts}


# ------------------------------------------------------------------------- how far to trust a judge
def cut_in_half(answer: str) -> str:
    """A control answer: the first half of `answer`'s words (cut mid-way, as a capped answer is)."""
    words = answer.split()
    return " ".join(words[: max(1, len(words) // 2)])


def reliability(verdicts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A judge's reliability on control pairs (candidate = the complete answer, reference = the
    same answer cut in half), each judged in both orders:

    accuracy           complete answer judged better, over all pairs (unparsed pairs count as wrong)
    order_consistency  pairs whose two orders gave the same verdict, over the pairs parsed both ways
    unparsed           pairs with a reply that could not be read (never a win)
    sides_unparsed     single replies that could not be read, over all replies (2 per pair)."""
    vs = list(verdicts)
    parsed = [v for v in vs if v["verdict"] != "unparsed"]
    sides = [s for v in vs for s in (v["forward"], v["backward"])]
    return {"pairs": len(vs), "accuracy": sum(v["verdict"] == "win" for v in vs) / len(vs) if vs else None,
            "order_consistency": sum(bool(v["consistent"]) for v in parsed) / len(parsed) if parsed else None,
            "unparsed": len(vs) - len(parsed),
            "sides_unparsed": sum(s["verdict"] == "unparsed" for s in sides) / len(sides) if sides else None,
            **{k: sum(v["verdict"] == k for v in vs) for k in ("win", "tie", "loss")}}
