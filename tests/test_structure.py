"""The package's shape: public names, no import cycles, no private names across modules."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import holysheep_lab as hs

PKG = Path(hs.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement that runs (TYPE_CHECKING blocks excluded), at any depth."""
    found: list[ast.ImportFrom | ast.Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_public_names_are_a_sorted_literal_and_all_resolve():
    tree = ast.parse((PKG / "__init__.py").read_text())
    literal = [n for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert literal and isinstance(literal[0].value, ast.List), "__all__ must be a literal list"
    names = ast.literal_eval(literal[0].value)
    assert names == sorted(names) == hs.__all__
    for name in names:
        try:
            assert getattr(hs, name) is not None
        except hs.MissingExtraError as exc:  # the legacy-httpx adapters need httpx installed
            assert "httpx" in str(exc) and "Httpx" in name
    assert {"Client", "Budget", "MeteredTransport", "read_log", "report", "BudgetExceededError"} <= set(names)


def test_no_import_cycles_inside_the_package():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{mod}: relative import"
                targets = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                targets = [a.name for a in node.names]
            for target in targets:
                dep = _resolve(target, modules) if target.startswith("holysheep_lab") else None
                # A package's __init__ re-exporting its own modules is not a cycle of concepts.
                if dep and dep != mod and not mod.startswith(dep + ".") and not dep.startswith(mod + "."):
                    graph[mod].add(dep)
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for mod, path in _modules().items():
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("holysheep_lab"):
                for alias in node.names:
                    last = (node.module or "").rsplit(".", 1)[-1]
                    if alias.name.startswith("_") or last.startswith("_"):
                        offenders.append(f"{mod}: from {node.module} import {alias.name}")
    assert offenders == []


def test_every_module_declares_its_public_names():
    missing = [m for m, p in _modules().items()
               if not p.name.startswith("__") and "__all__" not in p.read_text()]
    assert missing == []


def test_import_is_light():
    code = ("import sys, holysheep_lab; "
            "print(sorted(m for m in ('pandas', 'pyarrow', 'altair', 'ipywidgets', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_py_typed_ships():
    assert (PKG / "py.typed").exists()
    assert importlib.util.find_spec("holysheep_lab.endpoints") is not None
