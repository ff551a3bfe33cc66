"""Tiny causal LMs built fully offline, for tests and benchmarks of the local backend (the model
names "tiny", "tiny10m", ... resolve here: llm.models).

Nothing here downloads anything: the tokenizer is a byte-level BPE trained by `tokenizers` on a
deterministic synthetic corpus (template sentences plus CPython's Zen of Python), and the model is a
randomly initialised `LlamaForCausalLM` under `torch.manual_seed(0)`, written with `save_pretrained` so
the real `from_pretrained` loading path is what tests exercise. Rebuilding gives byte-identical files
with the same torch/transformers versions; tests should still assert on behaviour, not on hashes.

Sizes (hidden, layers, heads, intermediate), measured in notes/models.md section 3:
"tiny" 0.13 M params (unit tests), "1m" 0.86 M, "10m" 10 M (benchmarks), "50m" 48 M.
`train_steps > 0` trains a few hundred CPU steps so the model answers corpus-like prompts with short
sentences that end in EOS (300 steps on "tiny" take ~6.5 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import threading
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SIZES", "build_tiny_model", "corpus"]

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
SIZES: dict[str, tuple[int, int, int, int]] = {   # name: (hidden, layers, heads, intermediate)
    "tiny": (64, 2, 4, 176),
    "1m": (128, 4, 4, 344),
    "10m": (320, 8, 5, 864),
    "50m": (576, 12, 9, 1536),
}
_MARKER = "epic-tinylm.json"          # written last: its presence means the directory is complete
_lock = threading.Lock()


def corpus(n_lines: int = 4000, seed: int = 0) -> list[str]:
    """Deterministic English-ish sentences, the Zen of Python and two code lines (no downloads)."""
    rng = random.Random(seed)
    subj = "the cat|a dog|the model|my friend|the program|a user|the server|our team|the batch|an agent".split("|")
    verb = "reads|writes|answers|sends|builds|tests|sees|likes|finds|returns".split("|")
    obj = "a book|the prompt|some tokens|a story|the request|an answer|the cache|a list|the result|a question".split("|")
    tail = ["", " today", " again", " quickly", " in the morning", " with care", " for you", " at night"]
    lines = []
    for _ in range(n_lines):
        s = f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}{rng.choice(tail)}."
        lines.append(s[0].upper() + s[1:])
    with contextlib.redirect_stdout(io.StringIO()):
        import this  # the Zen ships with CPython (rot13 in this.s); importing it prints it
    zen = "".join(this.d.get(c, c) for c in this.s)
    return lines + zen.splitlines() + ['{"name": "x", "value": 1}', "def f(x):\n    return x + 1"]


def _tokenizer(vocab_size: int, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>", padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _train(model, tok, steps: int, seed: int) -> None:
    """A few AdamW steps on the corpus joined by EOS, so greedy output ends sentences with </s>."""
    import torch

    ids = torch.tensor(tok("</s>".join(corpus(seed=seed)), add_special_tokens=False).input_ids)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch, width = 32, 64
    model.train()
    for _ in range(steps):
        ix = torch.randint(0, len(ids) - width - 1, (batch,))
        x = torch.stack([ids[i:i + width] for i in ix])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def build_tiny_model(path: str | os.PathLike, size: str = "tiny", *, train_steps: int = 0,
                     vocab_size: int = 512, seed: int = 0, max_positions: int = 2048) -> str:
    """Build (or reuse) a tiny Llama + tokenizer directory at `path` and return it as a string.

    Idempotent: a directory that already holds a model built with the same arguments is reused as is,
    so a session fixture or a benchmark can call this freely. A directory built with other arguments
    is rebuilt in place.
    """
    if size not in SIZES:
        raise ValueError(f"unknown tiny model size {size!r}; choose one of {', '.join(SIZES)}")
    out = Path(path)
    spec = {"size": size, "train_steps": train_steps, "vocab_size": vocab_size, "seed": seed,
            "max_positions": max_positions, "arch": "llama"}
    with _lock:
        marker = out / _MARKER
        if marker.exists():
            try:
                if json.loads(marker.read_text()) == spec:
                    return str(out)
            except (OSError, ValueError):
                pass
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

        tok = _tokenizer(vocab_size, seed)
        hidden, layers, heads, inter = SIZES[size]
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter,
                          num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                          max_position_embeddings=max_positions, tie_word_embeddings=True, **ids)
        model = LlamaForCausalLM(cfg)
        model.generation_config = GenerationConfig(**ids)
        if train_steps > 0:
            _train(model, tok, train_steps, seed)
        out.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        marker.write_text(json.dumps(spec))
    return str(out)
