# Skeleton-of-Thought (Ning et al., ICLR 2024): ask for a short outline first, expand every point
# of the outline in parallel, then join the expansions into one answer.
#
#     epic run examples/sot.py --backend sim
#
# Epic code, not a Python module: `llm` is a builtin of the language (imports are not allowed),
# and the last bare expression is the program's value.
# ruff: noqa: F821, B018, B905

question = "How can a small team make its software releases more reliable?"


def parse_points(text, max_points):
    # One point per non-empty line with its numbering stripped. A model that ignored the format
    # (or the simulated one) wrote sentences instead: then each sentence is a point.
    lines = [line.strip() for line in text.split("\n") if line.strip() != ""]
    if len(lines) < 2:
        lines = [part.strip() for part in text.split(".") if len(part.strip()) > 3]
    points = [line.lstrip("0123456789.)-* ").strip() for line in lines]
    return [p for p in points if p != ""][:max_points]


# 1. The skeleton. `prefill` starts the answer with "1." so the model continues a numbered list;
#    the response is the continuation, so the "1." is put back before parsing.
skeleton = llm(
    "Write only the skeleton of an answer to the question: 3 to 5 numbered points "
    + "of 3 to 8 words each, no details.\nQuestion: " + question,
    prefill="1.",
    max_tokens=80,
)
points = parse_points("1." + skeleton, 5)
outline = "\n".join([f"{i + 1}. {p}" for i, p in enumerate(points)])

# 2. Expand each point. The expansions depend on the skeleton only, not on each other: they are
#    all dispatched together as soon as the skeleton is parsed.
expansions = [
    llm(f"Question: {question}\nOutline:\n{outline}\n"
        + f"Expand point {i + 1} ({p}) in one or two sentences.", max_tokens=60)
    for i, p in enumerate(points)
]

# 3. Join them in outline order.
answer = "\n".join([f"{i + 1}. {p}: {e.strip()}" for i, p, e in zip(range(len(points)), points, expansions)])
{"points": points, "answer": answer}
