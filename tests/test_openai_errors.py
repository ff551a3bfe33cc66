"""`--backend openai` with nothing listening at the URL says that it cannot connect to that URL and
what to set, instead of "no model given" (a closed port on 127.0.0.1 is the real oracle)."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("openai")

from epic_kernel.llm.base import LLMRequest  # noqa: E402
from epic_kernel.llm.errors import BackendConnectionError  # noqa: E402
from epic_kernel.llm.openai_backend import OpenAIBackend  # noqa: E402


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]          # closed again when the with-block ends: nothing listens


@pytest.mark.parametrize("model", [None, "some-model"])
def test_no_server_names_the_url_and_what_to_set(model):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    backend = OpenAIBackend(base_url=url, api_key="k", model=model, max_retries=0, timeout=5.0)
    try:
        with pytest.raises(BackendConnectionError) as info:
            asyncio.run(backend.generate(LLMRequest.build("hello")))
    finally:
        backend.close()
    msg = str(info.value)
    assert f"cannot connect to {url}" in msg and "no model given" not in msg
    assert "EPIC_OPENAI_BASE_URL" in msg and "OPENAI_API_KEY" in msg and "EPIC_OPENAI_MODEL" in msg
