"""CachedBackend (sqlite) and RecordingBackend/ReplayBackend (JSONL) over a counting test backend."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from epic_kernel.llm.base import Backend, LLMRequest, LLMResponse, SamplingParams, StreamChunk
from epic_kernel.llm.cache import CachedBackend, default_cache_path
from epic_kernel.llm.errors import ReplayMiss
from epic_kernel.llm.replay import RecordingBackend, ReplayBackend, ReplayedError, request_from_json


class Counting(Backend):
    """Answers "<prompt> #<call number>", so a repeated answer proves it came from the cache."""

    name = "counting"
    capabilities = frozenset({"stream", "raw", "seed"})
    default_model = "count-1"

    def __init__(self, latency: float = 0.0, chunk_gap: float = 0.0):
        super().__init__()
        self.calls = 0
        self.latency = latency
        self.chunk_gap = chunk_gap
        self._lock = threading.Lock()

    def _text(self, req: LLMRequest) -> str:
        with self._lock:
            self.calls += 1
            n = self.calls
        prompt = req.prompt if req.raw else req.messages[-1]["content"]
        if "fail" in prompt:
            raise RuntimeError(f"cannot answer {prompt!r}")
        return f"{prompt} #{n}"

    async def generate(self, req: LLMRequest) -> LLMResponse:
        await asyncio.sleep(self.latency)
        text = self._text(req)
        return LLMResponse(text, 2, len(text.split()), batch_id=7)

    async def stream(self, req: LLMRequest):
        text = self._text(req)
        words = text.split(" ")
        for i, w in enumerate(words):
            await asyncio.sleep(self.chunk_gap)
            piece = w if i == 0 else " " + w
            yield StreamChunk(piece, LLMResponse(text, 2, len(words)) if i == len(words) - 1 else None)


def run(coro):
    return asyncio.run(coro)


async def collect(backend: Backend, req: LLMRequest) -> list[StreamChunk]:
    return [c async for c in backend.stream(req)]


# --- cache ---------------------------------------------------------------------------------------
def test_cache_hit_and_miss(tmp_path):
    inner = Counting()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    q = LLMRequest.build("hello")

    async def main():
        a = await cb.generate(q)
        b = await cb.generate(q)
        c = await cb.generate(q.with_params(temperature=0.7))        # another sampling parameter: a miss
        d = await cb.generate(LLMRequest.build("hello", model="other"))  # another model: a miss
        return a, b, c, d

    a, b, c, d = run(main())
    assert (a.text, a.cached, a.batch_id) == ("hello #1", False, 7)
    assert (b.text, b.cached, b.batch_id, b.tokens_in, b.tokens_out) == ("hello #1", True, None, 2, 2)
    assert (c.text, d.text) == ("hello #2", "hello #3")
    assert inner.calls == 3 and (cb.hits, cb.misses) == (1, 3) and cb.count() == len(cb) == 3
    assert cb.name == "counting" and cb.capabilities == inner.capabilities and cb.feeders is inner.feeders


def test_samples_never_collapse(tmp_path):
    inner = Counting()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    samples = [LLMRequest.build("pick", params=SamplingParams(temperature=1.0), sample_index=i) for i in range(4)]

    async def main():
        first = [(await cb.generate(s)).text for s in samples]
        again = [(await cb.generate(s)).text for s in samples]
        return first, again

    first, again = run(main())
    assert len(set(first)) == 4 and again == first and inner.calls == 4


def test_cache_persists_and_is_keyed_by_inner_model(tmp_path):
    path = tmp_path / "c.sqlite"
    q = LLMRequest.build("persist")
    run(CachedBackend(Counting(), path).generate(q))
    inner2 = Counting()
    assert run(CachedBackend(inner2, path).generate(q)).cached and inner2.calls == 0
    other = Counting()
    other.default_model = "count-2"                       # same backend name, another model
    assert not run(CachedBackend(other, path).generate(q)).cached


def test_cache_disabled_clear_and_failures(tmp_path):
    inner = Counting()
    off = CachedBackend(inner, tmp_path / "c.sqlite", enabled=False)
    q = LLMRequest.build("x")
    assert run(off.generate(q)).text == "x #1" and run(off.generate(q)).text == "x #2" and off.count() == 0
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError):
        run(cb.generate(LLMRequest.build("fail")))
    assert cb.count() == 0                               # failures are never cached
    run(cb.generate(q))
    assert cb.count() == 1 and cb.clear() == 1 and cb.count() == 0


def test_cached_stream_replays_and_partial_streams_are_not_stored(tmp_path):
    inner = Counting()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    q = LLMRequest.build("a b c")

    async def partial():
        gen = cb.stream(q)
        await gen.__anext__()
        await gen.aclose()

    run(partial())
    assert cb.count() == 0
    live = run(collect(cb, q))
    hit = run(collect(cb, q))
    assert "".join(c.text for c in live) == live[-1].response.text == "a b c #2"
    assert len(hit) == 1 and hit[0].text == "a b c #2" and hit[0].response.cached
    assert run(cb.generate(q)).cached                    # a streamed answer serves generate() too


def test_cache_from_many_threads(tmp_path):
    inner = Counting()
    cb = CachedBackend(inner, tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            async def main():
                await asyncio.gather(*[cb.generate(LLMRequest.build(f"t{t} q{i}")) for i in range(20)])
                await asyncio.gather(*[cb.generate(LLMRequest.build(f"shared {i}")) for i in range(5)])
            asyncio.run(main())
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cb.count() == 6 * 20 + 5
    cb.close()


def test_default_cache_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EPIC_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_path() == tmp_path / "here" / "llm-cache.sqlite"
    monkeypatch.delenv("EPIC_CACHE_DIR")
    assert default_cache_path().parts[-3:] == (".cache", "epic-kernel", "llm-cache.sqlite")


# --- record / replay -----------------------------------------------------------------------------
class FakeSleep:
    """Records replay's sleeps instead of sleeping: latency is checked by numbers, not wall clock."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def _calls(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["type"] == "call"]


def test_record_then_replay_preserves_answers_and_latency(tmp_path):
    log = tmp_path / "calls.jsonl"
    rec = RecordingBackend(Counting(latency=0.02), log)
    q1, q2 = LLMRequest.build("first"), LLMRequest.build("second", params=SamplingParams(max_tokens=9))

    async def record():
        return await asyncio.gather(rec.generate(q1), rec.generate(q2), rec.generate(q1))

    recorded = run(record())
    calls = _calls(log)
    assert len(calls) == 3 and all(c["latency"] > 0 and c["error"] is None for c in calls)
    assert request_from_json(calls[0]["request"]) in (q1, q2)

    sleep = FakeSleep()
    rp = ReplayBackend(log, sleep=sleep)
    assert len(rp) == 3 and rp.capabilities == {"stream", "raw", "seed"} and rp.default_model == "count-1"

    async def replay():
        return [await rp.generate(q1), await rp.generate(q2), await rp.generate(q1), await rp.generate(q1)]

    replayed = run(replay())
    firsts = [c for c in calls if c["request"]["messages"][0]["content"] == "first"]
    # identical requests come back in recorded order (and cycle when the log runs out)
    assert [r.text for r in replayed] == [firsts[0]["response"]["text"], recorded[1].text,
                                         firsts[1]["response"]["text"], firsts[0]["response"]["text"]]
    second = next(c for c in calls if c["request"]["messages"][0]["content"] == "second")
    assert sleep.slept == [firsts[0]["latency"], second["latency"], firsts[1]["latency"], firsts[0]["latency"]]

    fast = FakeSleep()
    run(ReplayBackend(log, speed=4.0, sleep=fast).generate(q2))
    assert fast.slept == [second["latency"] / 4.0]


def test_replay_streams_with_recorded_chunk_timing(tmp_path):
    log = tmp_path / "s.jsonl"
    rec = RecordingBackend(Counting(chunk_gap=0.01), log)
    q = LLMRequest.build("x y z")
    live = run(collect(rec, q))
    (call,) = _calls(log)
    offsets = [t for t, _ in call["chunks"]]
    assert call["stream"] and offsets == sorted(offsets) and [t for _, t in call["chunks"]] == [c.text for c in live]

    sleep = FakeSleep()
    replayed = run(collect(ReplayBackend(log, sleep=sleep), q))
    assert [c.text for c in replayed] == [c.text for c in live]
    assert replayed[-1].response.text == live[-1].response.text == "x y z #1"
    assert all(c.response is None for c in replayed[:-1])
    assert sleep.slept == pytest.approx([b - a for a, b in zip([0.0, *offsets], offsets, strict=False)])


def test_replay_of_a_generate_record_as_stream(tmp_path):
    log = tmp_path / "g.jsonl"
    q = LLMRequest.build("whole")
    run(RecordingBackend(Counting(), log).generate(q))
    chunks = run(collect(ReplayBackend(log, sleep=FakeSleep()), q))
    assert len(chunks) == 1 and chunks[0].text == chunks[0].response.text == "whole #1"


def test_replay_unknown_request(tmp_path):
    log = tmp_path / "u.jsonl"
    run(RecordingBackend(Counting(), log).generate(LLMRequest.build("known", params=SamplingParams(max_tokens=5))))
    strict = ReplayBackend(log, sleep=FakeSleep())
    with pytest.raises(ReplayMiss, match="'never recorded'"):
        run(strict.generate(LLMRequest.build("never recorded")))
    other_params = LLMRequest.build("known", params=SamplingParams(max_tokens=50))
    with pytest.raises(ReplayMiss, match="'known'"):
        run(strict.generate(other_params))
    assert run(ReplayBackend(log, strict=False, sleep=FakeSleep()).generate(other_params)).text == "known #1"
    fb = Counting()
    assert run(ReplayBackend(log, fallback=fb, sleep=FakeSleep()).generate(LLMRequest.build("new"))).text == "new #1"


def test_recorded_failures_replay_as_failures(tmp_path):
    log = tmp_path / "f.jsonl"
    with pytest.raises(RuntimeError):
        run(RecordingBackend(Counting(), log).generate(LLMRequest.build("fail me")))
    (call,) = _calls(log)
    assert call["response"] is None and call["error"]["type"] == "RuntimeError"
    with pytest.raises(ReplayedError, match="cannot answer 'fail me'"):
        run(ReplayBackend(log, sleep=FakeSleep()).generate(LLMRequest.build("fail me")))


def test_replay_keeps_k_samples_apart(tmp_path):
    log = tmp_path / "k.jsonl"
    rec = RecordingBackend(Counting(), log)
    samples = [LLMRequest.build("s", params=SamplingParams(temperature=1.0), sample_index=i) for i in range(3)]

    async def go(b):
        return [(await b.generate(s)).text for s in samples]

    recorded = run(go(rec))
    assert run(go(ReplayBackend(log, sleep=FakeSleep()))) == recorded and len(set(recorded)) == 3
