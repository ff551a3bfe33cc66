# Streaming Skeleton-of-Thought (Ning et al., ICLR 2024) with the library program `sot`.
#
#     epic run examples/sot_streaming.py --backend sim
#     epic run examples/sot_streaming.py                    # the bundled SmolLM2 (a real model)
#
# Epic code, not a Python module: `sot` and `llm` are names every epic program sees (imports are not
# allowed), and the last bare expression is the program's value.
#
# With stream=True the skeleton streams line by line and each point's expansion is dispatched the
# moment its line is complete, so expanding point 1 overlaps with writing point 5 of the skeleton.
# router=True first asks the model whether the answer is a list of independent points (SoT-R); the
# program decodes normally when it is not, and also when the skeleton has fewer than two points (the
# simulated model writes sentences, not lists, unless a test scripts its answers).
# ruff: noqa: F821, B018

question = "What are the most effective ways to deal with stress?"
out = sot(question, stream=True, max_points=6, max_tokens=96)
print("used SoT:", out["used_sot"])
for index, text in out["points"]:
    print(f"  point {index}: {text}")
out["answer"]
