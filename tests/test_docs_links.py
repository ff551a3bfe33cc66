"""The front page and the docs point only at things that exist: every relative link and image in
README.md and docs/*.md names a file of the repository (and, with `#anchor`, a heading of it), every
path quoted as code (`benchmarks/results/core.md`) exists, and README.md stays a front page
(at most 250 lines)."""

from __future__ import annotations

import glob
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
PATHLIKE = re.compile(r"^[\w.*-]+(/[\w.*-]+)*/?$")
FILE_SUFFIXES = (".md", ".py", ".png", ".json", ".jsonl", ".ipynb", ".toml", ".js", ".css", ".txt", ".yml", ".cfg")
# the docs name modules by their path in the package or in its subpackage (`llm/batcher.py`, `sim/`)
SEARCH_ROOTS = [ROOT, ROOT / "epic_kernel", *sorted(p for p in (ROOT / "epic_kernel").iterdir() if p.is_dir())]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8")))}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def quoted_paths(page: Path) -> list[str]:
    """Code spans that are repository paths: slash-separated names ending in a file suffix or '/'."""
    out = []
    for span in CODE_SPAN.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        span = span.strip()
        if "/" not in span or span.startswith(("~", "/", "http", ".")) or not PATHLIKE.match(span):
            continue
        if span.endswith("/") or span.endswith(FILE_SUFFIXES):
            out.append(span)
    return out


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move details to docs/")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):         # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_quoted_path_exists(page):
    missing = [p for p in quoted_paths(page)
               if not any(glob.glob(str(base / p.rstrip("/")))
                          for base in [page.parent, *SEARCH_ROOTS])]
    assert not missing, f"{page.relative_to(ROOT)} quotes paths that do not exist: {missing}"


def test_the_checks_catch_a_broken_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [x](missing.md), [y](#nowhere), [z](#title), "
                    "![p](https://example.com/a.png) and `benchmarks/results/nothing.md`.\n"
                    "```\n[not a link](inside-a-fence.md)\n```\n", encoding="utf-8")
    assert links(page) == ["missing.md", "#nowhere", "#title", "https://example.com/a.png"]
    assert anchors(page) == {"title"}
    assert quoted_paths(page) == ["benchmarks/results/nothing.md"]
    assert slug("The `%%epic` magic: Views & *more*") == "the-epic-magic-views--more"
