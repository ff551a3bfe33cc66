# Nested tool use with the library program `answer_with_tools`: the model answers, or writes
# `CALL calculator: 2*(3+4)`, `CALL lookup: capital of France` or `CALL ask: <sub-question>` lines;
# the tools run, their results feed the next model call, several levels deep. Calls of one reply,
# and the questions below, are independent, so they all run in parallel.
#
#     epic run examples/nested_tools.py --backend sim
#
# With the unscripted sim the model never calls a tool: each answer is its first reply.
# Epic code, not a Python module: `answer_all` is a builtin (imports are not allowed), and the last
# bare expression is the program's value.
# ruff: noqa: F821, B018, B905

questions = [
    "How many more people live in Berlin than in Paris?",
    "What is 17 * 23 + 4?",
    "Which is the capital of Japan, and how many people live there?",
]
outs = answer_all(questions, max_depth=3)
[{"question": q, "answer": out["answer"], "tool_calls": len(out["steps"])} for q, out in zip(questions, outs)]
