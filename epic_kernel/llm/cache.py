"""An on-disk cache of model answers (sqlite), wrapped around any backend.

Rerunning a notebook cell should not pay for the same generations twice, but sampling must stay
sampling: the key is `request.key(identity)`, where the identity is the inner backend's
`identity()` (its class and every setting that changes an answer: model, base URL, script,
seed, ...) plus the model the request resolves to, so two differently configured backends never
share answers; the request holds every sampling parameter and `sample_index`, so k identical
samples (sample_index 0..k-1) are k entries and never collapse into one.

Only complete answers are stored: a failed call, a cancelled one, or a stream the consumer
abandoned leaves no entry. Hits come back with `cached=True`; a cached stream is replayed as one
chunk carrying the response.

The database is in WAL mode with one connection guarded by a lock, so `epic serve`, a notebook and
`run()`'s private loop thread (or several processes) can share it. Default location:
`~/.cache/epic-kernel/llm-cache.sqlite`; `EPIC_CACHE_DIR` moves the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .base import Backend, LLMRequest, LLMResponse, StreamChunk

__all__ = ["CachedBackend", "default_cache_path"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT, response TEXT NOT NULL, created REAL NOT NULL)"""


def default_cache_path() -> Path:
    folder = os.environ.get("EPIC_CACHE_DIR") or Path.home() / ".cache" / "epic-kernel"
    return Path(folder) / "llm-cache.sqlite"


class CachedBackend(Backend):
    """Answers from the cache when it can, from `inner` otherwise (and remembers the answer).

    It presents itself as the inner backend (same name, capabilities, model and `feeders`), so the
    evaluator's quiescence signals still reach a batcher behind it.
    """

    def __init__(self, inner: Backend, path: str | os.PathLike[str] | None = None, enabled: bool = True):
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.default_model = inner.default_model
        self.feeders = inner.feeders
        self.enabled = enabled
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    # --- storage --------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def key(self, request: LLMRequest) -> str:
        model = request.model or self.inner.default_model or ""
        identity = json.dumps(self.inner.identity(), sort_keys=True, default=str)
        return hashlib.sha256(f"{request.key(identity)}|{model}".encode()).hexdigest()

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def get(self, request: LLMRequest) -> LLMResponse | None:
        with self._lock:
            row = self._conn().execute("SELECT response FROM responses WHERE key = ?",
                                       (self.key(request),)).fetchone()
        if row is None:
            return None
        return replace(LLMResponse(**json.loads(row[0])), cached=True, batch_id=None)

    def put(self, request: LLMRequest, response: LLMResponse) -> None:
        data = json.dumps(asdict(replace(response, cached=False, batch_id=None)))
        with self._lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO responses (key, backend, model, response, created) VALUES (?,?,?,?,?)",
                (self.key(request), self.inner.name, request.model or self.inner.default_model, data, time.time()))

    def count(self) -> int:
        """Number of stored answers."""
        with self._lock:
            return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    __len__ = count

    def clear(self) -> int:
        """Forget every stored answer; returns how many there were."""
        with self._lock:
            return self._conn().execute("DELETE FROM responses").rowcount

    # --- the Backend protocol -------------------------------------------------------------------
    async def generate(self, request: LLMRequest) -> LLMResponse:
        if self.enabled and (hit := self.get(request)) is not None:
            self.hits += 1
            return hit
        resp = await self.inner.generate(request)
        if self.enabled:
            self.misses += 1
            self.put(request, resp)
        return resp

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamChunk]:
        if self.enabled and (hit := self.get(request)) is not None:
            self.hits += 1
            yield StreamChunk(hit.text, hit)
            return
        chunks = self.inner.stream(request)
        try:
            async for chunk in chunks:
                if chunk.response is not None and self.enabled:
                    self.misses += 1
                    self.put(request, chunk.response)
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def check(self, request: LLMRequest) -> None:
        self.inner.check(request)

    def on_all_quiescent(self) -> None:
        self.inner.on_all_quiescent()

    def describe(self) -> str:
        return f"{self.inner.describe()} (cached)"

    async def aclose(self) -> None:
        self._close_db()
        await self.inner.aclose()

    def close(self) -> None:
        self._close_db()
        self.inner.close()

    def _close_db(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
