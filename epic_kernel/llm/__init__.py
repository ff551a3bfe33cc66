"""The LLM layer: the llm() builtin's backends (sim, transformers, openai, replay), the batcher and the cache."""
