"""The one way a benchmark writes its results: DIR/NAME.json (the numbers) and DIR/NAME.md (the
table people read), side by side under benchmarks/results/ (or --out).

Each file is written to a temporary name and renamed, so a reader (or a benchmark stopped half-way,
which rewrites its partial results after every step) never sees half a file; the JSON is always
indented the same way and ends in a newline, so reruns diff cleanly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["machine", "machine_line", "write_results"]


def write_results(out: Path | str, name: str, data: Any, markdown: str | None = None, *,
                  echo: bool = False) -> tuple[Path, Path | None]:
    """Write `data` to OUT/NAME.json and `markdown` (if given) to OUT/NAME.md; `echo` also prints
    the markdown. Returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = _write(out / f"{name}.json", json.dumps(data, indent=1, default=str) + "\n")
    md_path = None if markdown is None else _write(out / f"{name}.md", markdown)
    if echo and markdown is not None:
        print(markdown)
    return json_path, md_path


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    """The CPU a number was measured on: model name, the flags that decide which kernels run
    (AVX2/AVX-512/VNNI/BF16/AMX), cores, and torch's thread count when torch is loaded."""
    import os
    import platform
    import sys

    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": name, "flags": [f for f in _FLAGS if f in flags], "cores": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


def machine_line(m: dict[str, Any] | None = None) -> str:
    """One markdown line naming the CPU and its flags, for the header of a results table."""
    m = m or machine()
    flags = " ".join(m["flags"]) or "none of " + "/".join(_FLAGS)
    threads = f", torch threads {m['torch_threads']}" if "torch_threads" in m else ""
    return f"CPU: {m['cpu']}, {m['cores']} cores{threads}; flags: {flags}."
