"""One decode thread per model: iteration-level batching with a hand-written DynamicCache loop.

Requests come from any number of event loops (notebook runs, `epic serve`, benchmarks). Each becomes
a `Ticket`; the worker thread owns every tensor and all decode state, and hands results back with
`ticket.loop.call_soon_threadsafe`, so nothing in here ever blocks an event loop.

Scheduling policy (the loop in `_run`):

* Idle -> start a batch when the evaluator says every feeding run is quiescent (`flush()`), when
  `max_batch_size` requests are pending, or `flush_ms` after the first pending request, whichever
  comes first. Waiting longer than that cannot grow the batch, and waiting less wastes a prefill.
* Running -> at every step boundary: evict finished and cancelled rows, admit pending requests (up
  to `max_batch_size` rows), then decode one token for every row. Newcomers join at once when they
  are at least as many as the running rows, or every feeding run is quiescent (nothing more is
  coming); otherwise they wait up to `join_ms` (30 ms, a few decode steps) so that requests arriving
  close together share one prefill: each prefill stalls every running row, and on the 10 M model a
  one-row prefill costs about 1.5 decode steps (30 ms beat 0 and 60 ms in bench_batcher's staggered
  run, one arrival per 30 ms). Newcomers are prefilled on their own (left-padded together) and
  their KV cache is merged into the running one: both caches are left-padded to the same length and
  concatenated along the batch axis, with the attention mask extended by zeros. Merging costs one small prefill, whereas restarting the batch
  would re-prefill every running row, and waiting for the batch to end would make a 4-token call
  wait for a 256-token one. Models whose cache layers are not plain `DynamicLayer`s (sliding
  windows, ...) fall back to re-prefilling every row's full sequence, which is always correct.
* Left padding + attention mask + explicit position ids per row make a prompt's greedy tokens the
  same alone or in any batch (notes/models.md section 5); each sampled row draws from its own
  `torch.Generator`, so a seeded sample does not depend on its batch companions.
* Prompt prefixes are prefilled once (`prefix_cache.PrefixCache`, `prefill`): a prefill first
  computes the prefixes that several newcomers share, then every row resumes from its longest cached
  prefix (an earlier call's, or one just computed) and only its own suffix is computed; every
  prompt's KV goes back into the cache. `stats()` counts prefill tokens requested vs computed.
* Rows leave when they hit EOS, a stop string (checked on decoded text, not included in the
  output), `max_tokens`, or cancellation; the cache drops their rows and any all-padding columns.

Why a hand-written loop rather than `generate()` or transformers' ContinuousBatchingManager: per-row
stop strings, streaming, cancellation and logits hooks need control at each step; the manual loop is
as fast as `generate` on CPU, and the CB manager adds ~1 ms/step and slows other torch work.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import threading
import time
from collections import Counter, deque
from typing import Any

from . import logprobs as _lp
from .base import Feeders, LLMRequest, LLMResponse
from .errors import BackendError
from .kvcache import cache_kwarg as _cache_kwarg
from .kvcache import cache_of as _cache_of
from .kvcache import merge as _merge
from .kvcache import mergeable as _mergeable
from .kvcache import new_cache as _new_cache
from .kvcache import plain_layers as _plain_layers
from .kvcache import select_rows as _select_rows
from .prefill import layout, row_kv, shared_prefixes
from .prefix_cache import PrefixCache
from .tickets import BatcherFull, LogitsHook, Ticket, eos_ids, holdback
from .workers import register as _stop_at_exit

__all__ = ["Batcher", "BatcherFull", "LogitsHook", "Ticket"]

_HOLD_S = 0.05      # the longest a request waits for a still-dispatching run to go quiescent
_MIN_SHARED = 8     # a prefix shared by newcomers gets its own prefill round only if it saves this many tokens


class Batcher:
    """Shared decode worker for one loaded model (see the module docstring for the policy)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "model", max_batch_size: int = 32,
                 flush_ms: float = 5.0, join_ms: float = 30.0, max_queue: int = 1024,
                 prefix_cache_mb: float = 256.0):
        if max_batch_size < 1 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch_size = max_batch_size
        self.flush_s = flush_ms / 1000.0
        self.join_s = join_ms / 1000.0
        self.max_queue = max_queue
        self.device = next(model.parameters()).device
        self.eos_ids = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.feeders = Feeders(self.flush)   # shared by every backend object on this batcher
        # prompt prefixes' KV, reused across rows and calls; only for plain (non-sliding) KV layers
        self.prefix = (PrefixCache(int(prefix_cache_mb * 2**20))
                       if prefix_cache_mb > 0 and _plain_layers(_new_cache(model)) else None)
        self._tok_lock = threading.Lock()    # fast tokenizers raise "Already borrowed" if used concurrently
        self._token_text = _lp.TokenTexts(tokenizer, self._tok_lock)   # per-token records' texts
        self._cond = threading.Condition()
        self._pending: deque[Ticket] = deque()
        self._flush_requested = False
        self._closed = False
        self._batch_ids = itertools.count(1)
        # running batch: worker thread only
        self._rows: list[Ticket] = []
        self._cache: Any = None
        self._mask: Any = None
        self._batch_id: int | None = None
        self._stats: dict[str, Any] = {"batches": 0, "steps": 0, "prefills": 0, "merges": 0, "reprefills": 0,
                                       "requests": 0, "finished": 0, "cancelled": 0, "tokens_out": 0,
                                       "prefill_tokens_requested": 0, "prefill_tokens_computed": 0}
        self._sizes: Counter[int] = Counter()
        # a daemon, so a forgotten batcher never keeps a process alive; closed at exit all the same,
        # because a daemon thread still inside torch aborts the interpreter's finalization (workers.py)
        self._thread = threading.Thread(target=self._run, name=f"epic-batcher[{name}]", daemon=True)
        self._thread.start()
        _stop_at_exit(self)

    # ------------------------------------------------------------------ caller side (any thread/loop)

    def encode(self, request: LLMRequest) -> list[int]:
        """Prompt token ids: the chat template + generation prompt (+ prefill), or the raw text."""
        tok = self.tokenizer
        if request.raw:
            text, special = (request.prompt or "") + (request.prefill or ""), True
        else:
            msgs = [dict(m) for m in request.messages or ()]
            if getattr(tok, "chat_template", None):
                with self._tok_lock:
                    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            else:   # base models: a plain transcript the model can continue
                text = "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"
            text, special = text + (request.prefill or ""), False
        with self._tok_lock:
            ids = list(tok(text, add_special_tokens=special).input_ids)
        if not ids:
            first = tok.bos_token_id if tok.bos_token_id is not None else self.pad_id
            ids = [first]
        return ids

    def submit(self, request: LLMRequest, *, stream: bool = False, ignore_eos: bool = False,
               logits_hook: LogitsHook | None = None) -> Ticket:
        """Queue a request from inside a running event loop; await `ticket.result()` or iterate `chunks()`."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(request, self.encode(request), loop, stream=stream, ignore_eos=ignore_eos,
                        hook=logits_hook)
        ticket.cancel_hook = self._cancel
        if request.params.max_tokens <= 0:
            resp = LLMResponse("", tokens_in=len(ticket.prompt_ids), finish_reason="length")
            ticket.events.put_nowait(("done", ("", resp)))
            return ticket
        with self._cond:
            if self._closed:
                raise BackendError("the local model's batcher is closed", model=self.name, backend="transformers")
            if len(self._pending) >= self.max_queue:
                raise BatcherFull(
                    f"{len(self._pending)} requests are already waiting (max_queue={self.max_queue}); "
                    "await some results before sending more, or raise max_queue",
                    model=self.name, backend="transformers")
            # the latest start: flush_ms when idle, join_ms when it would join a running batch
            ticket.deadline = ticket.submitted + (self.join_s if self._rows else self.flush_s)
            self._pending.append(ticket)
            self._stats["requests"] += 1
            self._cond.notify()
        return ticket

    def flush(self) -> None:
        """Start a batch now instead of waiting for the timer (every feeding run is quiescent).
        With nothing pending it does nothing: a standing flush would start the next batch with
        whichever request happened to arrive first."""
        with self._cond:
            if not self._pending:
                return
            self._flush_requested = True
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks and `epic serve`: batches, steps, rows per step, tokens."""
        with self._cond:
            sizes = dict(sorted(self._sizes.items()))
            out = dict(self._stats, pending=len(self._pending), running=len(self._rows), batch_sizes=sizes)
        steps = sum(sizes.values())
        asked = out["prefill_tokens_requested"]
        out["prefill_saved"] = round(1 - out["prefill_tokens_computed"] / asked, 3) if asked else 0.0
        if self.prefix is not None:       # read without the worker's lock: two ints, a racy read is harmless
            out["prefix_cache"] = {"bytes": self.prefix.bytes, "budget": self.prefix.budget,
                                   "evicted_tokens": self.prefix.evicted_tokens}
        out["mean_batch_size"] = round(sum(k * v for k, v in sizes.items()) / steps, 2) if steps else 0.0
        return out

    def reset_stats(self) -> None:
        with self._cond:
            for k in self._stats:
                self._stats[k] = 0
            self._sizes.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the worker; pending and running requests fail with BackendError. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            self._cond.notify()
        for t in pending:
            self._post(t, ("error", BackendError("the local model's batcher was closed", model=self.name,
                                                 backend="transformers")))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancelled = True
            try:
                self._pending.remove(ticket)
                self._stats["cancelled"] += 1
            except ValueError:
                pass              # running (the worker evicts it at the next step) or already done

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                newcomers = self._wait_for_work()
                if newcomers is None:
                    break
                try:
                    if any(t.cancelled for t in self._rows):
                        gone = sum(t.cancelled for t in self._rows)
                        self._select([not t.cancelled for t in self._rows])
                        with self._cond:
                            self._stats["cancelled"] += gone
                    if newcomers:
                        self._admit(newcomers)
                    if self._rows:
                        self._step()
                except Exception as exc:   # a failed forward fails this batch, not the worker
                    err = BackendError(f"local decode failed: {type(exc).__name__}: {exc}", model=self.name,
                                       backend="transformers")
                    err.__cause__ = exc
                    for t in {id(t): t for t in [*self._rows, *newcomers]}.values():
                        if not t.cancelled:
                            self._post(t, ("error", err))
                    self._rows, self._cache, self._mask, self._batch_id = [], None, None, None
        err = BackendError("the local model's batcher was closed", model=self.name, backend="transformers")
        for t in self._rows:
            self._post(t, ("error", err))

    def _wait_for_work(self) -> list[Ticket] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._rows:                  # decoding: newcomers join at a step boundary
                    if not self._pending:
                        return []
                    if len(self._rows) >= self.max_batch_size:
                        self._flush_requested = True        # no room: start them the moment rows free
                        return []
                    if (self._flush_requested or len(self._pending) >= len(self._rows)
                            or time.monotonic() >= self._pending[0].deadline):
                        return self._take()
                    return []
                if self._pending:
                    now = time.monotonic()
                    wait = self._pending[0].deadline - now
                    if wait <= 0 and not self.feeders.all_quiescent:
                        # a run feeding us is still dispatching (its quiescence will flush us): a
                        # batch started now would miss its next requests; wait, but never long
                        wait = self._pending[0].submitted + _HOLD_S - now
                    if self._flush_requested or len(self._pending) >= self.max_batch_size or wait <= 0:
                        return self._take()
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _take(self) -> list[Ticket]:
        room = self.max_batch_size - len(self._rows)
        out = []
        while self._pending and len(out) < room:
            out.append(self._pending.popleft())
        # requests left behind for lack of room have waited long enough: they start as soon as rows free
        self._flush_requested = bool(self._pending)
        return out

    def _admit(self, newcomers: list[Ticket]) -> None:
        import torch

        if self._batch_id is None:
            self._batch_id = next(self._batch_ids)
            self._bump("batches")
        for t in newcomers:
            t.batch_id = self._batch_id
            if not t.params.greedy:
                t.generator = torch.Generator().manual_seed(
                    t.params.seed if t.params.seed is not None else secrets.randbits(63))
        if self._rows and not _mergeable(self._cache):
            rows = self._rows + newcomers          # re-prefill: one step for old rows, prefill for new
            seqs = [t.prompt_ids + t.token_ids for t in self._rows] + [t.prompt_ids for t in newcomers]
            self._rows, self._cache, self._mask = [], None, None
            self._bump("reprefills")
            self._prefill(rows, seqs)
            return
        self._prefill(newcomers, [t.prompt_ids for t in newcomers])

    def _prefill(self, rows: list[Ticket], seqs: list[list[int]]) -> None:
        import torch

        self._bump("prefill_tokens_requested", sum(len(s) for s in seqs))
        if self.prefix is not None:      # prefixes several newcomers share: computed once, shortest first
            for level in shared_prefixes(seqs, _MIN_SHARED):
                todo = [list(p) for p in level if len(p) - self.prefix.matched(p) >= _MIN_SHARED]
                if todo:
                    self._prefill_forward(todo)
        out, cache, mask, reused = self._prefill_forward(seqs)
        self._bump("prefills")
        for t, s, n in zip(rows, seqs, reused, strict=True):
            t.pos = len(s)
            t.reused = n
        alive = self._consume(rows, out.logits[:, -1])
        if not any(alive):
            return
        if not all(alive):
            idx = torch.tensor([i for i, a in enumerate(alive) if a], device=self.device)
            cache, mask = _select_rows(cache, mask, idx)
            rows = [t for t, a in zip(rows, alive, strict=True) if a]
        if self._rows:
            self._cache, self._mask = _merge(self._cache, self._mask, cache, mask)
            self._bump("merges")
        else:
            self._cache, self._mask = cache, mask
        self._rows = self._rows + rows

    def _prefill_forward(self, seqs: list[list[int]]) -> tuple[Any, Any, Any, list[int]]:
        """One forward over `seqs`, resuming each from its longest cached prefix and storing every
        prompt's KV for later rows; returns (output, cache, mask, cached tokens per row)."""
        prefix = self.prefix
        hits = [prefix.match(s, limit=len(s) - 1) for s in seqs] if prefix is not None else [(0, None)] * len(seqs)
        lay = layout(seqs, hits, self.pad_id, self.device)
        cache = _new_cache(self.model)
        if lay.past is not None:
            for layer, (k, v) in zip(cache.layers, lay.past, strict=True):
                layer.update(k, v)
        out = self._forward(lay.ids, lay.mask, lay.pos, cache)
        self._bump("prefill_tokens_computed", lay.computed)
        cache = _cache_of(out)
        if prefix is not None:
            for i, s in enumerate(seqs):
                prefix.insert(s, functools.partial(row_kv, cache, i, lay.cols[i]))
        return out, cache, lay.mask, [n for n, _ in hits]

    def _forward(self, ids: Any, mask: Any, pos: Any, cache: Any) -> Any:
        """One forward pass that fills `cache`, under the keyword this transformers version takes
        (`cache` since 5.2x; `past_key_values` before, deprecated after with a FutureWarning)."""
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                          **{_cache_kwarg(self.model): cache})

    def _step(self) -> None:
        import torch

        rows = self._rows
        inp = torch.tensor([[t.next_token] for t in rows], device=self.device)
        pos = torch.tensor([[t.pos] for t in rows], device=self.device)
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        out = self._forward(inp, self._mask, pos, self._cache)
        self._cache = _cache_of(out)
        for t in rows:
            t.pos += 1
        with self._cond:
            self._stats["steps"] += 1
            self._sizes[len(rows)] += 1
        alive = self._consume(rows, out.logits[:, -1])
        if not all(alive):
            self._select(alive)

    def _select(self, keep: list[bool]) -> None:
        """Keep only the rows marked True, then drop cache columns that are padding for every row."""
        import torch

        self._rows = [t for t, k in zip(self._rows, keep, strict=True) if k]
        if not self._rows:
            self._cache, self._mask, self._batch_id = None, None, None
            return
        idx = torch.tensor([i for i, k in enumerate(keep) if k], device=self.device)
        self._cache, self._mask = _select_rows(self._cache, self._mask, idx)

    # ------------------------------------------------------------------ tokens -> text -> events

    def _consume(self, rows: list[Ticket], logits: Any) -> list[bool]:
        """Sample one token per row and account for it; returns which rows keep decoding."""
        return [self._accept(t, tok) for t, tok in zip(rows, self._sample(rows, logits), strict=True)]

    def _sample(self, rows: list[Ticket], logits: Any) -> list[int]:
        """The next token of every row; rows that asked for logprobs get them recorded (llm.logprobs)
        from these logits. Without such a row this adds no tensor operation."""
        logits = logits.float()
        asking = [i for i, t in enumerate(rows) if t.tokens is not None]
        if not asking:
            return self._choose(rows, logits)
        pre = _lp.before_masks(logits, asking, _lp.kmax_for(rows, asking))
        out = self._choose(rows, logits)
        batch_rows = len(self._rows) + (0 if rows is self._rows else len(rows))
        _lp.record_step(rows, asking, pre, logits, out, batch_rows, time.perf_counter())
        return out

    def _choose(self, rows: list[Ticket], logits: Any) -> list[int]:
        import torch

        if all(t.params.greedy and t.hook is None for t in rows):
            return logits.argmax(-1).tolist()
        for i, t in enumerate(rows):       # hooks mask their own row (in place, or return a new one)
            if t.hook is not None:
                row = t.hook(t.token_ids, logits[i])
                if row.data_ptr() != logits[i].data_ptr():
                    logits[i] = row
        argmax = logits.argmax(-1).tolist() if any(t.params.greedy for t in rows) else []
        out = []
        for i, t in enumerate(rows):
            if t.params.greedy:
                out.append(argmax[i])
                continue
            probs = torch.softmax(logits[i].cpu() / t.params.temperature, dim=-1)
            if t.params.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                sp[(sp.cumsum(0) - sp) >= t.params.top_p] = 0.0   # smallest prefix reaching top_p
                out.append(int(si[torch.multinomial(sp, 1, generator=t.generator)]))
            else:
                out.append(int(torch.multinomial(probs, 1, generator=t.generator)))
        return out

    def _accept(self, t: Ticket, tok: int) -> bool:
        t.token_ids.append(tok)
        self._bump("tokens_out")
        if tok in self.eos_ids and not t.ignore_eos:
            return self._finish(t, "stop")
        t.text_ids.append(tok)
        if t.track_text and self._add_text(t, self._detok(t)):
            return self._finish(t, "stop", stopped=True)
        if len(t.token_ids) >= t.params.max_tokens:
            return self._finish(t, "length")
        t.next_token = tok
        return True

    def _detok(self, t: Ticket, final: bool = False) -> str:
        """Text newly completed by the last token; holds back bytes of an unfinished UTF-8 character."""
        with self._tok_lock:
            prefix = self.tokenizer.decode(t.text_ids[t.prefix_off:t.read_off], skip_special_tokens=True)
            full = self.tokenizer.decode(t.text_ids[t.prefix_off:], skip_special_tokens=True)
        if len(full) > len(prefix) and (final or not full.endswith("\ufffd")):
            t.prefix_off, t.read_off = t.read_off, len(t.text_ids)
            return full[len(prefix):]
        return ""

    def _add_text(self, t: Ticket, delta: str) -> bool:
        """Append decoded text; True when a stop string appeared (the text is cut before it)."""
        if not delta:
            return False
        stops = t.params.stop
        start = len(t.text)
        t.text += delta
        if stops:
            lookback = max(0, start - max(len(s) for s in stops) + 1)
            hits = [i for i in (t.text.find(s, lookback) for s in stops if s) if i >= 0]
            if hits:
                t.text = t.text[:min(hits)]
                return True
        if t.stream:
            safe = len(t.text) - holdback(t.text, stops)
            if safe > t.emitted:
                self._post(t, ("text", self._chunk(t, t.text[t.emitted:safe])))
                t.emitted = safe
        return False

    def _finish(self, t: Ticket, reason: str, stopped: bool = False) -> bool:
        if not t.track_text:
            with self._tok_lock:
                t.text = self.tokenizer.decode(t.text_ids, skip_special_tokens=True)
        elif not stopped and self._add_text(t, self._detok(t, final=True)):
            reason = "stop"
        resp = LLMResponse(t.text, tokens_in=len(t.prompt_ids), tokens_out=len(t.token_ids),
                           finish_reason=reason, batch_id=t.batch_id, tokens_cached=t.reused)
        if t.tokens is not None:       # the EOS that ended the answer is no token of its text
            ended = bool(t.token_ids) and t.token_ids[-1] in self.eos_ids and not t.ignore_eos
            resp.tokens = t.tokens.log(self._token_text, 0, len(t.tokens.ids) - ended)
        self._post(t, ("done", (t.text[t.emitted:], resp)))
        self._bump("finished")
        return False

    def _chunk(self, t: Ticket, text: str) -> Any:
        """A streamed text delta, with the tokens recorded since the last one when logprobs were asked."""
        tr = t.tokens
        if tr is None:
            return text
        start, tr.sent = tr.sent, len(tr.ids)
        return text, None, tr.log(self._token_text, start, tr.sent)

    def _post(self, t: Ticket, item: tuple[str, Any]) -> None:
        try:
            t.loop.call_soon_threadsafe(t.events.put_nowait, item)
        except RuntimeError:          # the caller's loop is closed: nobody is listening any more
            t.cancelled = True

    def _bump(self, key: str, n: int = 1) -> None:
        with self._cond:
            self._stats[key] += n
