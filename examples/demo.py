# What `epic demo` runs: a small trip planner, written as plain sequential Python.
#
#     epic run examples/demo.py --backend sim
#
# Three independent questions, a follow-up for each answer, and a final call that needs them all.
# Opportunistic evaluation dispatches every call as soon as its prompt is known: the three
# questions run together, each follow-up starts as soon as its own answer is in, and only the
# final plan waits for everything.
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905

city = "Lisbon"
questions = [
    f"Name one famous sight in {city}. Answer in one sentence.",
    f"Name one typical dish of {city}. Answer in one sentence.",
    f"Which month is best for visiting {city}? Answer in one sentence.",
]

answers = [llm(q, max_tokens=32) for q in questions]
details = [llm(f"{a.strip()}\nAdd one practical tip about this, in one sentence.", max_tokens=32)
           for a in answers]

notes = "\n".join([f"- {a.strip()} {d.strip()}" for a, d in zip(answers, details)])
plan = llm(f"Notes about {city}:\n{notes}\nWrite a two-sentence plan for one day in {city}.", max_tokens=96)
plan
