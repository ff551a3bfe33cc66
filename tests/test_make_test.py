"""`make test` on a fresh machine: it installs Debian's chromium where it can (`.ci/chromium`), and
where it cannot every browser test skips with one reason (issue 19).

`.ci/chromium` is run here with stand-ins for `id`, `sudo` and `apt-get` on PATH, so no package is
installed and the machine's own setup does not matter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "chromium"


def _shims(tmp_path: Path, *, uid: int, sudo_ok: bool, apt_ok: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    sudo = 'exec "$@"' if sudo_ok else "exit 1"
    shims = {"id": f"echo {uid}", "sudo": f'[ "$1" = -n ] && shift; {sudo}',
             "apt-get": f'echo "apt-get $*" >> {log}; exit {0 if apt_ok else 100}'}
    for name, body in shims.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run_script(tmp_path: Path, **kw) -> tuple[subprocess.CompletedProcess, str]:
    env = dict(os.environ, PATH=f"{_shims(tmp_path, **kw)}:/usr/bin:/bin", CHROMIUM=str(tmp_path / "no-chromium"))
    p = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / "calls.log"
    return p, log.read_text() if log.exists() else ""


def test_root_installs_chromium_with_apt(tmp_path: Path) -> None:
    p, calls = _run_script(tmp_path, uid=0, sudo_ok=False, apt_ok=True)
    assert p.returncode == 0, p.stderr
    assert calls.splitlines() == ["apt-get update -qq", "apt-get install -y -qq chromium"]


def test_passwordless_sudo_installs_chromium(tmp_path: Path) -> None:
    p, calls = _run_script(tmp_path, uid=1000, sudo_ok=True, apt_ok=True)
    assert p.returncode == 0, p.stderr
    assert "apt-get install -y -qq chromium" in calls


def test_without_root_it_says_the_browser_tests_skip(tmp_path: Path) -> None:
    p, calls = _run_script(tmp_path, uid=1000, sudo_ok=False, apt_ok=True)
    assert p.returncode == 0
    assert calls == ""                                    # apt-get was never tried
    assert "needs root" in p.stdout and "the browser tests will skip" in p.stdout


def test_a_failed_apt_install_does_not_stop_make_test(tmp_path: Path) -> None:
    p, _ = _run_script(tmp_path, uid=0, sudo_ok=False, apt_ok=False)
    assert p.returncode == 0
    assert "could not install chromium" in p.stdout


def test_make_test_runs_it_and_ci_runs_make_test() -> None:
    make = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", make, re.MULTILINE)
    assert recipe is not None and recipe.group(1).splitlines()[0].strip() == ".ci/chromium"
    assert re.search(r"^[A-Z_=0-9 ]*make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


def test_every_browser_test_module_skips_the_same_way() -> None:
    """A module that launches chromium takes test_browser's BROWSER_MARKS (one skip reason)."""
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        text = path.read_text()
        if "chromium.launch(" in text and path.name != Path(__file__).name:
            assert re.search(r"^pytestmark = BROWSER_MARKS$", text, re.MULTILINE), \
                f"{path.name} launches chromium without `pytestmark = BROWSER_MARKS`"


def test_without_chromium_every_browser_test_skips_with_one_reason() -> None:
    env = dict(os.environ, EPIC_CHROMIUM="/nonexistent/chromium")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_browser.py", "tests/test_browser_teaching.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
    reasons = set(re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", p.stdout, re.MULTILINE))
    assert len(reasons) == 1 and "chromium is not installed" in reasons.pop(), p.stdout[-3000:]
    summary = p.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and not re.search(r"passed|failed|error", summary), p.stdout[-3000:]
