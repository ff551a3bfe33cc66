"""A deterministic simulated model: scripted or hash-derived answers behind a GPU-like latency model.

Why it exists: teaching, tests and benchmarks need a model whose answers are repeatable and whose
timing behaves like a real batcher (so opportunistic evaluation visibly wins), without loading
weights. Everything here is pure Python and asyncio; nothing blocks the event loop.

Answers (`SimBackend.answer`)
    1. Scripted rules `(pattern, reply)`, first match wins: `re.search(pattern, text, re.DOTALL)` on
       the last user message (the raw prompt when `raw=True`). `reply` is a template for
       `match.expand` (`r"\\1"` works) or a callable `(request, match) -> str`.
    2. Then scripts (`scripts=`, `add_script`): callables `(request, rng) -> str | None` that write
       the free text of requests they recognise (None: not theirs), with the request's own seeded
       `rng`. A program that knows its prompts scripts the sim this way (`programs.sot.sim_script`
       answers SoT's skeleton prompts with numbered lists); the sim itself knows no program.
    3. Otherwise a pseudo-sentence from a fixed vocabulary, picked by a `random.Random` seeded with a
       SHA-256 digest of the request. Greedy requests (temperature 0) ignore `seed` and
       `sample_index`, like a real greedy decoder; sampled requests include them, so the k-th sample
       differs from the j-th. `max_tokens` and `stop` are not hashed: they only cut the answer, so a
       shorter budget yields a prefix of the longer answer, as with a real model.
    4. `choices=` returns one choice (hash-picked, or the first choice a scripted reply starts with);
       `regex=` returns a string that `re.fullmatch`es it (a scripted reply must already match it).
    5. The result is then cut to `max_tokens` (finish "length") and at the first `stop` string,
       which is not included (finish "stop"), in that order, as a server applies them.

Tokens are whitespace-separated words; one word costs `tokens_per_word` tokens.

Prefill convention: with `prefill="1."` the assistant turn is `prefill + continuation`, and the
response text is the *continuation only*, like chat APIs that accept a partial assistant message.
A scripted reply that starts with the prefill has it stripped; any other reply is taken as the
continuation. `regex=`/`choices=` constrain the continuation.

Latency (see `SimBackend` for the parameters)
    fixed `latency`: every request takes exactly that long, however many run at once (an
        infinitely parallel remote service); used to time the evaluator itself.
    batch-aware (default): pending requests form one batch when the feeding runs are all quiescent
        (`on_all_quiescent`), when `max_batch_size` are pending, or `flush_ms` after the first one
        arrived. One batch runs at a time per event loop (static batching); newcomers wait for the
        next batch, which starts as soon as the current one ends. A batch with B live requests costs
        `prefill_s * f(B)`, then `per_token_s * f(B)` per decode step, f(B) = 1 + batch_penalty*(B-1).
        B counts the requests still decoding, so finished and cancelled requests leave the batch.

Modules: `script` (scripted answers and the scripting hook), `regex` (a string matching a regex),
`answers` (answer synthesis: what a request gets), `clock` (the latency model and its batches),
`backend` (SimBackend, which puts them together).
"""

from __future__ import annotations

from .answers import VOCAB
from .backend import SimBackend
from .clock import SimStats
from .script import Reply, Script, SimScriptError, prompt_text

__all__ = ["VOCAB", "Reply", "Script", "SimBackend", "SimScriptError", "SimStats", "prompt_text"]
