# Fan-out / fan-in: several independent questions, then one call that needs every answer.
#
#     epic run examples/fanout.py --backend sim
#
# It reads as sequential Python, but every llm() call is dispatched as soon as its prompt is known:
# the four questions are in flight together, and only the summary waits (it needs all four).
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905

topics = ["volcanoes", "coral reefs", "glaciers", "deserts"]

# One call per topic. No answer depends on another, so all four run at the same time.
facts = [llm(f"Give one surprising fact about {topic}, in one sentence.", max_tokens=40) for topic in topics]

# The summary's prompt contains every fact, so this call starts once the four have finished.
notes = "\n".join([f"- {topic}: {fact.strip()}" for topic, fact in zip(topics, facts)])
summary = llm("Summarize these notes in two sentences:\n" + notes, max_tokens=60)

# The last expression is the program's value (like a notebook cell).
{"facts": dict(zip(topics, facts)), "summary": summary}
