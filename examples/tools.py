# Tools: the model picks a tool, plain functions do the exact work, the model writes the answer.
# The tools are ordinary defs (cheap, run inline); each question is its own chain of calls
# (choose -> tool -> answer), and the three chains run in parallel.
#
#     epic run examples/tools.py --backend sim
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905


def word_count(text):
    return str(len(text.split()))


def reverse(text):
    return text[::-1]


def uppercase(text):
    return text.upper()


TOOLS = {"word_count": word_count, "reverse": reverse, "uppercase": uppercase}

questions = [
    ("How many words are in this text?", "the quick brown fox jumps over the lazy dog"),
    ("What is this text backwards?", "stressed"),
    ("Write this text in capital letters.", "opportunistic evaluation"),
]


def choose_tool(question):
    reply = llm(f"Tools: {', '.join(TOOLS)}.\nWhich tool answers this question: {question}\n"
                + "Answer with the tool name only.", max_tokens=8).lower()
    named = [name for name in TOOLS if name in reply]
    if named:
        return named[0]
    # A small (or simulated) model may answer something else: fall back on keywords.
    if "how many" in question.lower():
        return "word_count"
    if "backwards" in question.lower():
        return "reverse"
    return "uppercase"


def solve(question, text):
    tool = choose_tool(question)
    result = TOOLS[tool](text)
    answer = llm(f"Question: {question}\nText: {text}\nThe tool {tool} returned: {result}\n"
                 + "Answer the question in one sentence.", max_tokens=40)
    return {"question": question, "tool": tool, "tool_result": result, "answer": answer.strip()}


[solve(q, text) for q, text in questions]
