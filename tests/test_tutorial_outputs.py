"""The stored outputs of tutorials/*.ipynb are what a reader sees on GitHub or in a fresh checkout, so
they must be clean and true: no absolute path of the machine that ran them (home, worktree, temp
directories), no "Warning" or "Traceback" (a dependency warning or a crash that slipped through),
no U+FFFD (text decoded from broken bytes).

And where a notebook's prose quotes a number that its outputs print, the two must agree. A markdown
cell lists the strings it quotes from earlier outputs in its metadata, `{"epic": {"quotes": [...]}}`;
each must appear in the cell's text and in the printed output (stdout or text/plain) of a code cell
above it. Re-executing a notebook that changes such a number makes this test fail until the prose
is updated."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
TEXT_KINDS = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")

# absolute paths of a machine: home directories, a checkout under /work, temp directories
_PATH_ROOTS = {"/home/", "/root/", "/Users/", "/work/", "/tmp/", "/var/folders/", "/private/var/",
               str(Path.home()).rstrip("/") + "/", str(ROOT) + "/", tempfile.gettempdir().rstrip("/") + "/"}
ABSOLUTE_PATH = re.compile("|".join(re.escape(p) for p in sorted(_PATH_ROOTS, key=len, reverse=True))
                           + r"|[A-Za-z]:\\Users\\")
FORBIDDEN = {"Warning": re.compile(r"Warning"), "Traceback": re.compile(r"Traceback"),
             "U+FFFD": re.compile("\ufffd")}


def output_texts(cell) -> list[str]:
    """Every text a code cell's outputs hold (streams, every text mimetype, errors)."""
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            out += [v if isinstance(v, str) else str(v) for k, v in o.data.items() if k in TEXT_KINDS]
        elif o.output_type == "error":
            out += [o.ename, o.evalue, *o.traceback]
    return out


def printed(cell) -> str:
    """What a reader reads as the cell's printed result: its streams and text/plain outputs."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result") and "text/plain" in o.data:
            parts.append(o.data["text/plain"])
    return "\n".join(parts)


def problems(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for text in output_texts(cell):
            if m := ABSOLUTE_PATH.search(text):
                found.append(f"cell {i}: absolute path {text[max(0, m.start() - 20):m.end() + 40]!r}")
            for name, pattern in FORBIDDEN.items():
                if m := pattern.search(text):
                    found.append(f"cell {i}: {name} in {text[max(0, m.start() - 60):m.end() + 60]!r}")
    return found


def quote_mismatches(nb) -> tuple[int, list[str]]:
    """(how many quotes were checked, the ones that do not match)."""
    seen, bad, n = [], [], 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            seen.append(printed(cell))
            continue
        for q in cell.get("metadata", {}).get("epic", {}).get("quotes", []):
            n += 1
            if q not in cell.source:
                bad.append(f"cell {i}: quotes {q!r} in its metadata but not in its text")
            elif not any(q in text for text in seen):
                bad.append(f"cell {i}: says {q!r}, which no output above it prints")
    return n, bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_outputs_are_clean(path):
    found = problems(nbformat.read(path, as_version=4))
    assert not found, f"{path.name}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_prose_quotes_what_the_outputs_print(path):
    _, bad = quote_mismatches(nbformat.read(path, as_version=4))
    assert not bad, f"{path.name}:\n  " + "\n  ".join(bad)


def test_the_quote_check_is_used():
    assert sum(quote_mismatches(nbformat.read(p, as_version=4))[0] for p in NOTEBOOKS) >= 5


def test_the_checks_catch_what_they_are_for():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    nb = new_notebook(cells=[
        new_code_cell("x", outputs=[
            new_output("stream", name="stderr", text="/home/ann/.venv/lib/torch/x.py:1: FutureWarning: old\n"),
            new_output("execute_result", data={"text/plain": "'ab\ufffd'"}, execution_count=1),
            new_output("stream", name="stdout", text="took 1.71 s for 161 words\n")]),
        new_markdown_cell("It took 1.71 s for 162 words.", metadata={"epic": {"quotes": ["1.71 s", "162 words"]}}),
    ])
    found = problems(nb)
    assert any("absolute path" in f for f in found) and any("Warning" in f for f in found)
    assert any("U+FFFD" in f for f in found)
    assert quote_mismatches(nb) == (2, ["cell 1: says '162 words', which no output above it prints"])
