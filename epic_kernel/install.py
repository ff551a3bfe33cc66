"""Install the EPIC kernelspec: `epic install [--user | --sys-prefix | --prefix P] [--name epic]`.

The spec runs `<this python> -m epic_kernel.kernel -f {connection_file}` with the *absolute*
interpreter path: a bare `python` would be replaced by whatever interpreter the Jupyter server
runs under, which may not have epic-kernel installed (notes/jupyter.md section 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["DISPLAY_NAME", "install", "kernel_json", "main"]

DISPLAY_NAME = "EPIC (Python 3)"


def kernel_json(display_name: str = DISPLAY_NAME, executable: str | None = None) -> dict:
    return {
        "argv": [executable or sys.executable, "-m", "epic_kernel.kernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True},
    }


def install(user: bool = False, sys_prefix: bool = False, prefix: str | None = None, name: str = "epic",
            display_name: str = DISPLAY_NAME) -> str:
    """Write the kernelspec and return the folder it was installed to.

    Default: the system-wide Jupyter data dir; `user=True`: ~/.local/share/jupyter;
    `sys_prefix=True`: this environment (`sys.prefix`); `prefix`: any prefix (for tests)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if sum(bool(x) for x in (user, sys_prefix, prefix)) > 1:
        raise ValueError("choose at most one of user, sys_prefix and prefix")
    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory() as td:
        os.chmod(td, 0o755)                              # install_kernel_spec copies mode bits
        Path(td, "kernel.json").write_text(json.dumps(kernel_json(display_name), indent=1), encoding="utf-8")
        _copy_logos(Path(td))
        return KernelSpecManager().install_kernel_spec(td, name, user=user, prefix=prefix)


def _copy_logos(dest: Path) -> None:
    """The Python logos ipykernel ships (it is a Python kernel); optional."""
    try:
        import ipykernel
    except ImportError:
        return
    res = Path(ipykernel.__file__).parent / "resources"
    for name in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
        if (res / name).is_file():
            shutil.copy(res / name, dest / name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="epic install", description="Install the EPIC Jupyter kernelspec.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help="install into this environment (sys.prefix)")
    where.add_argument("--prefix", metavar="P", help="install under prefix P (P/share/jupyter/kernels)")
    p.add_argument("--name", default="epic", help="kernelspec name (default: epic)")
    p.add_argument("--display-name", default=DISPLAY_NAME, help=f"name shown in Jupyter (default: {DISPLAY_NAME})")
    a = p.parse_args(argv)
    dest = install(user=a.user, sys_prefix=a.sys_prefix, prefix=a.prefix, name=a.name, display_name=a.display_name)
    print(f"installed kernelspec {a.name!r} ({a.display_name}) in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
