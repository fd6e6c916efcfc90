"""The package's layout as a contract: stages import downwards, never in a circle.

Read from the source (imports inside functions included), so a function-level import
cannot hide a cycle, and a private name cannot leak from one module to another.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "churnguard"

#: What each part may import (besides itself and the private helpers at the top).
ALLOWED: dict[str, set[str]] = {
    "exceptions": set(),
    "data": set(),
    "config": set(),
    "features": {"data"},
    "clv": {"data", "features"},
    "churn": {"data", "features", "clv"},
    "decision": {"config"},
    "model": {"data", "features", "clv", "churn", "decision"},
    "report": {"data", "churn", "decision"},
    "evaluation": {"data", "features", "clv", "churn", "decision", "model"},
    "execution": {"data", "features", "clv", "churn", "model", "decision", "report"},
    "tracking": {"data", "decision", "model", "execution"},
    "pipeline": {
        "data", "features", "clv", "churn", "model", "decision", "report", "evaluation",
        "execution", "tracking",
    },
    "cli": {"data", "config", "features", "decision", "pipeline", "report"},
}  # fmt: skip
#: Private modules every part may use (shared internals).
SHARED = {"_dates", "_duckdb", "_checks", "_crossfit", "_money", "exceptions", "__init__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every import in a file, at any depth."""
    tree = ast.parse(path.read_text())
    found = []
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            if not target.startswith("churnguard"):
                continue
            # `from churnguard.x import y` may name the submodule churnguard.x.y.
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for dest in subs or [target]:
                if dest in modules and dest != name:
                    graph[name].add(dest)
    return graph


def test_no_import_cycles_even_through_function_level_imports() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_private_name_is_imported_from_another_module() -> None:
    """Shared internals live in underscore *modules*; a module's private names stay in it."""
    modules = _modules()
    bad = []
    for name, path in modules.items():
        for target, names in _imports(path):
            if target.startswith("churnguard") and target != name:
                bad += [
                    f"{name}: from {target} import {n}"
                    for n in names
                    if n.startswith("_")
                    and not (n.startswith("__") and n.endswith("__"))  # __version__
                    and f"{target}.{n}" not in modules  # a private module
                ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_every_part_imports_only_the_stages_below_it() -> None:
    bad = []
    for name, path in _modules().items():
        part = _part(name)
        if part in SHARED or part.startswith("_"):
            continue
        allowed = ALLOWED.get(part)
        assert allowed is not None, f"{name}: part {part!r} has no place in ALLOWED"
        for target, _ in _imports(path):
            if not target.startswith("churnguard.") and target != "churnguard":
                continue
            dest = _part(target)
            if dest in (part, "__init__") or dest in SHARED or dest.startswith("_"):
                continue
            if dest not in allowed:
                bad.append(f"{name} imports {target} ({part} may not use {dest})")
    assert not bad, "\n".join(bad)


def test_every_module_declares_its_public_names() -> None:
    missing = [
        name
        for name, path in _modules().items()
        if path.name not in ("__main__.py",)
        and "__all__" not in path.read_text()
        and path.stat().st_size > 0
    ]
    assert not missing, f"modules without __all__: {missing}"
