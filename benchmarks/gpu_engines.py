"""The engines bench_gpu times side by side, each behind one call: `run(ids, new) -> token lists`.

Every engine gets the same prompts as token ids (the batcher's own chat-template encoding) and
decodes exactly `new` tokens per row, greedy, EOS ignored, so the work is the same and only the
engine differs:

* `BatcherEngine`: the project's shared batcher (`epic_kernel.llm.batcher.Batcher`), prefix cache on
  or off. Requests go in through `submit` from an event loop, as a notebook run's calls do.
* `ContinuousEngine`: transformers' own continuous batching (`ContinuousBatchingManager`, paged
  attention; the engine behind `model.generate_batch`), one manager kept running across runs.
* `GenerateEngine`: plain `model.generate` on one left-padded static batch, with the default
  dynamic cache, with `cache_implementation="static"`, and with the static cache compiled by
  `torch.compile(mode="reduce-overhead")` (CUDA graphs; transformers does this itself on CUDA).

`timed()` turns one engine into the numbers the report shows: wall time for `new` tokens, the time
to the first token (the same calls with one token each, which is prefill plus one step), and the
time of a decode step, (wall - first token) / (new - 1). Nothing here imports a package the GPU
image lacks; torch and transformers are imported where they are used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from epic_kernel.llm.base import Backend, LLMRequest, LLMResponse, SamplingParams

__all__ = ["BatcherEngine", "ContinuousEngine", "FreshBatcher", "GenerateEngine", "Prompt", "ScriptedSkeleton",
           "batcher_invariance", "sync", "timed"]


def sync(device: Any) -> None:
    """Wait for the device's queued work, so a host clock reads finished work."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Timing:
    rows: int
    new: int
    wall_s: float
    first_token_s: float

    def as_dict(self) -> dict:
        step = (self.wall_s - self.first_token_s) / max(1, self.new - 1)
        return {"rows": self.rows, "new": self.new, "wall_s": round(self.wall_s, 4),
                "first_token_s": round(self.first_token_s, 4), "step_ms": round(step * 1000, 3),
                "tok_per_s": round(self.rows * self.new / self.wall_s, 1)}


@dataclass(frozen=True)
class Prompt:
    text: str          # what the batcher is sent (it applies the chat template itself)
    ids: list[int]     # the same prompt as the batcher encodes it: what the other engines are sent


def timed(engine: Any, prompts: list[Prompt], new: int, device: Any) -> dict:
    """One timed run of `new` tokens per row, after the same rows' one-token run (first-token latency)."""
    sync(device)
    t0 = time.perf_counter()
    engine.run(prompts, 1)
    sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = engine.run(prompts, new)
    sync(device)
    wall = time.perf_counter() - t0
    bad = [len(t) for t in out if len(t) != new]
    if bad:
        raise RuntimeError(f"{type(engine).__name__} returned {len(bad)} rows of the wrong length (e.g. {bad[0]} "
                           f"tokens instead of {new}): the rows did not all decode a fixed length")
    return Timing(len(prompts), new, wall, first).as_dict()


# ---------------------------------------------------------------------------------------- the batcher
class BatcherEngine:
    """The shared batcher on an already-built model (no loading by name: the weights are random)."""

    def __init__(self, model: Any, tokenizer: Any, *, prefix: bool, max_rows: int, name: str = "bench"):
        from epic_kernel.llm.batcher import Batcher

        self.batcher = Batcher(model, tokenizer, name=name, max_batch_size=max_rows,
                               max_queue=max(1024, 2 * max_rows), prefix_cache_mb=256.0 if prefix else 0.0)

    def prompt(self, text: str) -> Prompt:
        return Prompt(text, self.batcher.encode(LLMRequest.build(text)))

    def run(self, prompts: list[Prompt], new: int, hook: Any = None) -> list[list[int]]:
        """All rows submitted at once from one event loop, as a fan-out's calls are; `hook` watches row 0."""
        return asyncio.run(self._run(prompts, new, hook))

    async def _run(self, prompts: list[Prompt], new: int, hook: Any) -> list[list[int]]:
        params = SamplingParams(max_tokens=new)
        tickets = [self.batcher.submit(LLMRequest.build(p.text, params=params), ignore_eos=True,
                                       logits_hook=hook if i == 0 else None) for i, p in enumerate(prompts)]
        self.batcher.flush()
        await asyncio.gather(*(t.result() for t in tickets))
        return [list(t.token_ids) for t in tickets]

    def stats(self) -> dict:
        return self.batcher.stats()

    def close(self) -> None:
        self.batcher.close()


class FreshBatcher:
    """A new batcher (prefix cache empty) for every run, on the same model: each run measures N calls
    that share a prefix arriving together, not a repeat of prompts an earlier run left in the cache.
    `last_stats` holds the batcher's counters (prefill tokens requested and computed) of the last run."""

    def __init__(self, model: Any, tokenizer: Any, *, prefix: bool, max_rows: int, name: str = "bench"):
        self.args = dict(prefix=prefix, max_rows=max_rows, name=name)
        self.model, self.tokenizer = model, tokenizer
        self.last_stats: dict = {}

    def run(self, prompts: list[Prompt], new: int) -> list[list[int]]:
        b = BatcherEngine(self.model, self.tokenizer, **self.args)
        try:
            out = b.run(prompts, new)
            self.last_stats = b.stats()
            return out
        finally:
            b.close()


def batcher_invariance(engine: BatcherEngine, probe: Prompt, others: list[Prompt], sizes: list[int],
                       new: int) -> dict:
    """Row 0's logits for `new` steps decoded alone, beside k-1 other rows for each k in `sizes`, and
    alone again (with the prefix cache on, its prompt is then resumed from a cache hit): are they
    bitwise equal? Greedy answers can only be the same under every strategy if they are."""
    import torch

    def logits_of(rows: list[Prompt]) -> torch.Tensor:
        seen: list[torch.Tensor] = []

        def hook(_ids: Any, row: torch.Tensor) -> torch.Tensor:
            seen.append(row.detach().to("cpu", copy=True))
            return row

        engine.run(rows, new, hook=hook)
        return torch.stack(seen)

    alone = logits_of([probe])
    out: dict[str, Any] = {"steps": new, "rows": {}}
    for k in sizes:
        got = logits_of([probe, *others[:k - 1]])
        out["rows"][str(k)] = {"bitwise_equal": bool(torch.equal(alone, got)),
                               "max_abs_diff": float((alone - got).abs().max()),
                               "same_greedy": bool(torch.equal(alone.argmax(-1), got.argmax(-1)))}
    again = logits_of([probe])
    out["alone_again"] = {"bitwise_equal": bool(torch.equal(alone, again)),
                          "max_abs_diff": float((alone - again).abs().max())}
    out["all_bitwise_equal"] = all(r["bitwise_equal"] for r in out["rows"].values()) and \
        out["alone_again"]["bitwise_equal"]
    return out


# ---------------------------------------------------------------------------- transformers' engines
class ContinuousEngine:
    """transformers' continuous batching: a `ContinuousBatchingManager` (paged attention, its own
    scheduler and, on CUDA, its own CUDA graphs), started once and fed each run's requests."""

    def __init__(self, model: Any, *, max_rows: int, max_len: int, max_batch_tokens: int = 8192,
                 block_sharing: bool = True):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        # Sized for the workload, not from free memory: given the number of blocks alone, transformers
        # solves for the largest batch of tokens that fits, and its static tensors (a mask of tokens x
        # pages) grow with it; 8192 tokens per forward is its own default, 256 tokens a block too.
        block = 256
        size_kw = "page_size" if "page_size" in _fields(ContinuousBatchingConfig) else "block_size"
        cfg = ContinuousBatchingConfig(**{size_kw: block}, num_blocks=max_rows * -(-max_len // block) + 16,
                                       max_batch_tokens=max_batch_tokens, allow_block_sharing=block_sharing,
                                       max_memory_percent=0.5)
        gen = GenerationConfig(do_sample=False, max_new_tokens=max_len, pad_token_id=model.config.pad_token_id,
                               eos_token_id=-1)      # no EOS: every row decodes its max_new_tokens
        t0 = time.perf_counter()
        self.manager = model.init_continuous_batching(generation_config=gen, continuous_batching_config=cfg)
        self.manager.warmup()
        self.manager.start()
        self.setup_s = time.perf_counter() - t0
        self.config = {k: _plain(getattr(self.manager.continuous_batching_config, k, None))
                       for k in ("block_size", "page_size", "num_blocks", "max_batch_tokens", "max_requests_per_batch",
                                 "use_cuda_graph", "use_async_batching", "allow_block_sharing")}
        self.attention = model.config._attn_implementation

    def run(self, prompts: list[Prompt], new: int) -> list[list[int]]:
        ids = [self.manager.add_request(p.ids, max_new_tokens=new, eos_token_id=-1) for p in prompts]
        if any(i is None for i in ids):
            raise RuntimeError("transformers' continuous batching manager refused requests")
        done: dict[str, Any] = {}
        while len(done) < len(ids):
            r = self.manager.get_result(timeout=120)
            if r is None:
                raise RuntimeError(f"transformers' continuous batching returned {len(done)} of {len(ids)} "
                                   f"results (running: {self.manager.is_running()})")
            if r.is_finished():
                if r.error is not None:
                    raise RuntimeError(f"transformers' continuous batching failed a request: {r.error}")
                done[r.request_id] = r
        return [list(done[i].generated_tokens) for i in ids]

    def close(self) -> None:
        self.manager.stop(block=True, timeout=60)
        self.manager.destroy()


def _fields(cls: type) -> set[str]:
    """A config class's field names (transformers renamed `block_size` to `page_size` after 5.17)."""
    import inspect

    return set(inspect.signature(cls).parameters)


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


class GenerateEngine:
    """`model.generate` on one static, left-padded batch. `cache`: None (the dynamic cache) or
    "static"; `compiled`: let transformers compile the decode step (torch.compile, mode
    "reduce-overhead": CUDA graphs), which it does on CUDA for a static cache."""

    def __init__(self, model: Any, pad_id: int, *, cache: str | None = None, compiled: bool = False):
        self.model, self.pad_id, self.cache, self.compiled = model, pad_id, cache, compiled

    def run(self, prompts: list[Prompt], new: int) -> list[list[int]]:
        import torch

        width = max(len(p.ids) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p.ids)) + p.ids for p in prompts], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in prompts], device=self.model.device)
        extra: dict[str, Any] = {"cache_implementation": self.cache} if self.cache else {}
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                      do_sample=False, pad_token_id=self.pad_id, disable_compile=not self.compiled,
                                      **extra)
        return out[:, width:].tolist()

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------- SoT
class ScriptedSkeleton(Backend):
    """A backend over the batcher for SoT with a random model: every call decodes exactly its
    `max_tokens` on the model (EOS and stop strings ignored, so lengths are fixed), and the
    skeleton call's text is replaced by a scripted numbered list (random weights write no skeleton),
    so the program expands a fixed number of points. The timing is the model's; only the skeleton's
    words are scripted."""

    name = "transformers"
    capabilities = frozenset({"prefill", "raw", "seed"})

    def __init__(self, batcher: Any, skeleton: str):
        super().__init__()
        self.batcher = batcher
        self.feeders = batcher.feeders        # the batcher flushes when every run feeding it waits on calls
        self.default_model = batcher.name
        self.skeleton = skeleton
        self.skeleton_calls = 0

    async def generate(self, request: LLMRequest) -> LLMResponse:
        self.check(request)
        ticket = self.batcher.submit(request.with_params(stop=()), ignore_eos=True)
        try:
            resp = await ticket.result()
        finally:
            ticket.cancel()
        last = (request.messages or ({},))[-1].get("content", "")
        if request.prefill == "1." and "Skeleton:" in last:
            self.skeleton_calls += 1
            resp = dataclasses.replace(resp, text=self.skeleton)
        return resp

    def on_all_quiescent(self) -> None:
        self.batcher.flush()
