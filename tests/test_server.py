"""`epic serve` driven by the official openai client (and raw HTTP for malformed input) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx2 = pytest.importorskip("httpx2")

from epic_kernel.llm.base import Backend, LLMRequest, LLMResponse, SamplingParams, StreamChunk  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402
from epic_kernel.llm.server import ServerThread  # noqa: E402

KEY = "sk-serve-test"


class EchoBackend(Backend):
    """Answers "echo: <last user text>" word by word, cut at max_tokens; records what it was asked.

    `gate=N` holds every call until N are in flight at once: if the server serialised requests,
    the first would wait forever, so reaching the gate proves they arrived concurrently.
    """

    name = "echo"
    capabilities = frozenset({"stream", "raw", "regex", "choices", "prefill", "seed"})
    default_model = "echo-1"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[LLMRequest] = []
        self.inflight = self.max_inflight = self.cancelled = 0
        self.gate: int | None = None
        self.delay = 0.0
        self.word_delay = 0.0
        self._opened: asyncio.Event | None = None

    def answer(self, req: LLMRequest) -> tuple[list[str], str]:
        text = req.prompt if req.raw else req.messages[-1]["content"]
        if "explode" in text:
            raise RuntimeError("the model caught fire")
        if req.params.choices:          # a constraint it honours (the client checks every answer)
            return [req.params.choices[-1]], "stop"
        words = f"echo: {text}".split(" ")
        n = req.params.max_tokens
        return words[:n], "length" if n < len(words) else "stop"

    async def _enter(self, req: LLMRequest) -> None:
        self.requests.append(req)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.gate is not None:
            if self._opened is None:
                self._opened = asyncio.Event()
            if self.inflight >= self.gate:
                self._opened.set()
            await asyncio.wait_for(self._opened.wait(), 10)
        await asyncio.sleep(self.delay)

    async def generate(self, req: LLMRequest) -> LLMResponse:
        try:
            await self._enter(req)
            words, finish = self.answer(req)
            return LLMResponse(" ".join(words), 3, len(words), finish)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1

    async def stream(self, req: LLMRequest):
        try:
            await self._enter(req)
            words, finish = self.answer(req)
            for i, w in enumerate(words):
                yield StreamChunk(w if i == 0 else " " + w)
                await asyncio.sleep(self.word_delay)
            yield StreamChunk("", LLMResponse(" ".join(words), 3, len(words), finish))
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1


@pytest.fixture(scope="module")
def served():
    be = EchoBackend()
    with ServerThread(be, api_key=KEY, model_name="echo-1", strict_model=True) as srv:
        yield srv, be


@pytest.fixture
def srv(served):
    srv, be = served
    be.requests.clear()
    be.max_inflight = be.cancelled = 0
    be.gate, be.delay, be.word_delay, be._opened = None, 0.0, 0.0, None
    return srv, be


def client(srv, key: str = KEY, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0, timeout=20, **kw)


def wait_until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


# --- happy paths ---------------------------------------------------------------------------------
def test_health_and_models(srv):
    s, _ = srv
    assert httpx2.get(s.url + "/health").json()["status"] == "ok"     # no key needed for health
    assert [m.id for m in client(s).models.list()] == ["echo-1"]


def test_chat_and_completion(srv):
    s, be = srv
    c = client(s)
    r = c.chat.completions.create(model="echo-1", messages=[{"role": "system", "content": "be nice"},
                                                           {"role": "user", "content": "hello there"}],
                                  temperature=0.5, seed=3, stop=["\n"])
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("echo: hello there", "stop")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 3, 6)
    req = be.requests[-1]
    assert req.messages == ({"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"})
    assert req.params == SamplingParams(max_tokens=256, temperature=0.5, seed=3, stop=("\n",))
    t = c.completions.create(model="echo-1", prompt="once upon a time", max_tokens=3)
    assert (t.choices[0].text, t.choices[0].finish_reason) == ("echo: once upon", "length")
    assert be.requests[-1].raw and be.requests[-1].prompt == "once upon a time"


def test_n_samples_get_distinct_sample_indices(srv):
    s, be = srv
    r = client(s).chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}], n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert sorted(q.sample_index for q in be.requests) == [0, 1, 2]


def test_streaming_chat_and_completion(srv):
    s, _ = srv
    c = client(s)
    chunks = list(c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "stream me"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: stream me"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    plain = list(c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(ch.usage is None for ch in plain)
    comp = list(c.completions.create(model="echo-1", prompt="a b c", stream=True, max_tokens=2))
    assert "".join(ch.choices[0].text for ch in comp) == "echo: a"
    assert comp[-1].choices[0].finish_reason == "length"


def test_concurrent_clients_reach_the_backend_concurrently(srv):
    s, be = srv
    be.gate = 8

    def one(i: int) -> str:
        c = client(s)
        if i % 2:
            st = c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": f"q{i}"}],
                                           stream=True)
            return "".join(ch.choices[0].delta.content or "" for ch in st if ch.choices)
        return c.chat.completions.create(model="echo-1",
                                         messages=[{"role": "user", "content": f"q{i}"}]).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(one, range(8)))
    assert out == [f"echo: q{i}" for i in range(8)]
    assert be.max_inflight == 8


def test_openai_backend_through_epic_serve_keeps_every_feature(srv):
    """OpenAIBackend -> epic serve -> backend: regex, choices, prefill, raw, stream. The backend reads
    the vLLM dialect from /v1/models (owned_by "epic-kernel") and checks the constrained answer."""
    s, be = srv
    ob = OpenAIBackend(base_url=s.base_url, api_key=KEY, model="echo-1")

    async def main():
        a = await ob.generate(LLMRequest.build("pick", params=SamplingParams(choices=("1", "2"))))
        b = await ob.generate(LLMRequest.build("list things", prefill="1."))
        c = [ch async for ch in ob.stream(LLMRequest.build("s t", raw=True))]
        await ob.aclose()
        return a, b, c

    a, b, c = run(main())
    assert ob.dialect == "vllm"
    assert a.text == "2" and b.text == "echo: list things"
    assert c[-1].response.text == "echo: s t" and c[-1].response.tokens_out == 3
    r1, r2, r3 = be.requests
    assert (r1.params.regex, r1.params.choices) == (None, ("1", "2"))
    assert r2.prefill == "1." and r2.messages == ({"role": "user", "content": "list things"},)
    assert r3.raw and r3.prompt == "s t"


def run(coro):
    return asyncio.run(coro)


# --- errors --------------------------------------------------------------------------------------
def _post(s, path: str, content: bytes | str, key: str | None = KEY) -> httpx2.Response:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    return httpx2.post(s.base_url + path, content=content, headers=headers, timeout=20)


def _assert_openai_error(resp: httpx2.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("body,param", [
    ("{not json", None),
    ("[1, 2]", None),
    (json.dumps({"model": "echo-1"}), "messages"),
    (json.dumps({"model": "echo-1", "messages": "hi"}), "messages"),
    (json.dumps({"model": "echo-1", "messages": [{"content": "x"}]}), "messages[0]"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), "max_tokens"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}),
     "max_tokens"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
     "temperature"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "stop": [1]}), "stop"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}), "stream"),
    (json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "n": 99}), "n"),
], ids=["malformed", "not-object", "no-messages", "messages-str", "no-role", "content-int", "max_tokens-0",
        "max_tokens-str", "temperature-str", "stop-int", "stream-str", "n-too-big"])
def test_bad_chat_requests_get_openai_shaped_400(srv, body, param):
    s, be = srv
    _assert_openai_error(_post(s, "/chat/completions", body), 400, param)
    assert be.requests == []


def test_bad_completion_requests(srv):
    s, _ = srv
    _assert_openai_error(_post(s, "/completions", json.dumps({"model": "echo-1"})), 400, "prompt")
    _assert_openai_error(_post(s, "/completions", json.dumps({"model": "echo-1", "prompt": ["a", "b"]})), 400)


def test_openai_client_sees_typed_errors(srv):
    s, _ = srv
    c = client(s)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "x"}], max_tokens=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError, match="caught fire"):
        c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "explode"}])
    with pytest.raises(openai.APIError, match="caught fire"):   # mid-stream: reported in-band
        list(c.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "explode"}],
                                       stream=True))


def test_unknown_routes_and_methods_are_json(srv):
    s, _ = srv
    _assert_openai_error(httpx2.get(s.base_url + "/nope"), 404)
    _assert_openai_error(httpx2.get(s.base_url + "/chat/completions"), 405)


def test_api_key(srv):
    s, _ = srv
    with pytest.raises(openai.AuthenticationError):
        client(s, key="sk-wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(s, key="sk-wrong").chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "x"}])
    err = _assert_openai_error(_post(s, "/chat/completions", "{}", key=None), 401)
    assert err["code"] == "invalid_api_key"


def test_unsupported_feature_is_a_400():
    class Plain(EchoBackend):
        capabilities = frozenset({"stream"})

    with ServerThread(Plain(), strict_model=False) as s:       # no API key, any model name
        c = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="does not support regex"):
            c.chat.completions.create(model="anything", messages=[{"role": "user", "content": "x"}],
                                      extra_body={"guided_regex": "a+"})
        ok = c.chat.completions.create(model="anything", messages=[{"role": "user", "content": "x"}])
        assert ok.choices[0].message.content == "echo: x"


# --- cancellation --------------------------------------------------------------------------------
def test_client_disconnect_cancels_the_backend_call(srv):
    s, be = srv
    be.delay = 30.0
    with pytest.raises(httpx2.ReadTimeout):
        _post_with_timeout(s, {"model": "echo-1", "messages": [{"role": "user", "content": "slow"}]}, 0.5)
    wait_until(lambda: be.cancelled == 1)
    assert be.inflight == 0


def test_client_disconnect_cancels_a_stream(srv):
    s, be = srv
    be.word_delay = 0.5
    body = {"model": "echo-1", "stream": True,
            "messages": [{"role": "user", "content": "a long answer that streams slowly"}]}
    with httpx2.stream("POST", s.base_url + "/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=20) as resp:
        lines = resp.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["object"] == "chat.completion.chunk"
    wait_until(lambda: be.cancelled == 1)
    wait_until(lambda: be.inflight == 0)


def _post_with_timeout(s, body: dict, timeout: float) -> None:
    httpx2.post(s.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                timeout=timeout)


def test_server_thread_stops_cleanly():
    be = EchoBackend()
    s = ServerThread(be).start()
    assert httpx2.get(s.url + "/health").status_code == 200
    thread = s._thread
    s.stop()
    assert not thread.is_alive()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(s.url + "/health", timeout=2)


# --- the real local backend ----------------------------------------------------------------------
def test_serves_the_tiny_transformers_model(tiny_model_dir):
    """Production shape: epic serve over TransformersBackend; concurrent clients get the same greedy
    answers as direct calls, streamed or not."""
    tb = pytest.importorskip("epic_kernel.llm.transformers_backend")
    be = tb.TransformersBackend(tiny_model_dir, device="cpu", shared=False)
    prompts = [f"hello {i}" for i in range(4)]

    async def direct():
        return [(await be.generate(LLMRequest.build(p, params=SamplingParams(max_tokens=6)))).text for p in prompts]

    try:
        expected = run(direct())
        with ServerThread(be, model_name="m") as s:
            def one(i: int) -> str:
                c = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0, timeout=60)
                msgs = [{"role": "user", "content": prompts[i]}]
                if i % 2:
                    st = c.chat.completions.create(model="m", messages=msgs, max_tokens=6, temperature=0, stream=True)
                    return "".join(ch.choices[0].delta.content or "" for ch in st if ch.choices)
                return c.chat.completions.create(model="m", messages=msgs, max_tokens=6,
                                                 temperature=0).choices[0].message.content

            be.batcher.reset_stats()
            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(one, range(4))) == expected
            stats = httpx2.get(s.url + "/v1/stats").json()["stats"]
            assert stats["requests"] == 4 and stats["finished"] == 4
            assert stats["batch_sizes"] and max(map(int, stats["batch_sizes"])) >= 1
            # the same prompts ran once before: their KV comes from the prefix cache, one token each is computed
            assert stats["prefill_tokens_computed"] == 4 < stats["prefill_tokens_requested"]
            assert stats["prefill_saved"] > 0.5
    finally:
        be.close()
