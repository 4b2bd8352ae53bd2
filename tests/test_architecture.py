"""The layout is the architecture: imports point one way and never in a circle.

  tenantry/  mounts the sub-commands: may import anything
  api/, jobs/  may import db/ (and not each other)
  db/        imports neither api/ nor jobs/ (nor tenantry/)

Read from the source with `ast` (nothing is imported), so a violation fails here with
the module and the line, before it can bite at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from db import PROJECT_ROOT

PACKAGES = ("tenantry", "db", "api", "jobs", "migrations")
#: what each top-level package may import from the project
ALLOWED = {
    "tenantry": {"tenantry", "db", "api", "jobs"},
    "api": {"api", "db"},
    "jobs": {"jobs", "db"},
    "db": {"db"},
    "migrations": {"migrations", "db"},
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Project modules imported by `name` (anywhere in the file, late imports too)."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(target, line) for target, line in found if target.split(".")[0] in PACKAGES]


def _graph(root: Path) -> dict[str, set[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {target for target, _ in _imports(name, path) if target in modules and target != name}
    return graph


def upward_imports(root: Path) -> list[str]:
    wrong = []
    for name, path in _modules(root).items():
        top = name.split(".")[0]
        for target, line in _imports(name, path):
            if target.split(".")[0] not in ALLOWED[top]:
                wrong.append(f"{path.relative_to(root)}:{line} imports {target}")
    return wrong


def import_cycles(root: Path) -> list[str]:
    graph = _graph(root)
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_imports_point_one_way():
    wrong = upward_imports(PROJECT_ROOT)
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


def test_no_import_cycles():
    cycles = import_cycles(PROJECT_ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    # the rules must be able to fail: a tree where db/ imports api/ and api/ imports db/
    for package in ("db", "api"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "db" / "store.py").write_text("import os\n\nfrom api.app import create_app\n")
    (tmp_path / "api" / "app.py").write_text("from db import store\n")
    assert upward_imports(tmp_path) == ["db/store.py:3 imports api.app", "db/store.py:3 imports api.app.create_app"]
    assert import_cycles(tmp_path) == ["api.app -> db.store -> api.app"]
