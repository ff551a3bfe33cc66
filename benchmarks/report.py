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

__all__ = ["write_results"]


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
