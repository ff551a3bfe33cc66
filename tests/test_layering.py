"""The architecture the README draws, checked: imports point down the layers, and no module imports
itself back through others (imports inside functions included: a local import is still a
dependency). Read from the source with `ast`, so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"epic_kernel": ROOT / "epic_kernel", "epic_kernel.magics": ROOT / "magics",
            "epic_kernel.widgets": ROOT / "widgets"}

# lower layers first; a module may import its own layer and those below it
LAYERS = ["errors", "lang", "runtime", "llm", "programs"]
SAME_AS = {"text": "errors"}            # plain-text helpers sit at the bottom with the errors
ON_TOP = {"magics", "widgets", "cli", "kernel", "install", "__main__", "__init__", "testing"}
NOTEBOOK_ONLY = ("IPython", "ipykernel", "ipywidgets", "anywidget", "jupyter_client", "traitlets", "comm")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "epic_kernel" and parts and parts[0] in ("magics", "widgets"):
                continue
            out[name] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    base = name if _is_package(name) else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base.split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub if sub in MODULES else mod, node.lineno))
    return out


def _layer(mod: str) -> str | None:
    parts = mod.split(".")
    if parts[0] != "epic_kernel":
        return None
    layer = parts[1] if len(parts) > 1 else "__init__"
    return SAME_AS.get(layer, layer)


def test_the_module_list_is_complete():
    assert {"epic_kernel.runtime.evaluator", "epic_kernel.lang.ir", "epic_kernel.llm.registry",
            "epic_kernel.magics", "epic_kernel.widgets"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _layer(m) in LAYERS))
def test_core_imports_point_down(name):
    mine = LAYERS.index(_layer(name))
    for mod, line in _imports(name, MODULES[name]):
        top = mod.split(".")[0]
        assert top not in NOTEBOOK_ONLY, f"{name} (line {line}) imports {mod}: the core never imports notebook code"
        layer = _layer(mod)
        if layer is None:
            continue
        assert layer in LAYERS, f"{name} (line {line}) imports {mod}, which sits above the core"
        assert LAYERS.index(layer) <= mine, \
            f"{name} (line {line}) imports {mod}: {_layer(name)} may not depend on {layer}, which sits above it"


def test_no_import_cycles():
    graph = {m: {d for d, _ in _imports(m, p) if d in MODULES and d != m} for m, p in MODULES.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of dependencies
    for m in graph:
        graph[m] = {d for d in graph[m] if not (_is_package(m) and d.startswith(m + "."))}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
