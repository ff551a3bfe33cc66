# A tiny Tree of Thoughts (Yao et al., 2023): breadth-first search with a beam.
# At each level every kept partial plan proposes BRANCH next steps, the model scores each
# candidate, and the BEAM best survive. Proposals of one level run in parallel, then their scores.
#
#     epic run examples/tot.py --backend sim
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905

task = "Plan a weekend project to learn the basics of gardening."
BEAM = 2
BRANCH = 3
DEPTH = 2


def propose(plan, k):
    # Sampled (temperature > 0) with a different seed per branch, so the branches differ.
    step = llm(f"Task: {task}\nPlan so far:{plan}\nPropose the next step in one short sentence.",
               max_tokens=30, temperature=0.8, seed=k)
    first_line = (step.strip().split("\n") + [""])[0]
    return plan + "\n- " + first_line


def score(plan):
    reply = llm(f"Task: {task}\nPlan:{plan}\nRate this plan from 1 (bad) to 9 (great). "
                + "Answer with one digit.", max_tokens=4)
    digits = [c for c in reply if c.isdigit()]
    # No digit in the reply (a small or simulated model): score 0, ties keep proposal order.
    return int(digits[0]) if digits else 0


frontier = [""]
explored = 0
for _level in range(DEPTH):
    candidates = [propose(plan, k) for plan in frontier for k in range(BRANCH)]
    ranked = sorted([(-score(c), i, c) for i, c in enumerate(candidates)])
    frontier = [c for _, _, c in ranked[:BEAM]]
    explored = explored + len(candidates)

{"best_plan": frontier[0].strip(), "runner_up": frontier[1].strip(), "explored": explored}
