# Tree of Thoughts (Yao et al., 2023) on the Game of 24, with the library program `tot24`:
# breadth-first search where the model proposes next steps ("4 + 8 = 12 (left: 6 12)") for every
# state of the frontier and values every new state (sure / likely / impossible); the 5 best survive.
# All proposals of a level run together, then all evaluations: no gather, just loops.
#
#     epic run examples/tot24.py --backend sim
#
# With the unscripted sim the proposals are not arithmetic, so nothing is solved (and no crash).
# Epic code, not a Python module: `tot24` is a builtin (imports are not allowed), and the last
# bare expression is the program's value.
# ruff: noqa: F821, B018, B905

puzzles = [[4, 9, 10, 13], [1, 4, 8, 8]]
results = [tot24(numbers, breadth=5, depth=3) for numbers in puzzles]
[{"numbers": numbers, "solved": out["solved"], "expression": out["expression"], "steps": out["steps"],
  "explored": out["explored"]} for numbers, out in zip(puzzles, results)]
